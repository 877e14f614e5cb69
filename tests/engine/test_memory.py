"""The memory estimate: close to XLA's analysis of the compiled loop; absurd sizes refused fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from jaxstyle import StyleConfig
from jaxstyle.cli import main
from jaxstyle.engine.memory import WontFitError, check_fits, compiled_bytes, estimate_bytes
from jaxstyle.optim import optimizer_from_factory


@pytest.mark.parametrize("config", [StyleConfig(), StyleConfig(remat=True), StyleConfig(optimizer="adam"),
                                    StyleConfig(precision="bfloat16"), StyleConfig(conv="direct"),
                                    StyleConfig(style_loss="w2"), StyleConfig(style_loss="sliced", conv="direct"),
                                    "tests.engine.test_memory_optimizers:adam_factory",
                                    "tests.engine.test_memory_optimizers:optax_lbfgs_factory"],
                         ids=["default", "remat", "adam", "bfloat16", "direct", "w2", "sliced", "factory-adam",
                              "factory-optax-lbfgs"])
def test_estimate_is_within_25_percent_of_the_compiled_analysis(random_vgg, config):
    if isinstance(config, str):  # a module:factory optimizer, as the CLI makes it
        config = StyleConfig(optimizer=optimizer_from_factory(config))
    compiled = compiled_bytes(random_vgg, 192, 256, config)
    if compiled is None:
        pytest.skip("this backend gives no memory analysis")
    estimate = estimate_bytes(192, 256, config)
    assert 0.75 < estimate / compiled < 1.25, (estimate, compiled)


def test_estimate_grows_with_pixels_and_batch():
    direct = StyleConfig(conv="direct")
    small, large = estimate_bytes(256, 256, direct), estimate_bytes(1024, 1024, direct)
    assert 10 < large / small < 16
    assert estimate_bytes(256, 256, direct, batch=4) > 2.5 * small
    # Winograd's transformed kernels (on this CPU, conv3_2 to conv5_1): a fixed cost of ~400 MB
    assert 350e6 < estimate_bytes(256, 256, StyleConfig(conv="winograd")) - small < 500e6


def test_absurd_size_is_refused_before_anything_runs(weights_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(content)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(style)
    out = tmp_path / "out.png"
    start = time.perf_counter()
    assert main(["stylize", str(content), str(style), "-o", str(out), "--size", "400000"]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs about" in err[0] and "even block by block" in err[0], err
    assert "try a smaller --size" in err[0]
    assert str(content) in err[0] and not out.exists()
    with pytest.raises(WontFitError):
        check_fits(300000, 400000, StyleConfig(), "x")


def test_plan_prints_stages_and_memory(weights_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    content = tmp_path / "c.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(content)
    assert main(["plan", str(content), "--scales", "128,256", "--scale-iterations", "50"]) == 0
    out = capsys.readouterr().out
    assert "output: 256x192 px; stages: 128x96 (50 steps), 256x192 (300 steps)" in out
    assert "memory estimate:" in out and "fits" in out
    assert main(["plan", str(content), "--size", "400000"]) == 1
    assert "does NOT fit" in capsys.readouterr().out


class FakeAccelerator:
    platform, device_kind = "gpu", "fake GPU"

    def __init__(self, free_bytes):
        self.free = free_bytes

    def memory_stats(self):
        return {"bytes_limit": self.free, "bytes_in_use": 0}


def test_auto_batch_size_is_one_per_cpu_device():
    import jax

    from jaxstyle.engine.memory import auto_batch_size

    size, why = auto_batch_size(512, 512, StyleConfig())
    assert size == jax.local_device_count() and "CPU" in why


def test_auto_batch_size_fills_accelerator_memory_up_to_the_cap():
    from jaxstyle.engine.memory import AUTO_MEMORY_SHARE, MAX_AUTO_BATCH_PER_DEVICE, auto_batch_size

    config = StyleConfig()
    one, three = estimate_bytes(512, 512, config, 1), estimate_bytes(512, 512, config, 3)
    # room for 3 (but not 4) within the share of free memory
    free = int(three / AUTO_MEMORY_SHARE) + 1
    assert estimate_bytes(512, 512, config, 4) > AUTO_MEMORY_SHARE * free
    assert auto_batch_size(512, 512, config, [FakeAccelerator(free)])[0] == 3
    assert auto_batch_size(512, 512, config, [FakeAccelerator(free)] * 2)[0] == 6
    assert auto_batch_size(512, 512, config, [FakeAccelerator(1 << 50)])[0] == MAX_AUTO_BATCH_PER_DEVICE
    assert auto_batch_size(512, 512, config, [FakeAccelerator(one // 2)])[0] == 1  # check_fits refuses it later
