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
    flat = f.reshape(h * w, c)
    acc = _accumulation_dtype(f)
    return jnp.einsum("mi,mj->ij", flat, flat, preferred_element_type=acc) / (h * w)


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
    gram = gram_matrix(features)
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
                        layers: Sequence[str], layer_weights: ArrayLike) -> jax.Array:
    """``sum_l w_l * E_l`` over ``layers`` (Gatys et al. eq. 5)."""
    weights = jnp.asarray(layer_weights, jnp.float32)
    return sum(weights[i] * style_layer_loss(features[n], target_grams[n])
               for i, n in enumerate(layers))
