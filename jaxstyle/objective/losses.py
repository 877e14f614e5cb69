"""Pure per-image losses of Gatys, Ecker & Bethge (2015, 2016), plus total variation.

All functions take one image's features ([h, w, C], no batch axis; batch with
``jax.vmap``) and return float32 scalars. Normalisations:

* Gram matrix ``G = F^T F / M`` with ``F`` the [M = h*w, N = C] feature matrix.
  Dividing by M makes the style loss independent of the image size.
* Style layer loss ``E = mean((G - A)^2) / 4``. With unnormalised Grams
  ``G' = M G`` this is exactly the paper's ``1/(4 N^2 M^2) * sum (G' - A')^2``
  (eq. 4 of the 2016 paper): ``sum((M G - M A)^2) / (4 N^2 M^2) = mean((G - A)^2) / 4``.
* Content loss ``mean((F - P)^2)``, the feature MSE. The paper uses
  ``1/2 sum (F - P)^2``; the mean differs by the constant ``2 / (M N)`` per layer,
  which the content weight absorbs, and keeps the weight meaningful across sizes.
* Total variation ``mean((x[i+1, j] - x[i, j])^2) + mean((x[i, j+1] - x[i, j])^2)``
  on the RGB image in [0, 1] (not in the paper; a common smoothness prior,
  as in Mahendran & Vedaldi 2015 with beta = 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _accumulation_dtype(x: jax.Array) -> jnp.dtype:
    """float32 for bfloat16/float16/float32 inputs, float64 for float64 (under x64)."""
    return jnp.promote_types(x.dtype, jnp.float32)


@jax.jit
def gram_matrix(features: ArrayLike) -> jax.Array:
    """[h, w, C] -> [C, C], ``F^T F / (h w)``, accumulated in at least float32."""
    f = jnp.asarray(features)
    h, w, c = f.shape
    return _gram(f.reshape(h * w, c))


@jax.custom_vjp
def _gram(flat: jax.Array) -> jax.Array:
    """[M, C] -> [C, C], ``F^T F / M``. Its gradient is one product, ``F (g + g^T) / M``:
    autodiff of the product makes two, one per factor (both [M, C] x [C, C], the costly shape)."""
    acc = _accumulation_dtype(flat)
    return jnp.einsum("mi,mj->ij", flat, flat, preferred_element_type=acc) / flat.shape[0]


def _gram_fwd(flat):
    return _gram(flat), flat


def _gram_bwd(flat, g):
    both = ((g + g.T) / flat.shape[0]).astype(flat.dtype)
    return (jnp.matmul(flat, both, preferred_element_type=_accumulation_dtype(flat)).astype(flat.dtype),)


_gram.defvjp(_gram_fwd, _gram_bwd)


@jax.jit
def content_loss(features: ArrayLike, target: ArrayLike) -> jax.Array:
    """Feature MSE, ``mean((F - P)^2)``, for [h, w, C] features."""
    f = jnp.asarray(features)
    acc = _accumulation_dtype(f)
    diff = f.astype(acc) - jnp.asarray(target).astype(acc)
    return jnp.mean(diff * diff)


@jax.jit
def style_layer_loss(features: ArrayLike, target_gram: ArrayLike) -> jax.Array:
    """``mean((G - A)^2) / 4`` = Gatys' ``1/(4 N^2 M^2) sum (G' - A')^2`` for one layer."""
    return gram_style_loss(gram_matrix(features), target_gram)


def gram_style_loss(gram: jax.Array, target_gram: ArrayLike) -> jax.Array:
    """``mean((G - A)^2) / 4`` of a Gram matrix G [C, C] (:func:`style_layer_loss` from its Gram)."""
    diff = gram - jnp.asarray(target_gram).astype(gram.dtype)
    return 0.25 * jnp.mean(diff * diff)


@jax.jit
def total_variation(image: ArrayLike) -> jax.Array:
    """Squared-difference total variation of an [H, W, 3] image."""
    x = jnp.asarray(image)
    x = x.astype(_accumulation_dtype(x))
    dy = x[1:, :, :] - x[:-1, :, :]
    dx = x[:, 1:, :] - x[:, :-1, :]
    return jnp.mean(dy * dy) + jnp.mean(dx * dx)


