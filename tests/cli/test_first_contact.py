"""First contact (issue 20): the bundled examples and `demo`, and the CLI paths of the review's defects:
`--shard-image` checked per tile, non-finite option values, `--save-every` across stages, `batch --scales`."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.engine import memory as memory_module
from jaxstyle.examples import CONTENT, NAMES, STYLE, example_path
from jaxstyle.io.images import load_image
from tests.helpers import one_line_error, smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=4, style_weight=1.0,
             style_loss="gram")
FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "4", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet"]


def test_examples_are_installed_small_images():
    sizes = [example_path(name).stat().st_size for name in NAMES]
    assert sum(sizes) <= 300_000, sizes
    photo, painting = load_image(example_path(CONTENT)), load_image(example_path(STYLE))
    assert max(photo.shape[:2]) == 512 and max(painting.shape[:2]) == 512
    assert (example_path(CONTENT).parent / "CREDITS.txt").read_text().count("CC BY 3.0") == 1
    with pytest.raises(ValueError, match="expected an example image"):
        example_path("../pyproject.toml")


def test_demo_stylizes_the_examples_without_input_paths(env, tmp_path):
    out = tmp_path / "out.png"
    assert main(["demo", "-o", str(out), *FAST]) == 0
    assert Image.open(out).size == (32, 24)  # Tuebingen is 4:3
    assert main(["demo", "-o", str(out), *FAST]) == 2  # never overwritten silently


def test_shard_image_cli_uses_the_per_tile_check(env, images, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("--shard-image checked the whole image against one device")

    checked = []
    monkeypatch.setattr(memory_module, "check_fits", refuse)
    original = memory_module.check_fits_sharded
    monkeypatch.setattr(memory_module, "check_fits_sharded", lambda *a, **k: checked.append(a[4]) or original(*a, **k))
    content, style = images
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *FAST, "--shard-image"]) == 0
    assert checked == [(1, len(jax.local_devices()))] or checked == [(len(jax.local_devices()), 1)]


FLOAT_OPTIONS = ["--content-weight", "--style-weight", "--tv-weight", "--learning-rate", "--init-noise-blend",
                 "--style-scale", "--content-layer-weights", "--style-layer-weights", "--style-blend"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity"])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_cli_refuses_non_finite_numbers(env, images, tmp_path, capsys, option, value):
    content, style = images
    out = tmp_path / "o.png"
    if option.endswith("layer-weights"):
        value = f"1,{value}" if option.startswith("--style") else value
        extra = ["--style-layers", "relu1_1,relu2_1"] if option.startswith("--style") else []
    else:
        extra = []
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(content), str(style), "-o", str(out), *FAST, *extra, f"{option}={value}"])
    assert exc.value.code == 2
    assert "finite" in one_line_error(capsys)
    assert not out.exists()


def test_save_every_counts_steps_over_all_stages(env, images, tmp_path):
    content, style = images
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), *FAST, "--scales", "16,32",
                 "--scale-iterations", "3", "--save-every", "2"]) == 0
    saved = sorted(p.name for p in (tmp_path / "out_steps").iterdir())
    assert saved == ["step_00002.png", "step_00004.png", "step_00006.png"]  # 3 coarse steps, then 4 at 32 px
    assert {Image.open(tmp_path / "out_steps" / name).size for name in saved} == {(32, 24)}


def test_batch_cli_with_scales_runs_every_pair(env, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "s").mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(48, 64, i) * 255).astype(np.uint8)).save(tmp_path / "c" / f"{i}.png")
    Image.fromarray((smooth_image(40, 40, 9) * 255).astype(np.uint8)).save(tmp_path / "s" / "x.png")
    out = tmp_path / "out"
    assert main(["batch", "--contents", str(tmp_path / "c"), "--styles", str(tmp_path / "s"), "--out-dir", str(out),
                 *FAST, "--scales", "24,32", "--scale-iterations", "2", "--batch-size", "2"]) == 0
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["done"] == 2 and all(r["steps"] == 6 for r in report["pairs"])
    assert {Image.open(p).size for p in out.glob("*.png")} == {(32, 24)}
