"""The command line end to end: tiny images, tiny iteration counts, random VGG-19 weights."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from tests.helpers import ROOT, one_line_error, smooth_image

FAST = ["--style-loss", "gram", "--size", "32", "--iterations", "4", "--content-layers", "relu2_1",
        "--style-layers", "relu1_1,relu2_1", "--quiet"]


def test_stylize_writes_image_and_steps(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), *FAST, "--save-every", "2"]) == 0
    img = Image.open(out)
    assert img.size == (32, 24) and img.mode == "RGB"
    assert sorted(p.name for p in (tmp_path / "out_steps").iterdir()) == ["step_00002.png", "step_00004.png"]
    assert not list(tmp_path.glob(".*.part"))


def test_stylize_progress_lines_and_jpeg(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.jpg"
    args = ["stylize", str(content), str(style), "-o", str(out), *[a for a in FAST if a != "--quiet"],
            "--optimizer", "adam", "--init", "noise", "--pooling", "avg"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "step 4/4 loss" in err and f"wrote {out} (32x24, 4 steps" in err
    assert Image.open(out).format == "JPEG"


def test_refuses_to_overwrite(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert main(["stylize", str(content), str(style), "-o", str(out), *FAST]) == 2
    assert "already exists (pass --overwrite" in one_line_error(capsys)
    assert out.read_bytes() == b"precious"
    assert main(["stylize", str(content), str(style), "-o", str(content), *FAST, "--overwrite"]) == 2
    assert "output would overwrite input" in one_line_error(capsys)


@pytest.mark.parametrize("case,message", [
    ("missing", "missing.png: no such file"),
    ("text", "fake.png: not an image Pillow can read"),
    ("tiny", "content image is 2x1 px: expected at least 2x2 px"),
    ("layer", "unknown layer 'relu9_1'"),
    ("ext", "unsupported output extension '.gif'"),
    ("weights", "layer conv1_1 has kernel"),
])
def test_bad_input_is_one_line_exit_2_no_output(env, images, tmp_path, capsys, case, message):
    content, style = images
    out = tmp_path / "out.png"
    args = ["stylize", str(content), str(style), "-o", str(out), *FAST]
    if case == "missing":
        args[1] = str(tmp_path / "missing.png")
    elif case == "text":
        (tmp_path / "fake.png").write_text("not really a png")
        args[1] = str(tmp_path / "fake.png")
    elif case == "tiny":
        Image.new("RGB", (200, 100)).save(tmp_path / "wide.png")
        args[1] = str(tmp_path / "wide.png")
        args[args.index("--size") + 1] = "2"
    elif case == "layer":
        args += ["--style-layers", "relu9_1"]
    elif case == "ext":
        out = tmp_path / "out.gif"
        args[4] = str(out)
    elif case == "weights":
        bad = tmp_path / "bad.npz"
        with np.load(env) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["conv1_1.kernel"] = arrays["conv1_1.kernel"][:, :, :2]
        np.savez(bad, **arrays)
        args += ["--weights", str(bad)]
    assert main(args) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()
    assert not list(tmp_path.glob(".*.part"))


def test_argparse_rejects_bad_option_values(env, images, capsys):
    content, style = images
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(content), str(style), "-o", "x.png", "--size", "-5"])
    assert exc.value.code == 2
    assert "expected a positive integer, got '-5'" in capsys.readouterr().err


def test_weights_convert_and_info(env, tmp_path, capsys):
    dst = tmp_path / "copy.npz"
    assert main(["weights", "convert", str(env), str(dst)]) == 0
    assert main(["weights", "info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "source: random-test" in out and "conv5_4  kernel (3, 3, 512, 512)" in out
    assert "preprocessing: BGR" in out and "parameters: 20,024,384" in out
    assert main(["weights", "convert", str(env), str(dst)]) == 2
    assert "already exists" in one_line_error(capsys)


def test_list_layers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["stylize", "--list-layers"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["conv1_1", "block1_conv1"] and len(lines) == 37
    assert lines[-1].split() == ["pool5", "block5_pool"]


@pytest.mark.slow
def test_subprocess_error_has_no_traceback(tmp_path):
    env = {**os.environ, "JAXSTYLE_CACHE": str(tmp_path / "empty-cache"), "JAXSTYLE_WEIGHTS": ""}
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", "stylize", str(tmp_path / "nope.jpg"),
                           str(tmp_path / "nope2.jpg"), "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"jaxstyle: error: {tmp_path / 'nope.jpg'}: no such file"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_second_run_reuses_the_compiled_programs(env, images, tmp_path):
    """JAX's persistent compilation cache, on by default in the cache folder: the second run of the
    same shapes reads the step loop's program back (its LRU access stamp moves) and adds none."""
    content, style = images
    cache = tmp_path / "cache"
    environ = {**os.environ, "JAXSTYLE_CACHE": str(cache), "JAX_PLATFORMS": "cpu"}
    environ.pop("JAXSTYLE_XLA_CACHE")  # the default: <cache>/xla
    args = [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(tmp_path / "o.png"),
            *FAST, "--overwrite"]
    subprocess.run(args, env=environ, check=True, timeout=300, cwd=ROOT)
    loops = sorted((cache / "xla").glob("jit_advance-*-cache"))
    assert len(loops) == 1, sorted(p.name for p in (cache / "xla").iterdir())
    stamp = loops[0].with_name(loops[0].name.replace("-cache", "-atime"))
    first = stamp.read_bytes()
    subprocess.run(args, env=environ, check=True, timeout=300, cwd=ROOT)
    assert sorted((cache / "xla").glob("jit_advance-*-cache")) == loops and stamp.read_bytes() != first
    environ["JAXSTYLE_XLA_CACHE"] = "off"
    subprocess.run([*args, "--size", "40"], env=environ, check=True, timeout=300, cwd=ROOT)
    assert sorted((cache / "xla").glob("jit_advance-*-cache")) == loops  # new shapes, but nothing kept


