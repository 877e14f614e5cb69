"""Losses: hand-computed values, the paper's normalisation, gradients by finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from jaxstyle.objective.losses import content_loss, gram_matrix, style_layer_loss, total_variation, weighted_style_loss


def test_gram_hand_computed():
    # F rows are pixels: (1, 2), (3, 4) -> F^T F = [[10, 14], [14, 20]], / M=2
    feats = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])  # [h=1, w=2, C=2]
    np.testing.assert_allclose(gram_matrix(feats), [[5.0, 7.0], [7.0, 10.0]])


def test_style_loss_is_gatys_normalisation():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((5, 7, 4))
    a_feats = rng.standard_normal((6, 3, 4))
    target = np.asarray(gram_matrix(a_feats), np.float64)
    # Gatys et al. 2016 eq. 4 with unnormalised Grams G' = F^T F, A' = M * target.
    m, n = 5 * 7, 4
    flat = f.reshape(m, n)
    expected = np.sum((flat.T @ flat - m * target) ** 2) / (4 * n**2 * m**2)
    np.testing.assert_allclose(style_layer_loss(f.astype(np.float32), target), expected, rtol=1e-5)


def test_content_loss_hand_computed():
    a = jnp.zeros((1, 2, 2))
    b = jnp.array([[[1.0, 1.0], [3.0, -1.0]]])
    np.testing.assert_allclose(content_loss(a, b), (1 + 1 + 9 + 1) / 4)


def test_total_variation_hand_computed():
    img = np.zeros((2, 3, 3), np.float32)
    img[0, 1, :] = 1.0  # one bright pixel
    # vertical diffs: 3 columns x 1 row x 3 ch, only (0->1 at col 1) = 1 per channel -> mean 3/9
    # horizontal diffs: 2 rows x 2 x 3 ch, row 0 has two unit jumps per channel -> 6/12
    np.testing.assert_allclose(total_variation(img), 3 / 9 + 6 / 12, rtol=1e-6)


def test_weighted_style_loss_sums_layers():
    rng = np.random.default_rng(1)
    feats = {"a": jnp.asarray(rng.standard_normal((4, 4, 3)), jnp.float32),
             "b": jnp.asarray(rng.standard_normal((2, 2, 5)), jnp.float32)}
    grams = {k: gram_matrix(jnp.asarray(rng.standard_normal(v.shape), jnp.float32)) for k, v in feats.items()}
    total = weighted_style_loss(feats, grams, ("a", "b"), (0.25, 2.0))
    expected = 0.25 * style_layer_loss(feats["a"], grams["a"]) + 2.0 * style_layer_loss(feats["b"], grams["b"])
    np.testing.assert_allclose(total, expected, rtol=1e-6)


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        f = jnp.asarray(rng.standard_normal((3, 4, 2)))
        target = jnp.asarray(rng.standard_normal((3, 4, 2)))
        gram_target = gram_matrix(jnp.asarray(rng.standard_normal((3, 4, 2))))
        img = jnp.asarray(rng.uniform(size=(4, 5, 3)))
        check_grads(lambda x: content_loss(x, target), (f,), order=2, modes=("rev",))
        check_grads(lambda x: style_layer_loss(x, gram_target), (f,), order=2, modes=("rev",))
        check_grads(total_variation, (img,), order=2, modes=("rev",))
        check_grads(gram_matrix, (f,), order=1, modes=("rev",))


def test_gram_gradient_is_autodiffs_for_any_cotangent():
    """The Gram matrix's one-product gradient F (g + g^T) / M equals autodiff of F^T F / M,
    for a cotangent that is not symmetric too, in float32 and bfloat16."""
    rng = np.random.default_rng(3)
    for dtype, tol in ((jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)):
        f = jnp.asarray(rng.standard_normal((6, 5, 4)), dtype)
        cotangent = jnp.asarray(rng.standard_normal((4, 4)), jnp.float32)

        def plain(x):
            flat = x.reshape(30, 4)
            return jnp.einsum("mi,mj->ij", flat, flat, preferred_element_type=jnp.float32) / 30

        ours = jax.vjp(gram_matrix, f)[1](cotangent)[0]
        reference = jax.vjp(plain, f)[1](cotangent)[0]
        assert ours.dtype == reference.dtype == dtype
        np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(reference, np.float32),
                                   rtol=tol, atol=tol)