def weighted_content_loss(features: Mapping[str, jax.Array], targets: Mapping[str, jax.Array],
                          layers: Sequence[str], layer_weights: ArrayLike) -> jax.Array:
    """``sum_l w_l * content_loss(F_l, P_l)`` over ``layers``."""
    weights = jnp.asarray(layer_weights, jnp.float32)
    return sum(weights[i] * content_loss(features[n], targets[n]) for i, n in enumerate(layers))


def weighted_style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
                        layers: Sequence[str], layer_weights: ArrayLike,
                        masks: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """``sum_l w_l * E_l`` over ``layers`` (Gatys et al. eq. 5). With region ``masks``
    ({layer: [R, h, w]}, targets [R, C, C]) each ``E_l`` is :func:`masked_style_layer_loss`."""
    weights = jnp.asarray(layer_weights, jnp.float32)
    if masks is None:
        return sum(weights[i] * style_layer_loss(features[n], target_grams[n]) for i, n in enumerate(layers))
    return sum(weights[i] * masked_style_layer_loss(features[n], masks[n], target_grams[n])
               for i, n in enumerate(layers))


@jax.jit
def masked_gram_matrix(features: ArrayLike, mask: ArrayLike) -> jax.Array:
    """[h, w, C], [h, w] -> [C, C], ``F^T diag(m) F / sum(m)``: the Gram matrix of a soft region.

    An all-ones mask gives :func:`gram_matrix`; an empty region gives zeros."""
    f = jnp.asarray(features)
    h, w, c = f.shape
    acc = _accumulation_dtype(f)
    m = jnp.asarray(mask, acc).reshape(h * w)
    flat = f.reshape(h * w, c)
    gram = jnp.einsum("mi,mj->ij", flat * m[:, None].astype(f.dtype), flat, preferred_element_type=acc)
    return gram / jnp.maximum(jnp.sum(m), 1e-6)


@jax.jit
def masked_style_layer_loss(features: ArrayLike, masks: ArrayLike, target_grams: ArrayLike) -> jax.Array:
    """``sum_r mean(m_r) * mean((G_r - A_r)^2) / 4`` over regions r (Gatys et al. 2017, spatial control).

    features [h, w, C]; masks [R, h, w] (summing to 1 at each pixel); target_grams [R, C, C].
    Each region's term is weighted by its share of the image, so one all-ones region equals
    :func:`style_layer_loss`."""
    grams = jax.vmap(masked_gram_matrix, in_axes=(None, 0))(features, masks)
    return region_style_loss(grams, target_grams, jnp.mean(jnp.asarray(masks, grams.dtype), axis=(1, 2)))


def region_style_loss(grams: jax.Array, target_grams: ArrayLike, shares: jax.Array) -> jax.Array:
    """``sum_r shares_r * mean((G_r - A_r)^2) / 4`` of region Grams [R, C, C] (:func:`masked_style_layer_loss`
    from its Grams and each region's share of the image, [R])."""
    diff = grams - jnp.asarray(target_grams).astype(grams.dtype)
    return 0.25 * jnp.sum(shares * jnp.mean(diff * diff, axis=(1, 2)))


@jax.custom_vjp
def normalized_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
    """Identity whose backward pass rescales the incoming gradient ``g`` to ``scale * g / (|g|_1 + 1e-8)``.

    jcjohnson/neural-style's ``-normalize_gradients``: each loss layer's gradient is divided by its
    L1 norm before it is weighted, so every layer pushes with the strength of its weight alone.
    ``scale`` must be the weight the loss term is multiplied by after this function."""
    return x


def _normalized_gradient_fwd(x, scale):
    return x, scale


def _normalized_gradient_bwd(scale, g):
    norm = jnp.sum(jnp.abs(g.astype(jnp.float32)))
    return (g * (scale / (norm + 1e-8)).astype(g.dtype), jnp.zeros_like(scale))


normalized_gradient.defvjp(_normalized_gradient_fwd, _normalized_gradient_bwd)
