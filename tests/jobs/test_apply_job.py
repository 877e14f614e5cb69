"""`jaxstyle apply` on images: one image to a file or a folder, a folder with a corrupt image, manifests,
a memory:// bucket, name clashes, existing outputs refused before any work, bad options in one line,
and the same outputs on 2 fake devices as on 1."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import fsspec
import numpy as np
import pytest
import tifffile
from PIL import Image

import jaxstyle
import jaxstyle.jobs.feedforward_model
from jaxstyle.cli import main
from jaxstyle.io.images import load_image
from jaxstyle.jobs.apply import ApplyJob, run_apply
from tests.helpers import one_line_error, run_on_fake_cpu_devices, smooth_image
from tests.jobs.test_apply_model import tiny_model


@pytest.fixture()
def model(tmp_path):
    return tiny_model(tmp_path / "model.safetensors")


def photo(path, h: int, w: int, seed: int = 1):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((smooth_image(h, w, seed) * 255).round().astype(np.uint8)).save(path)
    return path


def expected(model, path, style="wave", **options) -> np.ndarray:
    """What the model makes of the image file, as its output file would hold it (8-bit)."""
    out = np.asarray(jaxstyle.load_model(model)(load_image(path)[None], style, **options))[0]
    return np.round(out * 255) / 255


def no_forward(monkeypatch):
    """Any stylization from here on fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("an image was stylized")

    monkeypatch.setattr("jaxstyle.jobs.feedforward_model.apply_network", refuse)


def test_one_image_to_a_file_and_to_a_folder(tmp_path, model):
    source = photo(tmp_path / "photo.jpg", 21, 30)
    assert main(["apply", str(model), str(source), "-o", str(tmp_path / "styled.png"), "--style", "wave", "-q"]) == 0
    out = load_image(tmp_path / "styled.png")
    assert out.shape == (21, 30, 3)
    np.testing.assert_allclose(out, expected(model, source), atol=1.5 / 255)
    assert main(["apply", str(model), str(source), "-o", str(tmp_path / "out"), "--style", "1", "--size", "40",
                 "-q"]) == 0
    assert load_image(tmp_path / "out" / "photo.jpg").shape == (28, 40, 3)  # the longer side --size, up
    assert main(["apply", str(model), str(source), "-o", str(tmp_path / "kept.png"), "--style", "wave",
                 "--preserve-colors", "luminance", "-q"]) == 0
    kept = load_image(tmp_path / "kept.png")
    np.testing.assert_allclose(kept, expected(model, source, preserve_colors="luminance"), atol=1.5 / 255)
    assert np.abs(kept - out).max() > 0.05


