"""Block-by-block evaluation from the command line and the jobs: forced, forbidden and planned; with
masks and colour controls; in a batch; interrupted; the default coarse-to-fine schedule of big outputs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main, resolve_scales
from jaxstyle.config import StyleConfig
from jaxstyle.jobs.single import SingleJob, run_single
from tests.helpers import one_line_error, smooth_image

# relu2_1 at most: a 4 px halo on a 2 px grid, so 16 px blocks split a 32x24 image 2x2. Gram: its blocked
# sums match the whole image's to 1e-6, which 4 L-BFGS steps keep within 1e-4 (W2's float32 root to ~5e-5,
# which they amplify past it; W2 by blocks: tests/objective/test_blocks_w2.py)
FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "4", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


def final_loss(err: str) -> float:
    return float(err.split("loss ")[-1].rstrip(")\n"))


def test_forced_blocks_give_the_whole_image_run(env, images, tmp_path, capsys):
    content, style = images
    whole, blocked = tmp_path / "whole.png", tmp_path / "blocked.png"
    assert main(["stylize", str(content), str(style), "-o", str(whole), *FAST, "--block-size", "off"]) == 0
    whole_err = capsys.readouterr().err
    assert "block by block" not in whole_err
    assert main(["stylize", str(content), str(style), "-o", str(blocked), *FAST, "--block-size", "16"]) == 0
    err = capsys.readouterr().err
    assert "evaluation: block by block, 2x2 blocks of about 16 px" in err and "forced by --block-size" in err
    assert abs(final_loss(err) - final_loss(whole_err)) <= 1e-4 * final_loss(whole_err)
    a, b = (np.asarray(Image.open(p), np.float32) for p in (whole, blocked))
    assert np.abs(a - b).max() <= 2  # 8-bit levels


def test_masks_and_colour_controls_apply_block_by_block(env, images, tmp_path, capsys):
    content, style = images
    second = tmp_path / "second.png"
    Image.fromarray((smooth_image(36, 44, 7) * 255).astype(np.uint8)).save(second)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))).save(mask)
    losses = []
    for block in ("off", "16"):
        out = tmp_path / f"out-{block}.png"
        assert main(["stylize", str(content), str(style), str(second), "-o", str(out), *FAST, "--block-size", block,
                     "--content-mask", str(mask), "--preserve-colors", "luminance", "--tv-weight", "0.01"]) == 0
        losses.append(final_loss(capsys.readouterr().err))
    assert abs(losses[1] - losses[0]) <= 1e-4 * losses[0]


@pytest.mark.parametrize("value,message", [("0", "expected auto, off or a block size in px, got '0'"),
                                           ("big", "expected auto, off or a block size in px, got 'big'"),
                                           ("-16", "expected auto, off or a block size in px")])
def test_bad_block_sizes_are_refused_by_the_parser(env, images, tmp_path, capsys, value, message):
    content, style = images
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *FAST, f"--block-size={value}"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--block-size", "2"], "--block-size: expected at least 4 px for these layers, got 2"),
    (["--block-size", "16", "--shard-image"], "--shard-image splits the image over devices: it does not go with "
                                              "--block-size"),
])
def test_block_sizes_that_cannot_work_are_one_line_errors(env, images, tmp_path, capsys, extra, message):
    content, style = images
    out = tmp_path / "o.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), *FAST, *extra]) == 2
    assert message in one_line_error(capsys) and not out.exists()


def test_plan_shows_the_evaluation(env, images, capsys):
    content, _ = images
    assert main(["plan", str(content), *FAST]) == 0
    assert "evaluation: whole image" in capsys.readouterr().out
    assert main(["plan", str(content), *FAST, "--block-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "evaluation: block by block, 2x2 blocks of about 16 px, windows 20x16" in out and "fits" in out
    assert main(["plan", str(content), "--size", "4096"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("coarse-to-fine 1024 -> 2048 -> 4096 px") and "2048x1536 (300 steps)" in out


def test_an_interrupted_blocked_run_saves_the_latest_image(env, images, tmp_path):
    content, style = images
    out = tmp_path / "out.png"
    job = SingleJob(str(content), (str(style),), str(out), size=32, block_size=16,
                    config=StyleConfig(iterations=20, content_layers=("relu2_1",), style_layers=("relu1_1",)))

    def stop(progress):
        raise KeyboardInterrupt

    said = []
    with pytest.raises(KeyboardInterrupt):
        run_single(job, on_progress=stop, callback_every=2, notify=said.append)
    assert Image.open(out).size == (32, 24) and any("interrupted at step 2/20" in s for s in said)


def test_a_batch_runs_big_pairs_one_at_a_time_block_by_block(env, images, tmp_path, capsys):
    content, style = images
    out = tmp_path / "out"
    contents, styles = tmp_path / "contents", tmp_path / "styles"
    contents.mkdir(), styles.mkdir()
    for i in range(2):
        Image.open(content).save(contents / f"c{i}.png")
    Image.open(style).save(styles / "s.png")
    assert main(["batch", "--contents", str(contents), "--styles", str(styles), "--out-dir", str(out), *FAST,
                 "--block-size", "16"]) == 0
    err = capsys.readouterr().err
    assert "batch size 1 (one pair at a time, block by block)" in err and "2x2 blocks" in err
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["done"] == 2


@pytest.mark.parametrize("given,size,coarse", [(dict(size=4096), 4096, (1024, 2048)), (dict(size=1024), 1024, ()),
                                               (dict(scales=[4096]), 4096, ()),
                                               (dict(size=4096, min_scale=2048), 4096, (2048, 2896))])
def test_big_outputs_run_coarse_to_fine_unless_told(given, size, coarse):
    args = argparse.Namespace(**{"scales": None, "min_scale": None, "size": None, **given})
    resolve_scales(args)
    assert (args.size, tuple(args.coarse_scales)) == (size, coarse)
    assert args.default_scales == (given == dict(size=4096))
    video = argparse.Namespace(scales=None, min_scale=None, size=4096)
    resolve_scales(video, default_coarse=False)
    assert video.coarse_scales == ()
