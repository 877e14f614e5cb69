"""The model file (jaxstyle.io.model_file): a round trip of parameters, metadata and thumbnails;
every other kind of file, a truncated one and an altered one refused in one line; atomic writes."""

from __future__ import annotations

import io
import json
import os
import pickle
import uuid
import zipfile

import numpy as np
import pytest
import safetensors.numpy
from PIL import Image

from jaxstyle.io.model_file import ModelFileError, model_info, read_model, write_model
from tests.weights.torch_legacy_writer import legacy_torch_bytes

METADATA = {"architecture": {"width": 4, "styles": 2, "residual_blocks": 1}, "styles": ["starry", "wave"],
            "steps": 12, "objective": {"style_weight": 1e6, "layers": ["relu1_1", "relu2_1"]}, "vgg_sha256": "ab" * 32}


def parameters(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"conv_in": {"kernel": rng.normal(size=(9, 9, 3, 4)).astype(np.float32)},
            "conv_in_norm": {"gamma": rng.normal(size=(2, 4)).astype(np.float32),
                             "beta": rng.normal(size=(2, 4)).astype(np.float16)},
            "residual_0": {"conv_a": {"kernel": rng.normal(size=(3, 3, 16, 16))},  # float64
                           "count": np.array(7, np.int32), "mask": np.array([True, False]),
                           "empty": np.zeros((0, 3), np.float32)}}


def thumbnails() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (5, 7, 3), np.uint8), rng.integers(0, 256, (9, 4, 3), np.uint8)]


def assert_same_tree(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, dict):
            assert_same_tree(got[key], value)
        else:
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            np.testing.assert_array_equal(got[key], value)


@pytest.fixture()
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    write_model(path, parameters(), METADATA, thumbnails())
    return path


def rewritten(path, change):
    """``path`` re-saved by safetensors after ``change(tensors, header_metadata)``: a well-formed
    safetensors file whose contents were edited behind jaxstyle's back."""
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    tensors, metadata = safetensors.numpy.load(data), dict(header["__metadata__"])
    change(tensors, metadata)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return path


def test_round_trip_keeps_values_dtypes_nested_names_metadata_and_thumbnails(model):
    params, metadata, thumbs = read_model(model)
    assert_same_tree(params, parameters())
    assert metadata == METADATA
    assert len(thumbs) == 2
    for got, want in zip(thumbs, thumbnails()):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_a_network_s_parameters_round_trip_bit_for_bit(tmp_path):
    import jax

    from jaxstyle.model.transformer import TransformerNet, init_network

    params = jax.tree_util.tree_map(np.asarray, init_network(jax.random.PRNGKey(0), TransformerNet(width=2), 4))
    write_model(tmp_path / "net.safetensors", params, {})
    got, metadata, thumbs = read_model(tmp_path / "net.safetensors")
    assert_same_tree(got, params)
    assert metadata == {} and thumbs == []


def test_model_info_counts_and_digest(model, tmp_path):
    info = model_info(model)
    assert info["file"] == str(model) and info["bytes"] == model.stat().st_size
    assert info["parameters"] == 9 * 9 * 3 * 4 + 2 * 4 * 2 + 3 * 3 * 16 * 16 + 1 + 2 + 0
    assert info["tensors"] == 7 and info["thumbnails"] == 2 and info["metadata"] == METADATA
    write_model(tmp_path / "same.safetensors", parameters(), METADATA, thumbnails())
    write_model(tmp_path / "other.safetensors", parameters(seed=1), METADATA, thumbnails())
    write_model(tmp_path / "renamed.safetensors", parameters(), {**METADATA, "styles": ["a", "b"]}, thumbnails())
    assert model_info(tmp_path / "same.safetensors")["digest"] == info["digest"]
    assert model_info(tmp_path / "other.safetensors")["digest"] != info["digest"]
    assert model_info(tmp_path / "renamed.safetensors")["digest"] != info["digest"]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.zeros(3, np.float32))
    return buffer.getvalue()


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, np.float32))
    return buffer.getvalue()


def torch_zip_bytes() -> bytes:  # the layout of torch.save since PyTorch 1.6
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": [0.0]}, protocol=2))
    return buffer.getvalue()


