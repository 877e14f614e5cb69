"""Shared fixtures: random VGG-19 weights of the real shapes, tiny images."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

# Each test compiles for itself (tests/test_cli.py checks the persistent cache on its own); subprocesses inherit it.
os.environ.setdefault("JAXSTYLE_XLA_CACHE", "off")

from jaxstyle.model.vgg import CAFFE_PREPROCESSING, CONV_KERNEL_SHAPES  # noqa: E402
from jaxstyle.weights.formats import VGGWeights, write_converted


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


@pytest.fixture(scope="session")
def random_weights() -> VGGWeights:
    # Scale the first layer so that Caffe-preprocessed input (0-255) gives O(1) activations.
    layers = random_layers(0)
    k, b = layers["conv1_1"]
    layers["conv1_1"] = (k / 64.0, b)
    return VGGWeights(layers, CAFFE_PREPROCESSING, "random-test", "0" * 64)


@pytest.fixture(scope="session")
def random_vgg(random_weights):
    return random_weights.to_vgg("max")


@pytest.fixture(scope="session")
def weights_file(random_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random-vgg19.npz"
    write_converted(random_weights, path)
    return path


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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600)
