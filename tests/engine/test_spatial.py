"""One image split over height and width of 4 fake CPU devices equals the unsharded run."""

from __future__ import annotations

import textwrap

import pytest

from jaxstyle.engine.sharding import spatial_grid
from tests.helpers import run_on_fake_cpu_devices

SPATIAL = textwrap.dedent("""
    import numpy as np, jax
    assert jax.device_count() == 4, jax.devices()
    from jaxstyle import StyleConfig, stylize
    from jaxstyle.engine.sharding import spatial_grid, spatial_mesh
    from tests.helpers import random_layers, smooth_image
    from jaxstyle.model.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights.formats import VGGWeights
    layers = random_layers(0)
    k, b = layers["conv1_1"]; layers["conv1_1"] = (k / 64.0, b)
    vgg = VGGWeights(layers, CAFFE_PREPROCESSING, "t", "").to_vgg()
    config = StyleConfig(content_layers=("relu3_1",), style_layers=("relu1_1", "relu2_1", "relu3_1"),
                         iterations=5, style_weight=1.0, scales=(24,), scale_iterations=2, style_loss="gram")
    content, style = smooth_image(40, 48, 1), smooth_image(36, 30, 2)
    mesh = spatial_mesh(40, 48)
    assert dict(mesh.shape) == {"height": 2, "width": 2}, mesh.shape
    tiles = []
    plain = stylize(content, style, config=config, vgg=vgg, callback_every=2)
    sharded = stylize(content, style, config=config, vgg=vgg, mesh=mesh, callback_every=2,
                      callback=lambda p: tiles.append(len(p._x.addressable_shards)))
    assert tiles and all(t == 4 for t in tiles), tiles  # every stage's image lives in 4 tiles
    np.testing.assert_allclose(sharded.image, plain.image, atol=2e-4)
    np.testing.assert_allclose(sharded.loss_history, plain.loss_history, rtol=1e-4)
    print("SPATIAL-OK")
""")


@pytest.mark.slow
def test_spatially_sharded_equals_unsharded_on_4_cpu_devices():
    proc = run_on_fake_cpu_devices(SPATIAL)
    assert proc.returncode == 0 and "SPATIAL-OK" in proc.stdout, proc.stderr[-3000:]


def test_spatial_grid_prefers_square_tiles():
    assert spatial_grid(100, 400, 4) == (1, 4)
    assert spatial_grid(400, 100, 4) == (4, 1)
    assert spatial_grid(300, 300, 4) == (2, 2)
    assert spatial_grid(300, 400, 8) == (2, 4)
    assert spatial_grid(300, 400, 1) == (1, 1)
