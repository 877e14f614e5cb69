"""Shared fixtures: random VGG-19 weights of the real shapes (as arrays, a network and a file),
the environment of a CLI run. Helpers are in :mod:`tests.helpers`."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

# Each test compiles for itself (tests/cli/test_cli.py checks the persistent cache on its own); subprocesses inherit it.
os.environ.setdefault("JAXSTYLE_XLA_CACHE", "off")

import jax  # noqa: E402

from jaxstyle.model.vgg import CAFFE_PREPROCESSING  # noqa: E402
from jaxstyle.weights.formats import VGGWeights, write_converted  # noqa: E402
from tests.helpers import random_layers, smooth_image  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each module's compiled programs go when it ends: XLA:CPU maps each executable's code into
    memory, and the whole suite's programs in one process passed Linux's 65530 mappings per process
    (vm.max_map_count), after which compiling segfaulted and small programs gave wrong numbers."""
    yield
    jax.clear_caches()


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


@pytest.fixture()
def env(weights_file, tmp_path, monkeypatch):
    """A CLI run with the random weights and its own cache folder."""
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    return weights_file


@pytest.fixture()
def images(tmp_path):
    """A content photo (48x64 JPEG) and a style painting (40x40 PNG) in the test's folder."""
    content, style = tmp_path / "photo.jpg", tmp_path / "painting.png"
    Image.fromarray((smooth_image(48, 64, 1) * 255).astype(np.uint8)).save(content)
    Image.fromarray((smooth_image(40, 40, 2) * 255).astype(np.uint8)).save(style)
    return content, style
