"""Sliced Wasserstein style loss: float64 NumPy references, permutation invariance, quantile
resampling, masks (content regions and style masks), gradients by finite differences, vmap,
low precision, and why blocks cannot simply add up."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxstyle.objective.sliced import (
    masked_sliced_style_loss,
    project,
    random_projections,
    require_whole_image,
    resample_sorted,
    sliced_loss_from_projections,
    sliced_style_loss,
    sliced_target,
)


def _feats(seed, shape=(5, 6, 4), offset=0.0):
    return np.random.default_rng(seed).standard_normal(shape) + offset


def _np_quantiles(sorted_values, size):
    """Quantiles at (i + 1/2) / size of values sorted at (j + 1/2) / N, linear, constant beyond."""
    n = sorted_values.shape[0]
    grid, u = (np.arange(n) + 0.5) / n, (np.arange(size) + 0.5) / size
    return np.stack([np.interp(u, grid, col) for col in sorted_values.T], axis=1)


def _np_loss(f, g, p):
    """Float64 NumPy sliced loss: sort the projections, read the style's at the output's quantiles."""
    y = np.sort(np.asarray(f, np.float64).reshape(-1, p.shape[0]) @ p, axis=0)
    t = np.sort(np.asarray(g, np.float64).reshape(-1, p.shape[0]) @ p, axis=0)
    return np.mean((y - _np_quantiles(t, y.shape[0])) ** 2)


def test_projections_are_unit_and_deterministic():
    p = random_projections(0, 4, 6)
    assert p.shape == (4, 6) and p.dtype == jnp.float32
    np.testing.assert_allclose(jnp.linalg.norm(p, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p, random_projections(jax.random.key(0), 4, 6))
    assert not np.allclose(p, random_projections(1, 4, 6))
    assert random_projections(0, 8).shape == (8, 8)  # K = C by default, as Heitz et al.
    with pytest.raises(ValueError, match="at least 1"):
        random_projections(0, 4, 0)


def test_hand_computed_one_direction():
    # One channel, direction 1: sorted (0, 1, 3) against sorted (1, 2, 2) -> (1 + 1 + 1) / 3.
    f = jnp.array([[[3.0], [0.0], [1.0]]])
    g = jnp.array([[[2.0], [1.0], [2.0]]])
    p = jnp.ones((1, 1))
    np.testing.assert_allclose(sliced_style_loss(f, sliced_target(g, p), p), 1.0, rtol=1e-6)


@pytest.mark.parametrize("style_shape", [(5, 6, 4), (4, 5, 4), (7, 6, 4)])
def test_value_against_float64_numpy(style_shape):
    f, g = _feats(0), _feats(1, style_shape, offset=0.5)
    p = random_projections(2, 4, 6)
    ref = _np_loss(f, g, np.asarray(p, np.float64))
    got = sliced_style_loss(jnp.asarray(f, jnp.float32), sliced_target(jnp.asarray(g, jnp.float32), p), p)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_resample_sorted():
    t = jnp.asarray(np.sort(_feats(3, (5, 2)), axis=0), jnp.float32)
    np.testing.assert_array_equal(resample_sorted(t, 5), t)
    for size in (3, 8, 1):
        np.testing.assert_allclose(resample_sorted(t, size), _np_quantiles(np.asarray(t, np.float64), size), rtol=1e-6)


def test_permutation_of_the_target_pixels_gives_zero():
    f = jnp.asarray(_feats(4), jnp.float32)
    p = random_projections(5, 4, 8)
    perm = np.random.default_rng(6).permutation(30)
    shuffled = jnp.asarray(np.asarray(f).reshape(30, 4)[perm].reshape(5, 6, 4))
    loss, grad = jax.value_and_grad(sliced_style_loss)(f, sliced_target(shuffled, p), p)
    assert float(loss) < 1e-12
    assert float(jnp.max(jnp.abs(grad))) < 1e-6


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        f, g = jnp.asarray(_feats(7, (3, 4, 3))), jnp.asarray(_feats(8, (4, 4, 3), offset=0.3))
        p = random_projections(9, 3, 4).astype(jnp.float64)
        target = sliced_target(g, p)
        mask = jnp.asarray(np.random.default_rng(10).uniform(size=(3, 4)))
        check_grads(lambda x: sliced_style_loss(x, target, p), (f,), order=1, modes=("rev",))
        check_grads(lambda x: sliced_style_loss(x, target, p, mask), (f,), order=1, modes=("rev",))


def test_all_ones_mask_equals_unmasked():
    f, g = jnp.asarray(_feats(11), jnp.float32), jnp.asarray(_feats(12, (4, 5, 4)), jnp.float32)
    p = random_projections(13, 4, 5)
    target = sliced_target(g, p)
    whole = sliced_style_loss(f, target, p)
    np.testing.assert_allclose(sliced_style_loss(f, target, p, jnp.ones((5, 6))), whole, rtol=1e-5)
    np.testing.assert_allclose(masked_sliced_style_loss(f, jnp.ones((1, 5, 6)), target[None], p), whole, rtol=1e-5)
    np.testing.assert_allclose(sliced_target(g, p, jnp.ones((4, 5))), target, rtol=1e-6, atol=1e-6)


def test_hard_mask_is_the_loss_of_the_region_alone():
    f, g = _feats(14), _feats(15, (4, 4, 4), offset=1.0)
    p = random_projections(16, 4, 6)
    pn = np.asarray(p, np.float64)
    mask = np.zeros((5, 6), np.float32)
    mask[1:4, 2:5] = 1.0  # 9 pixels
    region = f[mask > 0][:, None, :]
    target = sliced_target(jnp.asarray(g, jnp.float32), p)
    got = sliced_style_loss(jnp.asarray(f, jnp.float32), target, p, jnp.asarray(mask))
    np.testing.assert_allclose(got, _np_loss(region, g, pn), rtol=1e-5)
    # Two regions with their own styles, each weighted by its share of the image.
    g2 = _feats(17, (4, 4, 4))
    targets = jnp.stack([target, sliced_target(jnp.asarray(g2, jnp.float32), p)])
    masks = jnp.asarray(np.stack([mask, 1.0 - mask]))
    expected = 9 / 30 * _np_loss(region, g, pn) + 21 / 30 * _np_loss(f[mask == 0][:, None, :], g2, pn)
    np.testing.assert_allclose(masked_sliced_style_loss(jnp.asarray(f, jnp.float32), masks, targets, p), expected,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="expected masks"):
        masked_sliced_style_loss(jnp.asarray(f, jnp.float32), masks[0], targets, p)


def test_style_mask_target():
    g = _feats(18, (4, 5, 3))
    p = random_projections(19, 3, 4)
    mask = np.zeros((4, 5), np.float32)
    mask[:, :2] = 1.0  # 8 pixels
    got = sliced_target(jnp.asarray(g, jnp.float32), p, jnp.asarray(mask), size=8)
    expected = np.sort(g[mask > 0] @ np.asarray(p, np.float64), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # At another size: the region's quantiles, as for an unmasked target of its pixels.
    got5 = sliced_target(jnp.asarray(g, jnp.float32), p, jnp.asarray(mask), size=5)
    np.testing.assert_allclose(got5, _np_quantiles(expected, 5), rtol=1e-5, atol=1e-6)
    # Soft weights: each pixel sits at the midpoint of its share of the cumulative weight (linear
    # between, constant beyond); zero weights are left out; a common factor changes nothing.
    weights = np.random.default_rng(20).uniform(size=(4, 5)).astype(np.float32)
    weights[0] = 0.0
    y, w = g.reshape(-1, 3) @ np.asarray(p, np.float64), weights.reshape(-1)
    expected = []
    for col in y.T:
        order = np.argsort(col[w > 0])
        ws = w[w > 0][order]
        expected.append(np.interp((np.arange(7) + 0.5) / 7, (np.cumsum(ws) - ws / 2) / ws.sum(), col[w > 0][order]))
    got = sliced_target(jnp.asarray(g, jnp.float32), p, jnp.asarray(weights), size=7)
    np.testing.assert_allclose(got, np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sliced_target(jnp.asarray(g, jnp.float32), p, jnp.asarray(3 * weights), size=7), got,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mask of the features' shape"):
        sliced_target(jnp.asarray(g, jnp.float32), p, jnp.ones((3, 5)))


def test_vmap_equals_a_loop():
    feats = jnp.asarray(_feats(20, (3, 4, 5, 4)), jnp.float32)
    p = random_projections(21, 4, 4)
    target = sliced_target(jnp.asarray(_feats(22, (4, 4, 4)), jnp.float32), p)
    mask = jnp.asarray(np.random.default_rng(23).uniform(size=(4, 5)), jnp.float32)
    batched = jax.vmap(sliced_style_loss, in_axes=(0, None, None, None))(feats, target, p, mask)
    np.testing.assert_allclose(batched, [sliced_style_loss(x, target, p, mask) for x in feats], rtol=1e-6)


@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-3)])
def test_low_precision_features_against_float64(dtype, rtol):
    f, g = _feats(24, (6, 6, 8), offset=4.0), _feats(25, (5, 6, 8), offset=4.5)
    p = random_projections(26, 8, 8)
    target = sliced_target(jnp.asarray(g, jnp.float32), p)
    loss, grad = jax.value_and_grad(sliced_style_loss)(jnp.asarray(f, dtype), target, p)
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))
    np.testing.assert_allclose(loss, _np_loss(f, g, np.asarray(p, np.float64)), rtol=rtol)


def test_not_a_sum_over_blocks_but_exact_from_all_projections():
    f, g = jnp.asarray(_feats(27), jnp.float32), jnp.asarray(_feats(28, (4, 4, 4), offset=1.0), jnp.float32)
    p = random_projections(29, 4, 4)
    target = sliced_target(g, p)
    whole = sliced_style_loss(f, target, p)
    blocks = (f[:2], f[2:])
    per_block = sum(b.shape[0] / 5 * sliced_style_loss(b, target, p) for b in blocks)
    assert abs(float(per_block - whole)) > 1e-3 * float(whole)
    collected = jnp.concatenate([project(b, p) for b in blocks])
    np.testing.assert_allclose(sliced_loss_from_projections(collected, target), whole, rtol=1e-6)
    require_whole_image(1)
    with pytest.raises(ValueError, match="global"):
        require_whole_image(4)
