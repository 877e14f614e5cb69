"""Helpers the tests share (import them from here, not from conftest): random VGG-19 layers of
the real shapes, smooth test images, a fresh process with fake CPU devices, the one-line error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from jaxstyle.model.vgg import CONV_KERNEL_SHAPES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_layers(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """He-normal kernels [3, 3, I, O] and small biases, float32, for every VGG-19 conv."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, shape in CONV_KERNEL_SHAPES.items():
        fan_in = shape[0] * shape[1] * shape[2]
        kernel = (rng.standard_normal(shape, dtype=np.float32) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (0.01 * rng.standard_normal(shape[3], dtype=np.float32)).astype(np.float32)
        layers[name] = (kernel, bias)
    return layers


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random RGB image float32 [h, w, 3] in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 6, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(0.5 + 0.4 * np.sin(fx * 6.28 * x + phase) * np.cos(fy * 6.28 * y))
    return np.clip(np.stack(channels, -1), 0, 1).astype(np.float32)


def run_on_fake_cpu_devices(script: str, devices: int = 4) -> subprocess.CompletedProcess:
    """Run a Python ``script`` in a fresh process whose JAX sees ``devices`` CPU devices."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def one_line_error(capsys) -> str:
    """The command's stderr, checked to be one line starting ``jaxstyle: error: ``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("jaxstyle: error: ")
    return err[0]


def drive_preview(said: list, seen: dict, until, image: str = "/image.png") -> None:
    """A watcher of a run's live page: wait for the URL among the run's messages (``said``), poll the
    state until ``until(state)``, keep that state and the first bytes of ``image`` in ``seen``
    (``seen["image"]``), then press Stop."""
    import json
    import time
    import urllib.request

    while not any("preview: " in m for m in said):
        time.sleep(0.05)
    base, token = next(m for m in said if "preview: " in m).split("preview: ")[1].split("/?token=")
    while True:
        with urllib.request.urlopen(f"{base}/state?token={token}", timeout=10) as r:
            state = json.loads(r.read())
        if until(state):
            break
        time.sleep(0.05)
    seen.update(state)
    with urllib.request.urlopen(f"{base}{image}?token={token}", timeout=10) as r:
        seen["image"] = r.read()[:4]
    request = urllib.request.Request(f"{base}/control?token={token}", data=b'{"action": "stop"}',
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
