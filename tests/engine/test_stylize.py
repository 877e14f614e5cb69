"""stylize() end to end on tiny images with random VGG-19 weights."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle import StyleConfig, stylize
from jaxstyle.engine.run import run_chunk
from tests.helpers import smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=6,
             style_weight=1.0, style_loss="gram")


@pytest.fixture(scope="module")
def pair():
    return smooth_image(32, 40, seed=10), smooth_image(36, 36, seed=11)


@pytest.mark.parametrize("optimizer", ["lbfgs", "jaxopt-lbfgs", "adam"])
def test_loss_decreases_and_image_stays_valid(random_vgg, pair, optimizer):
    content, style = pair
    progress = []
    lr = 0.002 if optimizer == "adam" else None  # Adam's fixed-size first steps overshoot here
    config = StyleConfig(**SMALL, optimizer=optimizer, learning_rate=lr)
    result = stylize(content, style, config=config, vgg=random_vgg,
                     callback=lambda p: progress.append((p.step, p.loss, p.image().shape)),
                     callback_every=4)
    assert result.status == "done" and result.steps == 6
    assert result.image.shape == content.shape and result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert result.loss_history.shape == (6,)
    assert result.loss_history[-1] < result.loss_history[0]
    assert result.losses["total"] < result.loss_history[0]
    assert [p[0] for p in progress] == [4, 6] and progress[0][2] == content.shape


def test_second_call_does_not_recompile(random_vgg, pair):
    content, style = pair
    config = StyleConfig(**SMALL)
    stylize(content, style, config=config, vgg=random_vgg, callback_every=4)  # two chunks: 4 + 2
    compiled = run_chunk._cache_size()
    # Same shapes, other loss weights and seed: weights are traced, nothing recompiles.
    other = StyleConfig(**{**SMALL, "style_weight": 5.0}, content_weight=0.5, seed=3)
    stylize(content, style, config=other, vgg=random_vgg, callback_every=4)
    assert run_chunk._cache_size() == compiled


def test_same_seed_same_image_noise_init(random_vgg, pair):
    content, style = pair
    config = StyleConfig(**SMALL, init="noise", seed=7)
    a = stylize(content, style, config=config, vgg=random_vgg).image
    b = stylize(content, style, config=config, vgg=random_vgg).image
    c = stylize(content, style, config=StyleConfig(**SMALL, init="noise", seed=8), vgg=random_vgg).image
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_zero_iterations_returns_the_init(random_vgg, pair):
    content, style = pair
    result = stylize(content, style, config=StyleConfig(**{**SMALL, "iterations": 0}), vgg=random_vgg)
    np.testing.assert_allclose(result.image, content, atol=1e-6)
    assert result.steps == 0 and result.loss_history.shape == (0,)


def test_init_image(random_vgg, pair):
    content, style = pair
    init = np.full_like(content, 0.5)
    result = stylize(content, style, config=StyleConfig(**{**SMALL, "iterations": 0}), vgg=random_vgg,
                     init_image=init)
    np.testing.assert_allclose(result.image, init)
    with pytest.raises(ValueError, match="expected init image of shape"):
        stylize(content, style, config=StyleConfig(**SMALL), vgg=random_vgg, init_image=init[:-1])


@pytest.mark.parametrize("content,message", [
    (np.zeros((1, 40, 3), np.float32), "content image is 40x1 px: expected at least 2x2 px"),
    (np.zeros((32, 32, 5), np.float32), r"expected the content image as \[H, W\], \[H, W, 1\]"),
    (np.full((32, 32, 3), 2.0, np.float32), r"expected content image values in \[0, 1\]"),
])
def test_bad_inputs(random_vgg, pair, content, message):
    with pytest.raises(ValueError, match=message):
        stylize(content, pair[1], config=StyleConfig(**SMALL), vgg=random_vgg)


@pytest.mark.parametrize("kwargs,message", [
    ({"optimizer": "sgd"}, "expected optimizer in"),
    ({"style_layers": ("relu1_1", "nope")}, "unknown layer 'nope'"),
    ({"style_layer_weights": (1.0,)}, "expected 5 style layer weights"),
    ({"content_weight": -1.0}, "expected content_weight to be a finite number >= 0"),
    ({"iterations": -3}, "expected iterations to be an integer >= 0"),
    ({"init": "picture"}, "expected init in"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StyleConfig(**kwargs)


def test_config_accepts_aliases_and_strings():
    config = StyleConfig(content_layers="block4_conv2", style_layers=("block1_relu1", "pool2"))
    assert config.content_layers == ("conv4_2",)
    assert config.style_layers == ("relu1_1", "pool2")
    assert config.style_layer_weights == (0.5, 0.5)


def test_stage_shapes_keep_the_aspect():
    from jaxstyle.objective.inputs import stage_shapes

    assert stage_shapes(384, 512, (128, 256)) == [(96, 128), (192, 256), (384, 512)]
    assert stage_shapes(512, 300, ()) == [(512, 300)]
    with pytest.raises(ValueError, match="smaller than the output's longest side 512"):
        stage_shapes(384, 512, (256, 512))


def test_coarse_to_fine_runs_each_stage_and_starts_from_the_previous(random_vgg):
    content, style = smooth_image(48, 64, seed=1), smooth_image(40, 40, seed=2)
    config = StyleConfig(**{**SMALL, "iterations": 3}, scales=(32,), scale_iterations=4)
    seen = []
    result = stylize(content, style, config=config, vgg=random_vgg,
                     callback=lambda p: seen.append((p.step, p.total, p.image().shape)), callback_every=2)
    assert result.image.shape == content.shape and result.status == "done"
    assert result.steps == 7 and result.loss_history.shape == (7,)
    assert seen == [(2, 7, (24, 32, 3)), (4, 7, (24, 32, 3)), (6, 7, (48, 64, 3)), (7, 7, (48, 64, 3))]
    # the full-size stage starts from the coarse result, not from the content
    coarse_only = stylize(content, style, config=StyleConfig(**{**SMALL, "iterations": 0}, scales=(32,),
                                                             scale_iterations=4), vgg=random_vgg)
    single = stylize(content, style, config=StyleConfig(**{**SMALL, "iterations": 0}), vgg=random_vgg)
    np.testing.assert_allclose(single.image, content, atol=1e-6)
    assert np.abs(coarse_only.image - content).max() > 1e-2
    assert result.losses["total"] < result.loss_history[4]  # the full-size stage improved its start


def test_bfloat16_precision_tracks_float32(random_vgg, pair):
    content, style = pair
    f32 = stylize(content, style, config=StyleConfig(**SMALL), vgg=random_vgg)
    bf16 = stylize(content, style, config=StyleConfig(**SMALL, precision="bfloat16"), vgg=random_vgg)
    assert bf16.status == "done" and bf16.image.dtype == np.float32
    # bfloat16 has 8 mantissa bits: the objective agrees to about 1%, the images to a few levels
    np.testing.assert_allclose(bf16.loss_history[0], f32.loss_history[0], rtol=0.03)
    assert np.abs(bf16.image - f32.image).mean() < 0.02
    with pytest.raises(ValueError, match="precision"):
        StyleConfig(precision="float16")


def test_nan_injected_mid_run_stops_with_the_last_finite_image(random_vgg, pair):
    content, style = pair
    # the content term is 0 at the start (x = content) and overflows to inf once x moves; Adam has
    # no line search to back away from it (L-BFGS's backtracking refuses non-finite trial points)
    config = StyleConfig(**{**SMALL, "iterations": 20}, content_weight=3e38, content_layer_weights=(3e38,),
                         optimizer="adam")
    result = stylize(content, style, config=config, vgg=random_vgg, callback_every=5)
    assert result.status == "nonfinite"
    assert 1 <= result.steps < 20 and np.isfinite(result.loss_history).all()
    assert np.isfinite(result.image).all() and result.image.min() >= 0 and result.image.max() <= 1