def test_scales_end_at_the_output_size(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out.png"
    fast = [a for a in FAST if a != "--quiet"]
    fast[fast.index("--size"):fast.index("--size") + 2] = []
    assert main(["stylize", str(content), str(style), "-o", str(out), *fast, "--scales", "24,32",
                 "--scale-iterations", "2"]) == 0
    assert Image.open(out).size == (32, 24)
    assert "step 6/6 loss" in capsys.readouterr().err  # 2 at 24 px + 4 at 32 px


@pytest.mark.parametrize("extra,message", [
    (["--scales", "24,48", "--size", "32"], "--scales must end with the output size --size 32"),
    (["--scales", "32,24"], "--scales must increase"),
    (["--min-scale", "64", "--size", "32"], "--min-scale 64 is larger than --size 32"),
    (["--scales", "24,32", "--min-scale", "16"], "give --scales or --min-scale, not both"),
])
def test_bad_scales_are_one_line_errors(env, images, tmp_path, capsys, extra, message):
    content, style = images
    out = tmp_path / "out.png"
    fast = list(FAST)
    fast[fast.index("--size"):fast.index("--size") + 2] = []
    assert main(["stylize", str(content), str(style), "-o", str(out), *fast, *extra]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_min_scale_steps_by_sqrt2():
    import argparse

    from jaxstyle.cli import resolve_scales

    args = argparse.Namespace(scales=None, min_scale=128, size=512)
    resolve_scales(args)
    assert args.coarse_scales == (128, 181, 256, 362) and args.size == 512


@pytest.mark.slow
@pytest.mark.parametrize("save", [True, False])
def test_sigint_saves_the_partial_image(env, images, tmp_path, save):
    import signal
    import subprocess
    import sys
    import time

    content, style = images
    out = tmp_path / "out.png"
    args = [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(out),
            *[a for a in FAST if a != "--quiet"], "--iterations", "100000"]
    args += [] if save else ["--no-save-on-interrupt"]
    root = ROOT
    # A shell that starts pytest in the background (`cmd &`) makes SIGINT ignored, and the child
    # would inherit that; a Python handler here is reset to the default in the child instead.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(args, cwd=root, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 300
    for line in proc.stderr:  # wait for a first progress report
        if line.startswith("step ") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "jaxstyle: interrupted" in err
    assert not list(tmp_path.glob(".*.part"))
    if save:
        assert "saved the partial result" in err
        image = Image.open(out)
        image.load()
        assert image.size == (32, 24)
    else:
        assert not out.exists()


def test_style_size_and_scale(env, images, tmp_path, capsys, monkeypatch):
    stylize_module = sys.modules["jaxstyle.jobs.single"]
    seen = []
    real = stylize_module.stylize
    monkeypatch.setattr(stylize_module, "stylize", lambda c, s, **kw: seen.append(s[0].shape) or real(c, s, **kw))
    content, style = images  # the style is 40x40
    for extra, shape in ((["--style-size", "20"], (20, 20, 3)), (["--style-scale", "0.5"], (16, 16, 3)),
                         ([], (32, 32, 3))):
        out = tmp_path / f"out{len(seen)}.png"
        assert main(["stylize", str(content), str(style), "-o", str(out), *FAST, *extra]) == 0
        assert seen[-1] == shape
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "x.png"), *FAST, "--style-size", "20",
                 "--style-scale", "2"]) == 2
    assert "give --style-size or --style-scale, not both" in one_line_error(capsys)