def test_a_folder_with_a_corrupt_image_skips_it_says_so_and_exits_1(tmp_path, model, capsys):
    photos = tmp_path / "photos"
    for i, (h, w) in enumerate(((16, 24), (16, 24), (16, 24), (9, 13))):  # three of one size (a batch), one odd
        photo(photos / f"p{i}.png", h, w, seed=i)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.md").write_text("not an image")
    code = main(["apply", str(model), str(photos), "-o", str(tmp_path / "out"), "--style", "starry", "--batch", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert f"jaxstyle: failed: {photos / 'broken.jpg'}: " in err and "1 failed" in err
    assert "1 file that is not an image left alone" in err
    for i in range(4):
        np.testing.assert_allclose(load_image(tmp_path / "out" / f"p{i}.png"),
                                   expected(model, photos / f"p{i}.png", "starry"), atol=1.5 / 255)


def test_manifests_list_images_relative_to_themselves(tmp_path, model):
    for name in ("a.png", "sub/b.jpg", "c.png"):
        photo(tmp_path / "in" / name, 12, 10)
    (tmp_path / "in" / "list.txt").write_text("# my photos\na.png\n\nsub/b.jpg\n")
    (tmp_path / "in" / "list.csv").write_text("Content;Output\r\nc.png;deep/c-styled.png\r\na.png;\r\n",
                                              encoding="utf-8-sig")
    (tmp_path / "in" / "list.jsonl").write_text(json.dumps({"content": "c.png"}) + "\n")
    out = tmp_path / "out"
    assert main(["apply", str(model), str(tmp_path / "in" / "list.txt"), "-o", str(out), "--style", "0", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg"]
    assert main(["apply", str(model), str(tmp_path / "in" / "list.csv"), str(tmp_path / "in" / "list.jsonl"),
                 "-o", str(tmp_path / "out2"), "--style", "0", "-q"]) == 0
    assert (tmp_path / "out2" / "deep" / "c-styled.png").exists()
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["a.png", "c.png", "deep"]


def test_a_memory_bucket_in_and_out(tmp_path, model):
    fs = fsspec.filesystem("memory")
    for name in ("x.png", "y.png"):
        fs.pipe_file(f"/apply-in/{name}", photo(tmp_path / name, 10, 14).read_bytes())
    assert main(["apply", str(model), "memory://apply-in", "-o", "memory://apply-out/styled", "--style", "wave",
                 "-q"]) == 0
    for name in ("x.png", "y.png"):
        with fs.open(f"/apply-out/styled/{name}", "rb") as f:
            got = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255
        np.testing.assert_allclose(got, expected(model, tmp_path / name), atol=1.5 / 255)


def test_two_inputs_of_one_name_are_written_under_two_names_and_the_run_says_so(tmp_path, model, capsys):
    first, second = photo(tmp_path / "a" / "photo.png", 8, 8, 1), photo(tmp_path / "b" / "photo.png", 8, 8, 2)
    photo(tmp_path / "c" / "Photo-2.png", 8, 8, 3)  # its own name, taken before the clash is resolved (in any case)
    assert main(["apply", str(model), str(first), str(second), str(tmp_path / "c" / "Photo-2.png"),
                 "-o", str(tmp_path / "out"), "--style", "0"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Photo-2.png", "photo-3.png", "photo.png"]
    np.testing.assert_allclose(load_image(tmp_path / "out" / "photo-3.png"), expected(model, second, 0),
                               atol=1.5 / 255)
    assert f"{second} is written as photo-3.png: {first} has the same name and comes first" in capsys.readouterr().err


def test_an_existing_output_is_refused_before_any_work_unless_skipped_or_overwritten(tmp_path, model, capsys,
                                                                                      monkeypatch):
    photos = tmp_path / "photos"
    photo(photos / "a.png", 8, 8, 1), photo(photos / "b.png", 8, 8, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"mine")
    args = ["apply", str(model), str(photos), "-o", str(out), "--style", "0", "-q"]
    with monkeypatch.context() as patched:
        no_forward(patched)
        assert main(args) == 2
    error = one_line_error(capsys)
    assert f"{out / 'b.png'}: already exists" in error and "--overwrite" in error
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert main([*args, "--skip-existing"]) == 0
    assert (out / "b.png").read_bytes() == b"mine" and (out / "a.png").exists()
    assert main([*args, "--overwrite"]) == 0
    assert load_image(out / "b.png").shape == (8, 8, 3)


@pytest.mark.parametrize(("extra", "expected_text"), [
    (["--style-mix", "0.2,0.3,0.5"], "--style-mix: expected 2 weights, one per style of {model} (starry, wave), got 3"),
    ([], "{model} holds 2 styles (starry, wave): pick one with --style"),
    (["--style", "monet"], "one of starry, wave"),
    (["--style", "0", "--style-mix", "1,1"], "give --style or --style-mix, not both")])
def test_a_wrong_style_choice_is_one_line_naming_the_model_s_styles(tmp_path, model, capsys, monkeypatch, extra,
                                                                     expected_text):
    no_forward(monkeypatch)
    source = photo(tmp_path / "photo.jpg", 8, 8)
    assert main(["apply", str(model), str(source), "-o", str(tmp_path / "out.png"), *extra]) == 2
    assert expected_text.format(model=model) in one_line_error(capsys)
    assert not (tmp_path / "out.png").exists()


def test_bad_inputs_and_outputs_are_one_line_before_any_work(tmp_path, model, capsys, monkeypatch):
    no_forward(monkeypatch)
    source = photo(tmp_path / "photo.jpg", 8, 8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "nope.safetensors"), str(source), "-o", str(tmp_path / "o.png")], "nope.safetensors: no such"),
        ([str(source), str(source), "-o", str(tmp_path / "o.png")], "expected a jaxstyle model file"),
        ([str(model), str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o.png")], "missing.jpg: no such file"),
        ([str(model), str(tmp_path / "broken.png"), "-o", str(tmp_path / "o.png")], "broken.png: "),
        ([str(model), str(tmp_path / "empty"), "-o", str(tmp_path / "o")], "empty: no images"),
        ([str(model), str(source), "-o", str(tmp_path / "o.gif")], "unsupported output extension '.gif'"),
        ([str(model), str(source), str(tmp_path / "broken.png"), "-o", str(tmp_path / "o.png")],
         "2 inputs need an output folder"),
        ([str(model), str(source), "-o", str(source), "--overwrite"], "the output would replace"),
        ([str(model), str(source), "-o", str(tmp_path / "no" / "such" / "o.png")], "does not exist"),
        ([str(model), str(model), "-o", str(tmp_path / "o.mp4")], "a video"),
    ]
    for args, text in cases:
        assert main(["apply", *args, "--style", "0"]) == 2, args
        assert text in one_line_error(capsys), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "empty", "model.safetensors", "photo.jpg"]


def test_two_fake_devices_write_what_one_does(tmp_path, model):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate(((15, 11), (15, 11), (15, 11), (7, 9))):  # a batch of 2 + 1 padded, one alone
        tifffile.imwrite(photos / f"p{i}.tif", (smooth_image(h, w, i) * 65535).round().astype(np.uint16))  # 16-bit
    job = "ApplyJob(model={m!r}, inputs=({p!r},), output={o!r}, style_mix=(0.4, 0.6), batch=2)"
    script = textwrap.dedent(f"""
        import jax
        from jaxstyle.jobs.apply import ApplyJob, run_apply
        assert len(jax.local_devices()) == 2
        outcome = run_apply({job.format(m=str(model), p=str(photos), o=str(tmp_path / 'two'))})
        assert len(outcome.written) == 4 and not outcome.failed, outcome
    """)
    done = run_on_fake_cpu_devices(script, devices=2)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = run_apply(ApplyJob(model=str(model), inputs=(str(photos),), output=str(tmp_path / "one"),
                                 style_mix=(0.4, 0.6), batch=2))
    assert len(outcome.written) == 4
    for i in range(4):
        one, two = load_image(tmp_path / "one" / f"p{i}.tif"), load_image(tmp_path / "two" / f"p{i}.tif")
        assert one.shape == two.shape
        np.testing.assert_allclose(two, one, atol=1e-4)


def test_an_interrupted_run_leaves_whole_outputs_and_skip_existing_does_the_rest(tmp_path, model):
    photos = tmp_path / "photos"
    for i in range(12):
        photo(photos / f"p{i:02d}.png", 8, 8, i)
    job = ApplyJob(model=str(model), inputs=(str(photos),), output=str(tmp_path / "out"), style="wave", batch=2)

    def stop(count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_apply(job, on_done=stop)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert 1 <= len(left) < 12 and all(name.endswith(".png") for name in left)  # no temporary file
    for name in left:
        assert load_image(tmp_path / "out" / name).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="already exists"):
        run_apply(job)
    outcome = run_apply(dataclasses.replace(job, skip_existing=True))
    assert sorted(outcome.existing) == [str(tmp_path / "out" / name) for name in left]
    assert len(outcome.written) == 12 - len(left) and not outcome.failed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i:02d}.png" for i in range(12)]


def test_an_input_named_twice_is_done_once(tmp_path, model):
    photos = tmp_path / "photos"
    photo(photos / "a.png", 8, 8, 1), photo(photos / "b.png", 8, 8, 2)
    outcome = run_apply(ApplyJob(model=str(model), inputs=(str(photos / "a.png"), str(photos), f"{photos}/./a.png"),
                                 output=str(tmp_path / "out"), style=0))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"] and not outcome.notes


def test_a_batch_the_device_cannot_run_fails_its_images_only(tmp_path, model, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photo(photos / "big.png", 20, 30, 1), photo(photos / "small.png", 8, 8, 2)
    real = jaxstyle.jobs.feedforward_model.apply_network

    def fails_big(params, network, images, mix, **options):
        if images.shape[1] == 20:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1 bytes.\nmore")
        return real(params, network, images, mix, **options)

    monkeypatch.setattr("jaxstyle.jobs.feedforward_model.apply_network", fails_big)
    assert main(["apply", str(model), str(photos), "-o", str(tmp_path / "out"), "--style", "0"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]
    err = capsys.readouterr().err
    assert f"jaxstyle: failed: {photos / 'big.png'}: RuntimeError: RESOURCE_EXHAUSTED: Out of memory" in err
    assert "more" not in err
