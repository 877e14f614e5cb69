"""Training checkpoints (jaxstyle.io.checkpoints): round trip, pruning, atomic writes, damaged files passed over."""

from __future__ import annotations

import json
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jaxstyle.io import checkpoints
from jaxstyle.io.checkpoints import (
    CheckpointError,
    CheckpointWarning,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"params/conv1/kernel": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
            "params/norm/scale": rng.normal(size=(2, 4)).astype(ml_dtypes.bfloat16),
            "opt/count": np.asarray(seed, np.int32),
            "rng": rng.integers(0, 2**32, size=2, dtype=np.uint32),
            "empty": np.zeros((0, 3), np.float64),
            "mask": np.array([True, False])}


def _steps(folder) -> list[int]:
    return [step for step, _ in list_checkpoints(folder)]


def test_round_trip(tmp_path):
    arrays, extra = _arrays(7), {"step": 12, "seed": 3, "skipped": [["a.jpg", "corrupt"]], "lr": 1e-3}
    path = save_checkpoint(tmp_path / "ckpt", 12, arrays, extra)
    assert path.name == "step-00000012.ckpt"
    step, loaded, got_extra = latest_checkpoint(tmp_path / "ckpt")
    assert step == 12 and got_extra == extra and list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    with zipfile.ZipFile(path) as z:  # plain .npy members: nothing pickled
        assert all(not np.load(z.open(n), allow_pickle=False).dtype.hasobject for n in z.namelist())


def test_keep_prunes_older_checkpoints(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, _arrays(step), {"step": step * 10}, keep=2)
    assert _steps(tmp_path) == [40, 50]
    save_checkpoint(tmp_path, 60, _arrays(6), {}, keep=1)
    assert _steps(tmp_path) == [60]
    save_checkpoint(tmp_path, 70, _arrays(7), {}, keep=3)
    assert _steps(tmp_path) == [60, 70]


def test_a_crash_mid_write_leaves_no_checkpoint_and_the_previous_one_is_used(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 5, _arrays(5), {"step": 5})

    def dying_savez(f, **members):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 6, _arrays(6), {"step": 6})
    monkeypatch.undo()
    assert _steps(tmp_path) == [5] and sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005.ckpt"]
    assert latest_checkpoint(tmp_path)[0] == 5


def test_a_killed_writers_temporary_file_is_ignored_and_cleaned(tmp_path):
    save_checkpoint(tmp_path, 5, _arrays(5), {})
    stale = tmp_path / ".step-00000006.ckpt.x1y2.part"  # what SIGKILL during the write of step 6 leaves
    stale.write_bytes(b"PK\x03\x04")
    assert _steps(tmp_path) == [5] and latest_checkpoint(tmp_path)[0] == 5
    save_checkpoint(tmp_path, 6, _arrays(6), {})
    assert not stale.exists() and _steps(tmp_path) == [5, 6]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage):
    save_checkpoint(tmp_path, 1, _arrays(1), {"step": 1})
    newest = save_checkpoint(tmp_path, 2, _arrays(2), {"step": 2})
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[:len(data) // 2])
    elif damage == "flip":  # one byte inside the first array's data: the zip's CRC or the digest notices
        at = data.index(_arrays(2)["params/conv1/kernel"].tobytes()[:16]) + 40
        newest.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    elif damage == "garbage":
        newest.write_bytes(b"not a checkpoint at all")
    else:
        newest.write_bytes(b"")
    said = []
    step, arrays, extra = latest_checkpoint(tmp_path, on_skip=said.append)
    assert (step, extra) == (1, {"step": 1})
    np.testing.assert_array_equal(arrays["rng"], _arrays(1)["rng"])
    assert len(said) == 1 and "\n" not in said[0] and newest.name in said[0]
    with pytest.warns(CheckpointWarning, match="step-00000002.ckpt"):
        assert latest_checkpoint(tmp_path)[0] == 1


def test_an_altered_array_with_a_valid_zip_is_refused_by_the_digest(tmp_path):
    path = save_checkpoint(tmp_path, 3, _arrays(3), {})
    with np.load(path) as z:
        members = {name: z[name] for name in z.files}
    members["a0"] = members["a0"] + 1  # rewritten whole: every CRC is right, the digest is not
    with open(path, "wb") as f:  # a file object: np.savez would add .npz to the name
        np.savez(f, **members)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)


def test_a_checkpoint_renamed_to_another_step_is_refused(tmp_path):
    path = save_checkpoint(tmp_path, 3, _arrays(3), {})
    path.rename(tmp_path / "step-00000009.ckpt")
    with pytest.raises(CheckpointError, match="holds step 3"):
        load_checkpoint(tmp_path / "step-00000009.ckpt")


def test_saving_an_earlier_step_removes_the_later_unreadable_ones(tmp_path):
    save_checkpoint(tmp_path, 5, _arrays(5), {})
    (tmp_path / "step-00000009.ckpt").write_bytes(b"damaged")
    with pytest.warns(CheckpointWarning):
        assert latest_checkpoint(tmp_path)[0] == 5
    save_checkpoint(tmp_path, 6, _arrays(6), {}, keep=1)  # keep=1 must not count the damaged step 9
    assert _steps(tmp_path) == [6] and latest_checkpoint(tmp_path)[0] == 6


def test_missing_or_empty_folder_has_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "nowhere") is None and list_checkpoints(tmp_path / "nowhere") == []
    (tmp_path / "other.txt").write_text("x")
    (tmp_path / "step-12.ckpt").write_text("not our name")
    assert latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize("call, message", [
    (lambda d: save_checkpoint(d, 1, {"x": np.zeros(2)}, {"bad": object()}), "JSON-able"),
    (lambda d: save_checkpoint(d, 1, {"x": np.array([None])}, {}), "numeric arrays"),
    (lambda d: save_checkpoint(d, 1, {3: np.zeros(2)}, {}), "names as text"),
    (lambda d: save_checkpoint(d, -1, {}, {}), "step as an integer"),
    (lambda d: save_checkpoint(d, 1, {}, {}, keep=0), "keep >= 1"),
    (lambda d: save_checkpoint("s3://bucket/ckpt", 1, {}, {}), "local folder"),
    (lambda d: latest_checkpoint(d / "file.txt"), "got a file"),
])
def test_bad_input_is_a_one_line_error(tmp_path, call, message):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=message) as caught:
        call(tmp_path)
    assert "\n" not in str(caught.value)
    assert list_checkpoints(tmp_path) == []


def test_the_meta_entry_is_plain_json(tmp_path):
    path = save_checkpoint(tmp_path, 4, {"w": np.ones(2, np.float32)}, {"note": "hi"})
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes())
    assert meta["step"] == 4 and meta["arrays"] == [["w", "float32", [2]]] and meta["extra"] == {"note": "hi"}
