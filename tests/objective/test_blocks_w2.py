"""W2 block by block: the moment sums add over the blocks' inner regions, so the value and the
gradient equal the whole image's (one region or several under a content mask, normalised
gradients, chunks), a style image's moments by blocks equal its whole moments, and stylize with
blocks gives the whole image's picture."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import StyleConfig, stylize
from jaxstyle.engine.evaluation import BlockByBlock
from jaxstyle.objective import blocks
from jaxstyle.objective.masks import layer_masks
from jaxstyle.objective.statistics import moments
from jaxstyle.objective.terms import Objective, features
from tests.helpers import smooth_image
from tests.objective.test_blocks import both, relative

SHALLOW = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"), style_loss="w2")
VALUE_TOLERANCE = 5e-5  # W2's value is a difference of traces: float32 sums in another order cancel a little more


@pytest.mark.parametrize("shape,block", [((44, 52), 12), ((41, 37), 10)])
def test_value_and_gradient_equal_the_whole_image(random_vgg, shape, block):
    value, grad, blocked_value, blocked_grad, _ = both(random_vgg, StyleConfig(**SHALLOW, style_weight=1.0),
                                                       shape, block)
    assert float(value) > 0 and float(jnp.abs(grad).max()) > 0
    assert relative(blocked_value, value) <= VALUE_TOLERANCE
    assert relative(blocked_grad, grad) <= 1e-4


@pytest.mark.parametrize("option", ["content mask", "normalize gradients", "chunks"])
def test_options_equal_the_whole_image(random_vgg, option):
    config = StyleConfig(**SHALLOW, style_weight=1.0, tv_weight=1e-2,
                         normalize_gradients=option == "normalize gradients")
    value, grad, blocked_value, blocked_grad, _ = both(random_vgg, config, (42, 50), 12,
                                                       content_mask=option == "content mask",
                                                       per_chunk=3 if option == "chunks" else 1)
    assert relative(blocked_value, value) <= VALUE_TOLERANCE
    assert relative(blocked_grad, grad) <= 1e-4


def test_default_layers_equal_the_whole_image(random_vgg):
    """relu5_1 and relu4_2 (halo 80 px), an image off the pooling grid, several blocks."""
    value, grad, blocked_value, blocked_grad, layout = both(
        random_vgg, StyleConfig(conv="direct", style_weight=1.0, style_loss="w2"), (100, 90), 32)
    assert layout.reaches_past_image and layout.count > 1
    assert relative(blocked_value, value) <= VALUE_TOLERANCE
    assert relative(blocked_grad, grad) <= 1e-4


def test_style_image_moments_by_blocks_equal_the_whole_images(random_vgg):
    objective = Objective.build(StyleConfig(**SHALLOW), random_vgg)
    params = objective.params(random_vgg)
    image = jnp.asarray(smooth_image(43, 38, 5))
    mask = jnp.asarray(smooth_image(43, 38, 6)[..., 0])
    blocking = blocks.Blocking(10, per_chunk=2)
    layout = blocking.layout(43, 38, objective.style_layers)
    assert layout is not None and layout.count > 1
    feats = features(params, image, objective, objective.style_layers)
    for given in (None, mask):
        got = blocks.blocked_style_moments(params, image, given, objective=objective, layout=layout,
                                           blocking=blocking)
        masks = None if given is None else layer_masks(given[None], objective.style_layers)
        for name, f in feats.items():
            whole = moments(f, None if masks is None else masks[name][0])
            assert relative(got[name].mean, whole.mean) <= 1e-5
            assert relative(got[name].second, whole.second) <= 1e-5


def test_stylize_by_blocks_equals_the_whole_image(random_vgg):
    config = StyleConfig(**SHALLOW, style_weight=1.0, iterations=2, optimizer="adam")
    content, style = smooth_image(40, 44, 1), smooth_image(48, 40, 2)
    whole = stylize(content, style, config=config, vgg=random_vgg, block_size=None)
    blocked = stylize(content, style, config=config, vgg=random_vgg,
                      evaluation=BlockByBlock(blocks.Blocking(12)))
    # the style image (48x40) is evaluated by blocks too: its moments by blocks feed the targets
    np.testing.assert_allclose(blocked.image, whole.image, atol=1e-4)
    assert dataclasses.replace(config, style_loss="w2") == config
