"""Artist controls: style blends, colour preservation, init, normalised gradients, masks, TIFF, plots."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import StyleConfig, stylize
from jaxstyle.engine.batch import stylize_batch
from jaxstyle.io.images import load_image, save_image
from jaxstyle.model.vgg import extract_features
from jaxstyle.objective import color
from jaxstyle.objective.inputs import initial_image
from jaxstyle.objective.losses import (
    gram_matrix,
    masked_gram_matrix,
    masked_style_layer_loss,
    normalized_gradient,
    style_layer_loss,
)
from jaxstyle.objective.masks import layer_masks, region_masks
from jaxstyle.objective.targets import style_targets
from jaxstyle.objective.terms import Objective
from tests.helpers import smooth_image

SMALL = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=6, style_weight=1.0,
             style_loss="gram")


def tinted(h, w, seed, rgb):
    """A smooth texture pulled towards the colour ``rgb``."""
    return np.clip(0.35 * smooth_image(h, w, seed) + 0.65 * np.asarray(rgb, np.float32), 0, 1).astype(np.float32)


def style_grams(vgg, image, layers):
    """{layer: Gram matrix} of one image, the way stylize computes its style targets."""
    objective = Objective.build(StyleConfig(content_layers=layers[:1], style_layers=layers), vgg)
    return style_targets(objective.params(vgg), jnp.asarray(image), objective)


# -- style blend ---------------------------------------------------------------------------------------------


def test_blend_weights_are_normalised_and_counted():
    assert StyleConfig(style_blend=(7, 3)).blend_weights(2) == pytest.approx((0.7, 0.3))
    assert StyleConfig().blend_weights(4) == (0.25,) * 4
    with pytest.raises(ValueError, match="expected 2 style blend weights"):
        StyleConfig(style_blend=(1, 1, 1)).blend_weights(2)
    for bad in ((0, 0), (-1, 2), (float("nan"), 1)):
        with pytest.raises(ValueError, match="style_blend"):
            StyleConfig(style_blend=bad)


def test_blended_style_target_is_the_weighted_gram(random_vgg):
    content = smooth_image(32, 32, 1)
    a, b = smooth_image(40, 40, 2), smooth_image(24, 36, 3)
    layers = ("relu1_1", "relu2_1")
    config = StyleConfig(content_layers=("relu2_1",), style_layers=layers, iterations=0, style_weight=1.0,
                         style_blend=(0.7, 0.3), style_loss="gram")  # W2 blends: test_style_loss_wiring.py
    result = stylize(content, [a, b], config=config, vgg=random_vgg)
    ga, gb = style_grams(random_vgg, a, layers), style_grams(random_vgg, b, layers)
    mine = style_grams(random_vgg, content, layers)
    expected = sum(0.5 * 0.25 * float(np.mean((np.asarray(mine[n]) - 0.7 * np.asarray(ga[n])
                                                - 0.3 * np.asarray(gb[n])) ** 2)) for n in layers)
    assert result.losses["style"] == pytest.approx(expected, rel=1e-4)
    only_a = stylize(content, [a, b], config=StyleConfig(**{**config.__dict__, "style_blend": (1, 0)}),
                     vgg=random_vgg)
    single = stylize(content, a, config=StyleConfig(**{**config.__dict__, "style_blend": None}), vgg=random_vgg)
    assert only_a.losses["style"] == pytest.approx(single.losses["style"], rel=1e-5)
    assert only_a.losses["style"] != pytest.approx(result.losses["style"], rel=1e-2)


# -- colour preservation -------------------------------------------------------------------------------------


def test_histogram_matching_matches_mean_and_covariance():
    content = tinted(30, 40, 1, (0.5, 0.45, 0.4))
    style = smooth_image(50, 20, 2)
    matched = color.match_color_statistics(style, content)
    c, m = content.reshape(-1, 3).astype(np.float64), matched.reshape(-1, 3)
    np.testing.assert_allclose(m.mean(0), c.mean(0), atol=1e-9)
    np.testing.assert_allclose(np.cov(m, rowvar=False), np.cov(c, rowvar=False), atol=1e-5)
    # The matrix square roots are symmetric: the map is the symmetric (no rotation) solution.
    assert np.abs(np.cov(m, rowvar=False) - np.cov(style.reshape(-1, 3), rowvar=False)).max() > 1e-3


def test_yiq_round_trip_and_luminance_matching():
    image = smooth_image(10, 12, 3)
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(image)), image, atol=1e-6)
    content, style = smooth_image(20, 20, 4), smooth_image(30, 10, 5) * 0.3
    y = color.match_luminance(style, content)
    assert y.mean() == pytest.approx(color.luminance(content).mean())
    assert y.std() == pytest.approx(color.luminance(content).std())


def test_luminance_mode_keeps_the_contents_chroma(random_vgg):
    content = tinted(32, 32, 6, (0.6, 0.4, 0.3))
    stripes = (np.arange(32) // 2 % 2).astype(np.float32)[None, :, None] * np.ones((32, 1, 1), np.float32)
    style = np.clip(0.2 + 0.6 * stripes * np.array([0.2, 0.5, 1.0], np.float32), 0, 1)  # blue stripes
    config = StyleConfig(**{**SMALL, "style_weight": 100.0})
    kept = stylize(content, style, config=StyleConfig(**{**config.__dict__, "preserve_colors": "luminance"}),
                   vgg=random_vgg)
    free = stylize(content, style, config=config, vgg=random_vgg)
    chroma = lambda img: color.rgb_to_yiq(img)[..., 1:]  # noqa: E731
    assert np.abs(chroma(kept.image) - chroma(content)).max() < 2e-3
    assert np.abs(chroma(free.image) - chroma(content)).max() > 1e-2  # the style's colours came in
    assert np.abs(color.luminance(kept.image) - color.luminance(content)).max() > 1e-2  # but it did change


def test_histogram_mode_and_batch_agree_with_stylize(random_vgg):
    contents = np.stack([tinted(32, 32, 8, (0.6, 0.4, 0.3)), tinted(32, 32, 9, (0.3, 0.6, 0.4))])
    styles = [tinted(36, 36, 10, (0.1, 0.3, 0.8)), tinted(30, 40, 11, (0.8, 0.8, 0.1))]
    for mode in ("histogram", "luminance"):
        config = StyleConfig(**SMALL, preserve_colors=mode, init="style", init_noise_blend=0.2)
        batch = stylize_batch(contents, styles, config=config, vgg=random_vgg)
        for i in range(2):
            single = stylize(contents[i], styles[i], config=config, vgg=random_vgg)
            np.testing.assert_allclose(batch[i].image, single.image, atol=2e-3)


# -- initialisation ------------------------------------------------------------------------------------------


def test_init_style_and_noise_blend():
    content, style = jnp.asarray(smooth_image(16, 20, 1)), jnp.asarray(smooth_image(30, 30, 2))
    start = initial_image(content, StyleConfig(init="style"), style=style)
    assert start.shape == content.shape and float(jnp.abs(start - content).max()) > 0.05
    noise = initial_image(content, StyleConfig(init="noise", seed=3))
    mixed = initial_image(content, StyleConfig(init_noise_blend=0.25, seed=3))
    np.testing.assert_allclose(mixed, 0.75 * content + 0.25 * noise, atol=1e-6)
    np.testing.assert_array_equal(initial_image(content, StyleConfig(init_noise_blend=0.0)), content)
    with pytest.raises(ValueError, match="init_noise_blend"):
        StyleConfig(init_noise_blend=1.5)


# -- normalised gradients ------------------------------------------------------------------------------------


def test_normalized_gradient_scales_the_incoming_gradient_to_its_weight():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32)
    loss = lambda x: 3.0 * jnp.sum(normalized_gradient(x, jnp.float32(3.0)) ** 3)  # noqa: E731
    g = jax.grad(loss)(x)
    raw = 9.0 * x ** 2
    np.testing.assert_allclose(g, 3.0 * raw / jnp.sum(jnp.abs(raw)), rtol=1e-5)
    assert float(jnp.sum(jnp.abs(g))) == pytest.approx(3.0, rel=1e-5)
    assert float(loss(x)) == pytest.approx(float(3.0 * jnp.sum(x ** 3)), rel=1e-6)  # forward unchanged


def test_normalize_gradients_run_descends(random_vgg):
    content, style = smooth_image(32, 32, 12), smooth_image(32, 32, 13)
    config = StyleConfig(**{**SMALL, "iterations": 10}, normalize_gradients=True, optimizer="adam",
                         learning_rate=0.01, init="noise")
    result = stylize(content, style, config=config, vgg=random_vgg)
    assert result.status == "done" and result.loss_history[-1] < result.loss_history[0]
    plain = stylize(content, style, config=StyleConfig(**{**config.__dict__, "normalize_gradients": False}),
                    vgg=random_vgg)
    assert np.abs(result.image - plain.image).max() > 1e-3


# -- masks ---------------------------------------------------------------------------------------------------


def test_region_masks_split_grey_levels():
    grey = np.array([[1.0, 0.0, 0.5, 0.75]])
    two = region_masks(grey, 2)
    np.testing.assert_allclose(two[0], [[1, 0, 0.5, 0.75]])
    three = region_masks(grey, 3)
    np.testing.assert_allclose(three.sum(0), 1.0)
    np.testing.assert_allclose(three[:, 0, 2], [0, 1, 0])  # mid grey is the middle style
    np.testing.assert_allclose(three[:, 0, 3], [0.5, 0.5, 0])
    with pytest.raises(ValueError, match="at least 2 styles"):
        region_masks(grey, 1)


def test_layer_masks_follow_the_feature_shapes(random_vgg):
    image = smooth_image(37, 50, 1)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    feats = extract_features(random_vgg.params, jnp.asarray(image)[None], layers=layers, pooling="max",
                             prep=random_vgg.preprocessing)
    masks = layer_masks(jnp.ones((2, 37, 50)) * 0.5, layers)
    for n in layers:
        assert masks[n].shape == (2, *feats[n].shape[1:3])
        np.testing.assert_allclose(masks[n], 0.5)


def test_masked_gram_equals_the_gram_of_the_region():
    f = jnp.asarray(np.random.default_rng(1).standard_normal((6, 8, 5)), jnp.float32)
    left = jnp.zeros((6, 8)).at[:, :3].set(1.0)
    np.testing.assert_allclose(masked_gram_matrix(f, left), gram_matrix(f[:, :3]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked_gram_matrix(f, jnp.ones((6, 8))), gram_matrix(f), rtol=1e-5, atol=1e-6)
    target = gram_matrix(f) * 0.5
    one_region = masked_style_layer_loss(f, jnp.ones((1, 6, 8)), target[None])
    assert float(one_region) == pytest.approx(float(style_layer_loss(f, target)), rel=1e-5)


def test_masks_give_each_region_its_own_style(random_vgg):
    h, w = 32, 48
    content = np.full((h, w, 3), 0.5, np.float32)
    red, blue = tinted(32, 32, 14, (0.9, 0.15, 0.1)), tinted(32, 32, 15, (0.1, 0.15, 0.9))
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0  # white (left) takes the first style
    config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=40,
                         style_weight=10.0, content_weight=0.0, init="noise")
    # The objective: red left and blue right scores far better than the swap.
    score = lambda image: stylize(image, [red, blue], config=StyleConfig(  # noqa: E731
        **{**config.__dict__, "iterations": 0, "init": "content"}), vgg=random_vgg, content_mask=mask).losses["style"]
    right_way = np.concatenate([red[:, :24], blue[:, :24]], axis=1)
    swapped = np.concatenate([blue[:, :24], red[:, :24]], axis=1)
    assert score(right_way) < 0.05 * score(swapped)
    # And optimising from noise moves each half towards its own style's colour.
    result = stylize(content, [red, blue], config=config, vgg=random_vgg, content_mask=mask)
    redness = result.image[..., 0] - result.image[..., 2]
    left, right = redness[:, 2: w // 2 - 2].mean(), redness[:, w // 2 + 2: -2].mean()
    assert left > 0.05 and right < -0.05, (left, right)
    # A style mask that keeps only part of a style image changes that style's target.
    half = np.zeros((32, 32), np.float32)
    half[:, :16] = 1.0
    masked = stylize(right_way, [red, blue], config=StyleConfig(**{**config.__dict__, "iterations": 0}),
                     vgg=random_vgg, content_mask=mask, style_masks=[half, None])
    full = stylize(right_way, [red, blue], config=StyleConfig(**{**config.__dict__, "iterations": 0}),
                   vgg=random_vgg, content_mask=mask)
    assert masked.losses["style"] != pytest.approx(full.losses["style"], rel=1e-3)


def test_mask_and_blend_are_exclusive(random_vgg):
    content = smooth_image(32, 32, 1)
    with pytest.raises(ValueError, match="not both"):
        stylize(content, [content, content], config=StyleConfig(**SMALL, style_blend=(1, 1)), vgg=random_vgg,
                content_mask=np.ones((32, 32)))


# -- output formats and plots --------------------------------------------------------------------------------


def test_16_bit_tiff_keeps_precision(tmp_path):
    image = smooth_image(20, 30, 2)
    save_image(tmp_path / "out.tif", image)
    with Image.open(tmp_path / "out.tif") as _:
        pass  # a TIFF Pillow recognises
    back = load_image(tmp_path / "out.tif")
    assert back.shape == image.shape
    assert np.abs(back - image).max() <= 0.5 / 65535 + 1e-7
    save_image(tmp_path / "out.png", image)
    assert np.abs(load_image(tmp_path / "out.png") - image).max() > 1e-3  # 8-bit loses what TIFF keeps


def test_batch_blends_like_stylize(random_vgg):
    contents = np.stack([smooth_image(32, 32, 20), smooth_image(32, 32, 21)])
    a, b = smooth_image(36, 36, 22), smooth_image(30, 40, 23)
    config = StyleConfig(**SMALL)
    batch = stylize_batch(contents, [[a, b], a], config=config, vgg=random_vgg, style_blends=[(0.8, 0.2), None])
    blended = stylize(contents[0], [a, b], config=StyleConfig(**SMALL, style_blend=(0.8, 0.2)), vgg=random_vgg)
    single = stylize(contents[1], a, config=config, vgg=random_vgg)
    np.testing.assert_allclose(batch[0].image, blended.image, atol=2e-3)
    np.testing.assert_allclose(batch[1].image, single.image, atol=2e-3)


def test_batch_masks_like_stylize(random_vgg):
    contents = np.stack([smooth_image(32, 32, 24), smooth_image(32, 32, 25)])
    red, blue = tinted(32, 32, 14, (0.9, 0.15, 0.1)), tinted(32, 32, 15, (0.1, 0.15, 0.9))
    left = np.zeros((32, 32), np.float32)
    left[:, :16] = 1.0
    half = np.zeros((32, 32), np.float32)
    half[:16] = 1.0
    config = StyleConfig(**SMALL)
    batch = stylize_batch(contents, [[red, blue], [blue, red]], config=config, vgg=random_vgg,
                          content_masks=[left, left.T], style_masks=[[half, None], None], track_terms=True)
    for i, (styles, mask, smasks) in enumerate((([red, blue], left, [half, None]), ([blue, red], left.T, None))):
        single = stylize(contents[i], styles, config=config, vgg=random_vgg, content_mask=mask, style_masks=smasks)
        np.testing.assert_allclose(batch[i].image, single.image, atol=2e-3)
        assert batch[i].losses["style"] == pytest.approx(single.losses["style"], rel=1e-3)
    assert [t["step"] for t in batch[0].term_history] == [6]
    with pytest.raises(ValueError, match="same number"):
        stylize_batch(contents, [[red, blue], red], config=config, vgg=random_vgg, content_masks=[left, left])