def test_artist_controls_from_the_command_line(env, images, tmp_path, capsys):
    content, style = images
    second, mask, half = tmp_path / "second.png", tmp_path / "mask.png", tmp_path / "half.png"
    Image.fromarray((smooth_image(30, 50, 3) * 255).astype(np.uint8)).save(second)
    grey = np.zeros((48, 64), np.uint8)
    grey[:, :32] = 255
    Image.fromarray(grey).save(mask)
    Image.fromarray(grey[:40, :40]).save(half)
    runs = {
        "blend.png": ["--style-blend", "0.7,0.3", "--preserve-colors", "luminance", "--init", "style",
                      "--init-noise-blend", "0.3", "--normalize-gradients", "--optimizer", "adam"],
        "masked.tif": ["--content-mask", str(mask), "--style-masks", f"{half},{half}",
                       "--preserve-colors", "histogram", "--plot", str(tmp_path / "loss.png")],
    }
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["stylize", str(content), str(style), str(second), "-o", str(out), *FAST, *extra]) == 0, \
            capsys.readouterr().err
    assert Image.open(tmp_path / "blend.png").size == (32, 24)
    tif = Image.open(tmp_path / "masked.tif")
    assert tif.size == (32, 24) and tif.format == "TIFF"
    plot = Image.open(tmp_path / "loss.png")
    assert plot.format == "PNG" and plot.size[0] > 300
    for extra, message in ((["--style-blend", "1,2,3"], "expected 2 style blend weights"),
                           (["--content-mask", str(mask), "--style-masks", str(half)], "expected 2 masks"),
                           (["--content-mask", str(tmp_path / "nope.png")], "nope.png: no such file"),
                           (["--plot", str(tmp_path / "loss.svg")], "--plot writes a .png")):
        assert main(["stylize", str(content), str(style), str(second), "-o", str(tmp_path / "x.png"), *FAST,
                     *extra]) == 2
        assert message in one_line_error(capsys)
    assert not (tmp_path / "x.png").exists()
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "x.png"), *FAST,
                 "--content-mask", str(mask)]) == 2
    assert "at least two style images" in one_line_error(capsys)


def test_plot_without_matplotlib_says_how_to_get_it(env, images, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    content, style = images
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "x.png"), *FAST,
                 "--plot", str(tmp_path / "loss.png")]) == 2
    assert "pip install 'jaxstyle[plot]'" in one_line_error(capsys)
    assert not (tmp_path / "x.png").exists()


def test_an_interrupt_swallowed_by_a_finalizer_is_raised_at_the_next_check(capsys):
    """A SIGTERM whose KeyboardInterrupt lands in a gc callback or __del__ (where Python only
    reports it) still stops the run: at the next chunk or pair, and without a traceback."""
    import gc
    import signal

    from jaxstyle.cli import Interruptions, stop_if_interrupted

    class Finalized:
        def __del__(self):
            Interruptions.handle(signal.SIGTERM, None)

    with Interruptions():
        stop_if_interrupted()  # nothing asked yet
        Finalized()
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()
    assert "Traceback" not in capsys.readouterr().err
    with Interruptions():  # a new command starts with no request
        stop_if_interrupted()