@pytest.mark.parametrize("content, what", [
    (b"", "an empty file"),
    (png_bytes(), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(60), "a JPEG image"),
    (b"width = 32\nstyles = ['starry']\n", "a text file"),
    (json.dumps(METADATA).encode(), "a text file"),
    (npz_bytes(), r"a ZIP archive \(a NumPy .npz or a PyTorch .pt\?\)"),
    (torch_zip_bytes(), r"a ZIP archive \(a NumPy .npz or a PyTorch .pt\?\)"),
    (npy_bytes(), "a NumPy .npy array"),
    (legacy_torch_bytes({"w": np.zeros(3, np.float32)}), r"a Python pickle \(an old PyTorch .pt\?\)"),
    (pickle.dumps({"w": 1}, protocol=4), "a Python pickle"),
    (b"\x00\x00\x00\x18ftypisom" + bytes(40), "an MP4/MOV video"),
    (bytes(range(200, 256)) * 3, "a file of another kind"),
])
def test_another_kind_of_file_is_refused_in_one_line(tmp_path, content, what):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=f"^{path}: expected a jaxstyle model file \\(safetensors\\), got {what}") \
            as caught:
        read_model(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("keep", [5, 20, 0.5, -1])
def test_a_truncated_file_is_refused(model, keep):
    data = model.read_bytes()
    model.write_bytes(data[:keep if isinstance(keep, int) and keep >= 0 else
                            (int(len(data) * keep) if keep > 0 else len(data) - 1)])
    with pytest.raises(ModelFileError, match=f"^{model}: .*truncated") as caught:
        read_model(model)
    assert "\n" not in str(caught.value)


def test_a_safetensors_file_that_is_not_ours_is_refused(tmp_path):
    plain, foreign = tmp_path / "plain.safetensors", tmp_path / "foreign.safetensors"
    plain.write_bytes(safetensors.numpy.save({"w": np.zeros(3, np.float32)}))
    foreign.write_bytes(safetensors.numpy.save({"w": np.zeros(3, np.float32)}, metadata={"format": "pt"}))
    for path in (plain, foreign):
        with pytest.raises(ModelFileError, match=f"^{path}: .*not a jaxstyle model \\(no jaxstyle metadata\\)$"):
            read_model(path)


def test_a_flipped_byte_in_tensor_data_is_refused(model):
    data = bytearray(model.read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's bytes
    model.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"^{model}: altered or corrupt \\(its contents do not match the digest"):
        read_model(model)
    with pytest.raises(ModelFileError, match="altered or corrupt"):
        model_info(model)


@pytest.mark.parametrize("change, message", [
    (lambda t, m: t.update({"params/extra": np.zeros(2, np.float32)}), "do not match the digest"),
    (lambda t, m: t.pop("params/conv_in/kernel"), "do not match the digest"),
    (lambda t, m: t.pop("thumbnails/1"), "do not match the digest"),
    (lambda t, m: m.update(metadata=m["metadata"].replace('"steps": 12', '"steps": 13')), "do not match the digest"),
    (lambda t, m: m.update(metadata=m["metadata"][:-3]), r"its metadata is not valid JSON"),
    (lambda t, m: m.update(metadata="[1, 2]"), r"its metadata is not a JSON object"),
    (lambda t, m: m.update(version="2"), r"model file version 2 is newer than this jaxstyle reads \(1\)"),
    (lambda t, m: m.pop("digest"), r"corrupt jaxstyle metadata"),
])
def test_an_altered_file_is_refused_in_one_line(model, change, message):
    rewritten(model, change)
    with pytest.raises(ModelFileError, match=f"^{model}: .*{message}") as caught:
        read_model(model)
    assert "\n" not in str(caught.value)


def test_a_corrupt_header_is_explained_not_passed_through(model):
    data = model.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = data[8:8 + size].replace(b'"F32"', b'"F64"', 1)  # one tensor now claims twice its bytes
    model.write_bytes(data[:8] + header + data[8 + size:])
    with pytest.raises(ModelFileError, match=f"^{model}: a corrupt safetensors file \\(its header does not match"):
        read_model(model)
    model.write_bytes(data[:8] + b"{" + b"\xff" * (size - 1) + data[8 + size:])
    with pytest.raises(ModelFileError, match=f"^{model}: a corrupt safetensors file \\(its header is not valid JSON"):
        read_model(model)


def test_a_missing_file_and_a_folder_are_one_line_errors(tmp_path):
    with pytest.raises(ModelFileError, match=f"^{tmp_path / 'none.safetensors'}: no such file"):
        read_model(tmp_path / "none.safetensors")
    with pytest.raises(ModelFileError, match=f"^{tmp_path}: is a folder"):
        model_info(tmp_path)


@pytest.mark.parametrize("params, metadata, thumbs, message", [
    ({"a": np.zeros(2)}, {"x": object()}, (), "expected model metadata that JSON can hold"),
    ({"a": np.zeros(2)}, {"loss": float("nan")}, (), "expected model metadata that JSON can hold"),
    ({"a": np.zeros(2)}, ["not", "a", "dict"], (), "expected the model's metadata as a dict, got list"),
    ({"a/b": np.zeros(2)}, {}, (), "expected parameter names without '/', got 'a/b' in params"),
    ({"a": {"b": np.zeros(2, np.complex64)}}, {}, (), "expected params/a/b as a bool, integer or float"),
    ({"a": np.zeros(2)}, {}, [np.zeros((4, 4, 3), np.float32)], r"expected thumbnail 0 as uint8 \[h, w, 3\]"),
    ({"a": np.zeros(2)}, {}, [np.zeros((4, 4), np.uint8)], r"expected thumbnail 0 as uint8 \[h, w, 3\]"),
])
def test_bad_arguments_write_nothing_and_keep_the_old_file(tmp_path, params, metadata, thumbs, message):
    (tmp_path / "keep.safetensors").write_bytes(b"old")
    for name in ("keep.safetensors", "new.safetensors"):
        with pytest.raises(ValueError, match=message):
            write_model(tmp_path / name, params, metadata, thumbs)
    assert (tmp_path / "keep.safetensors").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["keep.safetensors"]


def test_big_endian_arrays_come_back_native_with_their_values(tmp_path):
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    write_model(tmp_path / "m.safetensors", {"w": big, "n": np.array([1, -2], ">i8")}, {})
    params, _, _ = read_model(tmp_path / "m.safetensors")
    assert params["w"].dtype == np.float32 and params["n"].dtype == np.int64
    np.testing.assert_array_equal(params["w"], big)
    np.testing.assert_array_equal(params["n"], [1, -2])


def test_an_unwritable_place_is_one_line(tmp_path):
    with pytest.raises(ModelFileError, match=f"^{tmp_path / 'no' / 'm.safetensors'}: cannot be written"):
        write_model(tmp_path / "no" / "m.safetensors", {"w": np.zeros(2)}, {})


def test_an_interrupted_write_leaves_the_old_file_and_no_temporaries(model, monkeypatch):
    old = model.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)  # the atomic write's last step before the rename
    with pytest.raises(KeyboardInterrupt):
        write_model(model, parameters(seed=2), METADATA)
    monkeypatch.undo()
    assert model.read_bytes() == old
    assert os.listdir(model.parent) == [model.name]


def test_memory_url_round_trip():
    fsspec = pytest.importorskip("fsspec")
    url = f"memory://test-{uuid.uuid4().hex[:8]}/models/starry.safetensors"
    try:
        write_model(url, parameters(), METADATA, thumbnails())
        params, metadata, thumbs = read_model(url)
        assert_same_tree(params, parameters())
        assert metadata == METADATA and len(thumbs) == 2
        assert model_info(url)["bytes"] == len(fsspec.filesystem("memory").cat_file(url))
        with pytest.raises(ModelFileError, match=f"^{url.rsplit('/', 1)[0]}/none.safetensors: "):
            read_model(url.rsplit("/", 1)[0] + "/none.safetensors")
    finally:
        fsspec.filesystem("memory").rm(url.split("/models/")[0].replace("memory://", "/"), recursive=True)
