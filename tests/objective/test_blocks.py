"""Block-by-block evaluation equals the whole image's value and gradient (float32, <= 1e-4 relative),
for the layouts, layers, poolings, masks and options that change what a block computes."""

from __future__ import annotations

import dataclasses
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.config import StyleConfig
from jaxstyle.objective import blocks
from jaxstyle.objective.masks import layer_masks, region_masks
from jaxstyle.objective.targets import content_targets, layer_sizes, statistic_targets, style_parts, style_targets
from jaxstyle.objective.terms import Objective, loss_terms, loss_weights
from tests.helpers import run_on_fake_cpu_devices, smooth_image

# halo 6 px on a grid of 2. Gram: the targets here are Grams (W2 by blocks: test_blocks_w2.py)
SHALLOW = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"), style_loss="gram")


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def both(vgg, config: StyleConfig, shape, block_size, *, pooling="max", content_mask=False, per_chunk=1):
    """(whole value, whole gradient, blocked value, blocked gradient, layout) at an iterate that overshoots [0, 1],
    for the config's style loss (Gram or W2: the losses blocks evaluate)."""
    vgg = dataclasses.replace(vgg, pooling=pooling)
    objective = Objective.build(config, vgg)
    params = objective.params(vgg)
    h, w = shape
    content = jnp.asarray(smooth_image(h, w, 1))
    targets = {"content": content_targets(params, content, objective)}
    styles = [jnp.asarray(smooth_image(30, 26, s)) for s in ((2, 3) if content_mask else (2,))]
    if objective.style_loss == "gram":
        grams = [style_targets(params, style, objective) for style in styles]
        targets["style"] = jax.tree.map(lambda *g: jnp.stack(g), *grams) if content_mask else grams[0]
    else:  # one target per region, or the one style's (targets.statistic_targets, as stage_targets makes them)
        parts = [style_parts(params, style, objective) for style in styles]
        targets["style"] = statistic_targets(parts, (1.0,) * len(parts), objective,
                                             layer_sizes(params, shape, objective), content_mask)
    if content_mask:
        grey = np.linspace(0, 1, w, dtype=np.float32)[None].repeat(h, 0)
        targets["masks"] = layer_masks(region_masks(grey, 2), objective.style_layers)
    weights = loss_weights(config)
    x = jnp.asarray(smooth_image(h, w, 3)) * 1.1 - 0.05
    whole_value, whole_grad = jax.jit(jax.value_and_grad(
        lambda x: loss_terms(params, x, targets, weights, objective)["total"]))(x)
    blocking = blocks.Blocking(block_size, per_chunk=per_chunk)
    layout = blocking.layout(h, w, objective.layers, objective.winograd_layers)
    assert layout is not None and layout.count > 1
    padded = blocks.pad_targets(targets, layout)
    value, grad = jax.jit(jax.value_and_grad(
        lambda x: blocks.blocked_loss_terms(params, x, padded, weights, objective, layout, blocking)["total"]))(x)
    return whole_value, whole_grad, value, grad, layout


def test_receptive_halo_of_the_default_layers_and_of_winograd_tiles():
    assert blocks.receptive_halo(("relu5_1",)) == (80, 16)  # 2 + 4 + 16 + 32 + 16 px, on the pool4 grid
    assert blocks.receptive_halo(("relu1_1",)) == (1, 1)
    assert blocks.receptive_halo(("relu2_1", "relu1_1")) == (4, 2)
    assert blocks.receptive_halo(("relu2_2",)) == (6, 2)
    # Winograd's 4x4 tiles at conv5_1's depth (16 px a position) put windows on a 64 px grid
    assert blocks.receptive_halo(("relu5_1",), ("conv3_2", "conv5_1")) == (128, 64)
    assert blocks.receptive_halo(("relu4_2",), ("conv3_2",)) == (48, 16)  # 40 px, on a 16 px grid


@pytest.mark.parametrize("length,block,halo,unit", [(100, 30, 6, 2), (37, 10, 6, 2), (3072, 1024, 128, 64),
                                                     (1000, 999, 80, 16), (257, 64, 80, 16), (50, 200, 6, 2)])
