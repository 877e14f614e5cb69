"""Moments and the W2 style loss: hand-computed values, float64 NumPy/SciPy references, exact sums
over blocks, blending, gradients by finite differences, float32/bfloat16 accuracy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads

from jaxstyle.objective.statistics import (
    Moments,
    add_sums,
    blend_moments,
    masked_w2_style_loss,
    mean_and_cov,
    moment_sums,
    moments,
    moments_from_sums,
    sqrtm_newton_schulz,
    w2_distance,
    w2_loss_from_sums,
    w2_style_loss,
    w2_target,
)


def _feats(seed, shape=(5, 6, 4), offset=0.0):
    return np.random.default_rng(seed).standard_normal(shape) + offset


def _w2_ref(f, g, eps=1e-4, relative=True):
    """Float64 NumPy/SciPy ``W2^2 / C`` with the module's ridge: f the iterate's, g the style's features."""
    f, g = (np.asarray(x, np.float64).reshape(-1, x.shape[-1]) for x in (f, g))
    c = f.shape[1]
    mu, mus = f.mean(0), g.mean(0)
    cov, covs = np.cov(f.T, bias=True), np.cov(g.T, bias=True)
    ridge = eps * (np.trace(covs) / c if relative else 1.0)
    cov, covs = cov + ridge * np.eye(c), covs + ridge * np.eye(c)
    s = scipy.linalg.sqrtm(covs).real
    root = scipy.linalg.sqrtm(s @ cov @ s).real
    return (np.sum((mu - mus) ** 2) + np.trace(cov + covs - 2 * root)) / c


def _target(g, **kw):
    return w2_target(moments(g), **kw)


def _spd(c, cond, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((c, c)))
    return (q * np.geomspace(1.0, 1.0 / cond, c)) @ q.T


