"""The engine's side of the review's defects (issue 20): the memory check of a split image, coarse-to-fine
batches, the batch Gram cache's key, `Progress.image()` after later chunks, non-finite per-pair values, chunks
on global step multiples."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from jaxstyle import StyleConfig, stylize, stylize_batch
from jaxstyle.engine import memory as memory_module
from tests.helpers import smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=4, style_weight=1.0,
             style_loss="gram")


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


@pytest.mark.parametrize("what", ["content_weights", "style_weights", "seeds"])
def test_batch_refuses_non_finite_per_pair_values(random_vgg, what):
    contents = np.stack([smooth_image(24, 32, 1)] * 2)
    with pytest.raises(ValueError, match="finite|integer"):
        stylize_batch(contents, [contents[0]] * 2, config=StyleConfig(**SMALL), vgg=random_vgg,
                      **{what: [1.0, math.nan]})


def test_drive_ends_chunks_on_global_multiples():
    from jaxstyle.engine.run import drive

    calls = []

    def run(state, n):
        calls.append(int(n))
        return types.SimpleNamespace(steps=state.steps + int(n), nonfinite=False), np.zeros(int(n))

    start = types.SimpleNamespace(steps=0, nonfinite=False)
    drive(run, start, iterations=7, chunk=4, period=4, offset=3, on_chunk=lambda *a: None)
    assert calls == [1, 4, 2]  # global steps 4, 8, then the stage's end at 10