def test_axis_blocks_tile_the_image_and_each_window_holds_its_region_and_halo(length, block, halo, unit):
    axis = blocks.axis_blocks(length, block, halo, unit)
    assert axis.bounds[0] == 0 and axis.bounds[-1] == length
    assert all(b > a for a, b in zip(axis.bounds, axis.bounds[1:]))
    assert all(b % unit == 0 for b in axis.bounds[:-1]) and axis.padded % unit == 0 and axis.window % unit == 0
    assert axis.padded - unit < length <= axis.padded
    for start, a, b in zip(axis.starts, axis.bounds, axis.bounds[1:]):
        assert start % unit == 0 and 0 <= start and start + axis.window <= axis.padded
        assert start <= max(0, a - halo) and start + axis.window >= min(axis.padded, b + halo)
    assert len(axis.starts) == max(1, -(-length // block))


def test_a_block_below_two_pooling_units_is_refused():
    with pytest.raises(ValueError, match="at least 32 px"):
        blocks.block_layout(200, 200, ("relu5_1",), 20)


@pytest.mark.parametrize("shape,block", [((44, 52), 12), ((41, 37), 10), ((40, 48), 20)])
def test_value_and_gradient_equal_the_whole_image(random_vgg, shape, block):
    """Shallow layers: sizes on and off the pooling grid (windows then reach past the image)."""
    value, grad, blocked_value, blocked_grad, layout = both(random_vgg, StyleConfig(**SHALLOW, tv_weight=1e-2),
                                                            shape, block)
    assert relative(blocked_value, value) <= 1e-5
    assert relative(blocked_grad, grad) <= 1e-4


def test_default_layers_equal_the_whole_image(random_vgg):
    """relu5_1 and relu4_2 (halo 80 px), an image off the pooling grid, 4x3 blocks."""
    value, grad, blocked_value, blocked_grad, layout = both(
        random_vgg, StyleConfig(conv="direct", style_weight=1.0, style_loss="gram"), (100, 90), 32)
    assert layout.reaches_past_image and layout.count == 12
    assert relative(blocked_value, value) <= 1e-5
    assert relative(blocked_grad, grad) <= 1e-4


def test_winograd_blocks_are_as_close_to_the_whole_image_as_winograd_is_to_the_direct_convolution(random_vgg):
    """Winograd rounds by position in its 4x4 tiles: windows sit on its grid (64 px at conv5_1), so
    blocks round as the whole image does, but a ReLU or max that rounding tips the other way still
    changes the gradient locally. Blocks stay within the distance Winograd itself has from the
    direct convolution (here 1.8e-3 vs 1.7e-3 of the norm; on most images both are ~1e-5)."""
    config = StyleConfig(conv="auto", style_weight=1.0, style_loss="gram")
    value, grad, blocked_value, blocked_grad, layout = both(random_vgg, config, (150, 200), 128)
    direct = StyleConfig(conv="direct", style_weight=1.0, style_loss="gram")
    _, direct_grad, *_ = both(random_vgg, direct, (150, 200), 128)
    assert layout.unit == 64 and layout.reaches_past_image
    assert relative(blocked_value, value) <= 1e-5
    assert relative(blocked_grad, grad) <= 1.5 * relative(grad, direct_grad)


@pytest.mark.parametrize("option", ["avg pooling", "content mask", "normalize gradients", "layer weights", "chunks"])
def test_options_that_change_the_terms_equal_the_whole_image(random_vgg, option):
    config = StyleConfig(**SHALLOW, tv_weight=1e-2, normalize_gradients=option == "normalize gradients",
                         style_layer_weights=(0.2, 3.0) if option == "layer weights" else None,
                         style_weight=5.0 if option == "layer weights" else 1e-3)
    value, grad, blocked_value, blocked_grad, _ = both(
        random_vgg, config, (42, 50), 12, pooling="avg" if option == "avg pooling" else "max",
        content_mask=option == "content mask", per_chunk=3 if option == "chunks" else 1)
    assert relative(blocked_value, value) <= 1e-5
    assert relative(blocked_grad, grad) <= 1e-4


def test_blocked_targets_equal_the_whole_images(random_vgg):
    config = StyleConfig(**SHALLOW)
    objective = Objective.build(config, random_vgg)
    params = objective.params(random_vgg)
    image = jnp.asarray(smooth_image(43, 38, 5))
    blocking = blocks.Blocking(10, per_chunk=2)
    layout = blocking.layout(43, 38, objective.layers)
    features = blocks.blocked_content_features(params, image, objective=objective, layout=layout, blocking=blocking)
    for name, whole in content_targets(params, image, objective).items():
        assert features[name].shape[:2] == (layout.rows.padded >> 1, layout.cols.padded >> 1)
        assert relative(features[name][: whole.shape[0], : whole.shape[1]], whole) <= 1e-5
        assert float(jnp.abs(features[name][whole.shape[0]:]).max(initial=0.0)) == 0.0
    mask = jnp.asarray(smooth_image(43, 38, 6)[..., 0])
    style_layout = blocking.layout(43, 38, objective.style_layers)
    for given in (None, mask):
        grams = blocks.blocked_style_grams(params, image, given, objective=objective, layout=style_layout,
                                           blocking=blocking)
        for name, whole in style_targets(params, image, objective, given).items():
            assert relative(grams[name], whole) <= 1e-5


def test_small_images_and_single_blocks_are_evaluated_whole():
    blocking = blocks.Blocking(64, whole_up_to=100 * 100)
    assert blocking.layout(100, 100, ("relu5_1",)) is None  # small enough
    assert blocks.Blocking(512).layout(300, 400, ("relu5_1",)) is None  # one block
    assert blocking.layout(128, 100, ("relu5_1",)).count == 4  # 2x2 blocks


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_blocking_refuses_a_bad_block_size(bad):
    with pytest.raises(ValueError, match="block_size"):
        blocks.Blocking(bad)


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    assert jax.device_count() == 2, jax.devices()
    from jaxstyle.config import StyleConfig
    from jaxstyle.engine.sharding import batch_mesh
    from jaxstyle.objective import blocks
    from jaxstyle.objective.targets import content_targets, layer_sizes, statistic_targets, style_parts, style_targets
    from jaxstyle.objective.terms import Objective, loss_weights
    from jaxstyle.model.vgg import CAFFE_PREPROCESSING
    from jaxstyle.weights.formats import VGGWeights
    from tests.helpers import random_layers, smooth_image
    layers = random_layers(0)
    k, b = layers["conv1_1"]; layers["conv1_1"] = (k / 64.0, b)
    vgg = VGGWeights(layers, CAFFE_PREPROCESSING, "t", "").to_vgg()
    config = StyleConfig(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"), tv_weight=1e-2,
                         style_loss="gram")
    objective = Objective.build(config, vgg)
    params = objective.params(vgg)
    content = jnp.asarray(smooth_image(42, 50, 1))
    targets = {"content": content_targets(params, content, objective),
               "style": style_targets(params, jnp.asarray(smooth_image(30, 26, 2)), objective)}
    x = jnp.asarray(smooth_image(42, 50, 3))
    weights = loss_weights(config)
    out = []
    mesh = batch_mesh(None, "blocks")
    for blocking in (blocks.Blocking(12, per_chunk=2), blocks.Blocking(12, per_chunk=2, mesh=mesh)):
        layout = blocking.layout(42, 50, objective.layers)
        padded = blocks.pad_targets(targets, layout)
        fn = jax.jit(jax.value_and_grad(lambda x: blocks.blocked_loss_terms(params, x, padded, weights, objective,
                                                                            layout, blocking)["total"]))
        compiled = fn.lower(x).compile().as_text()
        out.append((fn(x), "all-reduce" in compiled or "reduce-scatter" in compiled))
    (v1, g1), _ = out[0]
    (v2, g2), reduced = out[1]
    assert reduced, "the Gram sums of the two devices' windows were not reduced across them"
    np.testing.assert_allclose(float(v2), float(v1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g2), np.asarray(g1), rtol=1e-4, atol=1e-7)
    print("SHARDED-OK")
""")


@pytest.mark.slow
def test_chunks_split_over_two_devices_give_the_single_device_result():
    proc = run_on_fake_cpu_devices(SHARDED, devices=2)
    assert proc.returncode == 0 and "SHARDED-OK" in proc.stdout, proc.stderr[-3000:]