def test_moments_hand_computed():
    feats = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])  # pixels (1, 2) and (3, 4)
    m = moments(feats)
    np.testing.assert_allclose(m.mean, [2.0, 3.0])
    np.testing.assert_allclose(m.second, [[5.0, 7.0], [7.0, 10.0]])
    only_second = moments(feats, jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(only_second.second, [[9.0, 12.0], [12.0, 16.0]], rtol=1e-6)
    s = moment_sums(feats, jnp.array([[1.0, 3.0]]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(s.weight, 4.0)
    np.testing.assert_allclose(s.first, [0 + 3 * 2, 1 + 3 * 3])  # sum w (f - c)
    mean, cov = mean_and_cov(s)
    np.testing.assert_allclose(mean, [2.5, 3.5])  # (1 * (1, 2) + 3 * (3, 4)) / 4
    np.testing.assert_allclose(cov, 0.75 * np.ones((2, 2)), rtol=1e-6)  # weighted variance 3/4 on both


def test_sums_over_blocks_equal_the_whole():
    f = _feats(0, offset=20.0)  # |mean| >> std: the case centring is for
    mask = np.random.default_rng(1).uniform(size=(5, 6))
    centre = np.full(4, 20.0)
    whole = moment_sums(f, mask, centre)
    parts = [moment_sums(f[rows], mask[rows], centre) for rows in (slice(0, 2), slice(2, 3), slice(3, 5))]
    total = add_sums(*parts)
    for a, b in zip(total[:3], whole[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    flat, w = f.reshape(-1, 4), mask.reshape(-1)
    mean_ref = w @ flat / w.sum()
    cov_ref = ((flat - mean_ref) * w[:, None]).T @ (flat - mean_ref) / w.sum()
    mean, cov = mean_and_cov(total)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-6)
    np.testing.assert_allclose(cov, cov_ref, rtol=2e-5, atol=2e-5)
    # The raw form loses the covariance to float32 cancellation (E[ff^T] ~ 400, cov ~ 1); centred keeps it.
    raw = moments_from_sums(total)
    np.testing.assert_allclose(raw.second - np.outer(raw.mean, raw.mean), cov_ref, atol=5e-4)


def test_blending_by_pixel_share_equals_the_pooled_pixels():
    a, b = _feats(2), _feats(3, (3, 4, 4), offset=1.0)
    blended = blend_moments([moments(a), moments(b)], [30, 12])
    pooled = moments(np.concatenate([a.reshape(-1, 4), b.reshape(-1, 4)])[:, None, :])
    np.testing.assert_allclose(blended.mean, pooled.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blended.second, pooled.second, rtol=1e-5, atol=1e-6)
    # Crowson's blend: weights normalised to sum 1, then means and raw moments added.
    half = blend_moments([moments(a), moments(b)], [1.0, 1.0])
    np.testing.assert_allclose(half.second, 0.5 * (moments(a).second + moments(b).second), rtol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        blend_moments([moments(a), moments(b)], [1.0, -1.0])
    with pytest.raises(ValueError, match="expected 2 blend weights"):
        blend_moments([moments(a), moments(b)], [1.0])


def test_newton_schulz_against_scipy():
    a = _spd(6, 1e2, 4)
    with jax.enable_x64(True):
        root = sqrtm_newton_schulz(jnp.asarray(a), 30)
        np.testing.assert_allclose(root, scipy.linalg.sqrtm(a).real, atol=1e-12)
    root32 = sqrtm_newton_schulz(jnp.asarray(a, jnp.float32))
    assert root32.dtype == jnp.float32
    np.testing.assert_allclose(root32, scipy.linalg.sqrtm(a).real, atol=2e-6)
    assert sqrtm_newton_schulz(jnp.asarray(a, jnp.bfloat16)).dtype == jnp.float32  # upcast, never rooted in bf16


@pytest.mark.parametrize("backward", ["lyapunov", "unrolled"])
def test_newton_schulz_gradients(backward):
    a = _spd(5, 30.0, 5)
    g = np.random.default_rng(6).standard_normal((5, 5))
    g = g + g.T  # the output is symmetric: only the symmetric part of a cotangent is seen
    with jax.enable_x64(True):
        def f(x):
            return jnp.sum(jnp.asarray(g) * sqrtm_newton_schulz(0.5 * (x + x.T), 30, backward))

        check_grads(f, (jnp.asarray(a),), order=1, modes=("rev",))
        # The Sylvester solution: Z X + X Z = G for the VJP of the square root.
        z = scipy.linalg.sqrtm(a).real
        x = np.asarray(jax.grad(lambda y: jnp.sum(jnp.asarray(g) * sqrtm_newton_schulz(y, 30, backward)))(a))
        np.testing.assert_allclose(z @ x + x @ z, g, atol=1e-9)


@pytest.mark.parametrize("relative", [True, False])
def test_w2_matches_float64_scipy(relative):
    f, g = _feats(7), _feats(8, (4, 5, 4), offset=0.5)
    ref = _w2_ref(f, g, relative=relative)
    with jax.enable_x64(True):
        got = w2_style_loss(jnp.asarray(f), _target(jnp.asarray(g), relative=relative), iterations=30)
        np.testing.assert_allclose(got, ref, rtol=1e-10)
    got32 = w2_style_loss(jnp.asarray(f, jnp.float32), _target(jnp.asarray(g, jnp.float32), relative=relative))
    np.testing.assert_allclose(got32, ref, rtol=2e-5)


def test_w2_hand_computed_one_channel():
    # C = 1: W2^2 = (mu - mu_s)^2 + (sigma - sigma_s)^2 with the ridge in both variances.
    f = jnp.array([[[0.0], [2.0]]])  # mean 1, var 1
    g = jnp.array([[[3.0], [7.0]]])  # mean 5, var 4
    got = w2_style_loss(f, _target(g, eps=0.0))
    np.testing.assert_allclose(got, 16.0 + 1.0, rtol=1e-6)


@pytest.mark.parametrize("backward", ["trace", "lyapunov", "unrolled"])
def test_w2_gradients_match_finite_differences(backward):
    with jax.enable_x64(True):
        f, g = jnp.asarray(_feats(9, (3, 4, 4))), jnp.asarray(_feats(10, (4, 4, 4), offset=1.0))
        target = _target(g)
        mask = jnp.asarray(np.random.default_rng(11).uniform(size=(3, 4)))
        check_grads(lambda x: w2_style_loss(x, target, iterations=30, backward=backward), (f,), order=1,
                    modes=("rev",))
        check_grads(lambda x: w2_style_loss(x, target, mask, iterations=30, backward=backward), (f,), order=1,
                    modes=("rev",))


def test_w2_of_identical_statistics_is_zero_with_zero_gradient():
    f = jnp.asarray(_feats(12, offset=3.0), jnp.float32)
    target = _target(f)
    loss, grad = jax.value_and_grad(w2_style_loss)(f, target)
    scale = float(jnp.trace(target.cov)) / 4  # mean variance
    assert abs(float(loss)) < 1e-5 * scale
    assert float(jnp.max(jnp.abs(grad))) < 1e-4
    permuted = jnp.asarray(np.random.default_rng(13).permutation(np.asarray(f).reshape(-1, 4)).reshape(f.shape))
    assert abs(float(w2_style_loss(permuted, target))) < 1e-5 * scale


@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_low_precision_features_against_float64(dtype, rtol):
    # Features with |mean| >> std, as after a ReLU. Measured: float32 7e-7, bfloat16 2e-3 (its rounding
    # of the features; the arithmetic stays float32).
    f, g = _feats(14, (6, 6, 8), offset=4.0), _feats(15, (5, 6, 8), offset=4.5)
    ref = _w2_ref(f, g)
    target = _target(jnp.asarray(g, jnp.float32))
    got = w2_style_loss(jnp.asarray(f, dtype), target)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref, rtol=rtol)
    # Arithmetic alone (the same bfloat16-rounded features in float64): float32 accuracy (measured 1e-6).
    rounded = np.asarray(jnp.asarray(f, dtype), np.float64)
    np.testing.assert_allclose(got, _w2_ref(rounded, g), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("backward", ["trace", "lyapunov", "unrolled"])
def test_ill_conditioned_covariances_give_finite_gradients(dtype, backward):
    # Fewer pixels (4) than channels (16): rank-deficient covariance, and a dead channel in the style.
    f = _feats(16, (2, 2, 16), offset=2.0)
    g = _feats(17, (3, 3, 16), offset=2.0)
    g[..., 0] = 0.0
    target = _target(jnp.asarray(g, jnp.float32))
    loss, grad = jax.value_and_grad(w2_style_loss)(jnp.asarray(f, dtype), target, backward=backward)
    assert grad.dtype == dtype
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad, np.float32)))
    np.testing.assert_allclose(loss, _w2_ref(np.asarray(jnp.asarray(f, dtype), np.float64), g), rtol=1e-3)


def test_ill_conditioned_accuracy_of_the_default_iterations():
    """Float32 with the default 16 iterations against float64 SciPy, covariances of condition 1e4
    (32 channels). Measured: 3e-5 (12 iterations, Crowson's: 2e-4; 20: 4e-7)."""
    c = 32
    rng = np.random.default_rng(18)
    covs, cov = _spd(c, 1e4, 19), _spd(c, 1e4, 20)
    mus, mu = rng.standard_normal(c), rng.standard_normal(c)
    target = w2_target(Moments(jnp.asarray(mus, jnp.float32), jnp.asarray(covs + np.outer(mus, mus), jnp.float32)))
    ridge = float(target.ridge)
    covs, x = covs + ridge * np.eye(c), cov + ridge * np.eye(c)
    s = scipy.linalg.sqrtm(covs).real
    ref = (np.sum((mu - mus) ** 2) + np.trace(x + covs - 2 * scipy.linalg.sqrtm(s @ x @ s).real)) / c
    got = jax.jit(w2_distance)(jnp.asarray(mu, jnp.float32), jnp.asarray(cov, jnp.float32), target)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_vmap_equals_a_loop():
    feats = jnp.asarray(_feats(21, (3, 4, 5, 4)), jnp.float32)
    target = _target(jnp.asarray(_feats(22, (4, 4, 4)), jnp.float32))
    batched = jax.vmap(w2_style_loss, in_axes=(0, None))(feats, target)
    np.testing.assert_allclose(batched, [w2_style_loss(x, target) for x in feats], rtol=1e-5)


def test_masked_regions():
    f = jnp.asarray(_feats(23), jnp.float32)
    styles = [jnp.asarray(_feats(24 + i, (4, 4, 4), offset=i), jnp.float32) for i in range(2)]
    targets = jax.tree.map(lambda *x: jnp.stack(x), *[_target(s) for s in styles])
    one = jax.tree.map(lambda x: x[:1], targets)
    np.testing.assert_allclose(masked_w2_style_loss(f, jnp.ones((1, 5, 6)), one), w2_style_loss(f, _target(styles[0])),
                               rtol=1e-5)
    # Hard masks: each region's term is the W2 of its own pixels, weighted by its share.
    top = np.zeros((5, 6), np.float32)
    top[:2] = 1.0
    masks = jnp.asarray(np.stack([top, 1.0 - top]))
    expected = (12 / 30) * _w2_ref(np.asarray(f)[:2], styles[0]) + (18 / 30) * _w2_ref(np.asarray(f)[2:], styles[1])
    np.testing.assert_allclose(masked_w2_style_loss(f, masks, targets), expected, rtol=1e-4)
    # An empty region contributes nothing and keeps the gradient finite.
    empty = jnp.asarray(np.stack([np.ones((5, 6)), np.zeros((5, 6))]), jnp.float32)
    loss, grad = jax.value_and_grad(masked_w2_style_loss)(f, empty, targets)
    np.testing.assert_allclose(loss, w2_style_loss(f, _target(styles[0])), rtol=1e-5)
    assert np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="expected masks"):
        masked_w2_style_loss(f, masks[0], targets)


def test_blocked_loss_and_gradient_equal_the_whole():
    """The W2 loss from block sums, and each block pulling the sums' cotangent back through its own
    moment_sums, give the whole image's value and gradient (what a blocked engine does)."""
    f = jnp.asarray(_feats(26, offset=2.0), jnp.float32)
    target = _target(jnp.asarray(_feats(27, (4, 4, 4), offset=2.5), jnp.float32))
    loss, grad = jax.value_and_grad(w2_style_loss)(f, target)
    rows = (slice(0, 2), slice(2, 5))
    sums = [moment_sums(f[r], None, target.mean) for r in rows]
    blocked, cotangent = jax.value_and_grad(w2_loss_from_sums)(add_sums(*sums), target)
    np.testing.assert_allclose(blocked, loss, rtol=1e-5)
    pieces = []
    for r in rows:
        _, pull = jax.vjp(lambda x: moment_sums(x, None, target.mean), f[r])
        pieces.append(pull(cotangent)[0])
    np.testing.assert_allclose(jnp.concatenate(pieces), grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("style", ["one pixel", "flat colour", "all zero"])
def test_a_style_without_variance_gives_finite_values_and_gradients(style):
    """A style layer of one pixel (a small style image at relu5_1), a flat colour or dead features:
    its covariance is 0, the ridge's floor keeps the square root's gradient finite (it was NaN)."""
    g = {"one pixel": _feats(18, (1, 1, 8), offset=1.0), "flat colour": np.full((4, 4, 8), 3.0, np.float32),
         "all zero": np.zeros((4, 4, 8), np.float32)}[style]
    target = w2_target(moments(jnp.asarray(g)))
    for f in (_feats(19, (5, 6, 8), offset=1.0), np.full((5, 6, 8), 2.0, np.float32)):
        loss, grad = jax.value_and_grad(w2_style_loss)(jnp.asarray(f), target)
        assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
        mean_term = np.mean(np.sum((f.reshape(-1, 8).mean(0) - g.reshape(-1, 8).mean(0)) ** 2)) / 8
        assert float(loss) >= mean_term * (1 - 1e-4)


def test_trace_sqrtm_gradient_is_half_the_inverse_root_in_float64():
    """d tr(A^1/2)/dA = A^-1/2 / 2 (scipy, float64) from the forward iteration's Z; values as the full root's."""
    from jaxstyle.objective.statistics import trace_sqrtm

    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 40))
    a = x @ x.T / 40 + 0.05 * np.eye(12)
    value, grad = jax.value_and_grad(trace_sqrtm)(jnp.asarray(a, jnp.float32))
    root = scipy.linalg.sqrtm(a).real
    np.testing.assert_allclose(float(value), np.trace(root), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), 0.5 * np.linalg.inv(root), rtol=2e-3, atol=2e-4)
    check_grads(lambda m: trace_sqrtm(0.5 * (m + m.T)), (jnp.asarray(a, jnp.float32),), order=1, modes=["rev"],
                atol=1e-2, rtol=1e-2)
