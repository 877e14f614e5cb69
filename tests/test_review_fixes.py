"""Defects found in review (issue 20): each test failed before its fix.

The bundled examples and `demo`, `--shard-image`'s memory check, coarse-to-fine batches, the
batch Gram cache's key, `Progress.image()` after later chunks, mask resampling, non-finite
options and `--save-every` across stages.
"""

from __future__ import annotations

import math
import types

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle import StyleConfig, stylize, stylize_batch
from jaxstyle import memory as memory_module
from jaxstyle.cli import main
from jaxstyle.examples import CONTENT, NAMES, STYLE, example_path
from jaxstyle.io.images import load_image, resize_mask_to
from jaxstyle.objective.resample import resize_mask
from tests.conftest import smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=4, style_weight=1.0)
FAST = ["--size", "32", "--iterations", "4", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet"]


@pytest.fixture()
def env(weights_file, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    return weights_file


@pytest.fixture()
def images(tmp_path):
    content, style = tmp_path / "photo.png", tmp_path / "painting.png"
    Image.fromarray((smooth_image(48, 64, 1) * 255).astype(np.uint8)).save(content)
    Image.fromarray((smooth_image(40, 40, 2) * 255).astype(np.uint8)).save(style)
    return content, style


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("jaxstyle: error: ")
    return err[0]


# 1. The main job on a fresh clone: example images inside the package.

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


# 2. --shard-image is checked per device after the split, not as one image on one device.

class FakeDevice:
    def __init__(self, platform: str, free: int, index: int):
        self.platform, self.device_kind, self.free, self.index = platform, f"fake {platform}", free, index

    def memory_stats(self):
        return {"bytes_limit": self.free, "bytes_in_use": 0} if self.platform != "cpu" else None

    def __repr__(self):
        return f"{self.platform}:{self.index}"


def test_sharded_check_is_per_device_on_accelerators():
    config = StyleConfig()
    whole = memory_module.estimate_bytes(2048, 2048, config)
    tile = memory_module.estimate_bytes(1024, 1024, config)
    free = (whole + tile) // 2  # the whole image does not fit one device, a quarter of it does
    gpus = [FakeDevice("gpu", free, i) for i in range(4)]
    with pytest.raises(memory_module.WontFitError):
        memory_module.check_fits(2048, 2048, config, "big.jpg", device=gpus[0])
    assert memory_module.check_fits_sharded(2048, 2048, config, "big.jpg", (2, 2), gpus) == tile
    gpus[3].free = tile // 2  # one device with less free memory than its tile needs
    with pytest.raises(memory_module.WontFitError, match="per device .* on gpu:3"):
        memory_module.check_fits_sharded(2048, 2048, config, "big.jpg", (2, 2), gpus)


def test_sharded_check_sums_cpu_devices_sharing_the_host(monkeypatch):
    config = StyleConfig()
    tile = memory_module.estimate_bytes(512, 512, config)
    cpus = [FakeDevice("cpu", 0, i) for i in range(4)]
    monkeypatch.setattr(memory_module, "available_bytes", lambda device=None: (4 * tile - 1, "available host memory"))
    with pytest.raises(memory_module.WontFitError, match="share this host's memory"):
        memory_module.check_fits_sharded(1024, 1024, config, "big.jpg", (2, 2), cpus)
    monkeypatch.setattr(memory_module, "available_bytes", lambda device=None: (4 * tile, "available host memory"))
    assert memory_module.check_fits_sharded(1024, 1024, config, "big.jpg", (2, 2), cpus) == tile


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


# 3. Coarse-to-fine batches.

def test_batch_with_scales_equals_a_loop_of_stylize(random_vgg):
    config = StyleConfig(**SMALL, scales=(16, 24), scale_iterations=3)
    contents = np.stack([smooth_image(24, 32, 30), smooth_image(24, 32, 31)])
    styles = [smooth_image(30, 30, 32), smooth_image(28, 36, 33)]
    seen = []
    batched = stylize_batch(contents, styles, config=config, vgg=random_vgg, callback_every=2,
                            callback=lambda p: seen.append(p.step))
    assert seen == [2, 3, 4, 6, 8, 10] and seen[-1] == config.total_iterations
    for content, style, result in zip(contents, styles, batched):
        single = stylize(content, style, config=config, vgg=random_vgg, callback_every=2)
        assert result.steps == single.steps == 10 and result.status == "done"
        assert result.image.shape == content.shape
        np.testing.assert_allclose(result.loss_history, single.loss_history, rtol=2e-4)
        np.testing.assert_allclose(result.image, single.image, atol=2e-4)


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


# 4. The batch Gram cache is keyed by what determines the targets, not by id().

def test_gram_cache_follows_the_pixels_and_the_program(random_vgg):
    content = smooth_image(24, 32, 40)[None]
    style = smooth_image(30, 30, 41)
    cache = {}
    config = StyleConfig(**SMALL)
    stylize_batch(content, [style], config=config, vgg=random_vgg, gram_cache=cache)
    style[:] = smooth_image(30, 30, 42)  # the same array object (same id) with other pixels
    cached = stylize_batch(content, [style], config=config, vgg=random_vgg, gram_cache=cache)[0]
    fresh = stylize_batch(content, [style.copy()], config=config, vgg=random_vgg)[0]
    np.testing.assert_array_equal(cached.loss_history, fresh.loss_history)
    other = StyleConfig(**SMALL, conv="winograd")  # another program: its own targets
    before = len(cache)
    stylize_batch(content, [style], config=other, vgg=random_vgg, gram_cache=cache)
    assert len(cache) == before + 1


# 5. Progress.image() stays valid after later chunks (the state's buffers are donated).

def test_progress_image_called_after_the_run(random_vgg):
    kept, images = [], []

    def callback(progress):
        kept.append(progress)
        images.append(progress.image())

    content, style = smooth_image(24, 32, 50), smooth_image(30, 30, 51)
    stylize(content, style, config=StyleConfig(**{**SMALL, "iterations": 6}), vgg=random_vgg, callback=callback,
            callback_every=2)
    assert len(kept) == 3
    for progress, image in zip(kept, images):
        np.testing.assert_array_equal(progress.image(), image)
    assert not np.array_equal(images[0], images[-1])


# 7. Masks are resampled with a filter that cannot overshoot.

@pytest.mark.parametrize("shape", [(13, 17), (64, 80), (7, 40)])
def test_mask_resize_stays_between_the_levels_of_an_edge(shape):
    mask = np.full((40, 50), 0.5, np.float32)
    mask[:, 23:] = 1.0  # a hard edge between the middle style (0.5) and the first (1)
    mask[5:9, 5:40] = 0.5
    for resized in (np.asarray(resize_mask(mask, shape)), resize_mask_to(mask, *shape),
                    resize_mask_to(np.repeat(mask[..., None], 3, -1), *shape)[..., 0]):
        assert resized.shape[:2] == shape
        assert resized.min() >= 0.5 - 1e-6 and resized.max() <= 1.0 + 1e-6, (resized.min(), resized.max())


# 9. Non-finite numbers are refused everywhere.

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


@pytest.mark.parametrize("field", ["content_weight", "style_weight", "tv_weight", "learning_rate", "noise_scale",
                                   "init_noise_blend", "content_layer_weights", "style_layer_weights", "style_blend",
                                   "seed", "iterations", "scale_iterations", "lbfgs_memory", "scales"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_config_refuses_non_finite_numbers(field, value):
    kwargs = {"content_layer_weights": (value,), "style_layer_weights": (1.0, value, 1.0, 1.0, 1.0),
              "style_blend": (1.0, value), "scales": (value,)}
    with pytest.raises(ValueError, match=field.replace("_", "[ _]")):
        StyleConfig(**{field: kwargs.get(field, value)})


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**30])
def test_config_refuses_seeds_beyond_int64(seed):
    with pytest.raises(ValueError, match="seed"):
        StyleConfig(seed=seed)


@pytest.mark.parametrize("what", ["content_weights", "style_weights", "seeds"])
def test_batch_refuses_non_finite_per_pair_values(random_vgg, what):
    contents = np.stack([smooth_image(24, 32, 1)] * 2)
    with pytest.raises(ValueError, match="finite|integer"):
        stylize_batch(contents, [contents[0]] * 2, config=StyleConfig(**SMALL), vgg=random_vgg,
                      **{what: [1.0, math.nan]})


# 11. --save-every follows the global step count across coarse-to-fine stages.

def test_save_every_counts_steps_over_all_stages(env, images, tmp_path):
    content, style = images
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), str(style), "-o", str(out), *FAST, "--scales", "16,32",
                 "--scale-iterations", "3", "--save-every", "2"]) == 0
    saved = sorted(p.name for p in (tmp_path / "out_steps").iterdir())
    assert saved == ["step_00002.png", "step_00004.png", "step_00006.png"]  # 3 coarse steps, then 4 at 32 px
    assert {Image.open(tmp_path / "out_steps" / name).size for name in saved} == {(32, 24)}


def test_drive_ends_chunks_on_global_multiples():
    from jaxstyle.engine.run import drive

    calls = []

    def run(state, n):
        calls.append(int(n))
        return types.SimpleNamespace(steps=state.steps + int(n), nonfinite=False), np.zeros(int(n))

    start = types.SimpleNamespace(steps=0, nonfinite=False)
    drive(run, start, iterations=7, chunk=4, period=4, offset=3, on_chunk=lambda *a: None)
    assert calls == [1, 4, 2]  # global steps 4, 8, then the stage's end at 10
