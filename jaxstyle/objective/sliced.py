"""Sliced Wasserstein style loss (Heitz, Vanhoey, Chambon & Belcour 2021, "A Sliced Wasserstein
Loss for Neural Texture Synthesis", CVPR).

A layer's features [h, w, C] are projected on K random unit directions; each projection's
values are sorted and compared with the target's sorted projections (the 1-D optimal transport
between the two empirical distributions), the loss being the mean squared difference over pixels
and directions. With unit directions ``E[(p^T d)^2] = |d|^2 / C`` for a random ``p``, so the scale
is comparable with :func:`jaxstyle.objective.statistics.w2_distance` (``W2^2 / C``).

Deliberate deviations from Heitz et al.'s code (which draws ``K = C`` new directions at every
evaluation, and repeats the example's pixels when the output is an integer multiple larger):

* The directions are an input (:func:`random_projections` from a key), fixed unless the caller
  draws new ones (e.g. ``jax.random.fold_in(key, step)``): a fixed set keeps the objective
  deterministic, as L-BFGS's line search needs.
* Pixel counts may differ: the target is stored as sorted projections [N, K] (its empirical
  quantile function at ``(j + 1/2) / N``) and read at the output's quantiles by linear
  interpolation (:func:`resample_sorted`), exact when N equals the output's pixel count.
* Masks: a region's pixels are the output's pixels weighted by the region mask [h, w]; the
  sorted values keep their weights, pixel ``i`` sits at the weighted quantile ``u_i`` (midpoint of
  its share of the cumulative weight) and is compared with the target read at ``u_i``. All M
  pixels are sorted (static shapes, zero weights contribute nothing), so it is jit-friendly; for
  0/1 masks it equals the unmasked loss of the region's pixels alone, for an all-ones mask the
  unmasked loss. A style mask weights the style's pixels the same way (:func:`sliced_target`).

**Not a sum over blocks**: the sort is global, so block-by-block evaluation of the loss is not
exact. It is exact to collect every block's projections [M_b, K] (:func:`project`, inner pixels
only) into the whole [M, K], evaluate :func:`sliced_loss_from_projections` once, and pull its
cotangent [M, K] back through each block's projection (memory O(M K) per layer); anything else
must be refused (:func:`require_whole_image`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

_HIGHEST = jax.lax.Precision.HIGHEST


def _acc(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def random_projections(key: ArrayLike | int, channels: int, count: int | None = None) -> jax.Array:
    """K = ``count`` (default ``channels``, as Heitz et al.) random unit directions in R^C, float32
    [C, K], from ``key`` (a ``jax.random`` key or an int seed; no global state). Use
    ``jax.random.fold_in(key, layer_index)`` for each layer's own set."""
    if channels < 1 or (count is not None and count < 1):
        raise ValueError(f"expected at least 1 channel and 1 direction, got channels={channels}, count={count}")
    if isinstance(key, int | np.integer):
        key = jax.random.key(int(key))
    dirs = jax.random.normal(key, (channels, channels if count is None else count), jnp.float32)
    return dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)


def project(features: ArrayLike, projections: ArrayLike) -> jax.Array:
    """Features [h, w, C] (any float dtype) on directions [C, K] -> [h*w, K] in at least float32
    (``Precision.HIGHEST``: target and iterate see exactly the same directions)."""
    f = jnp.asarray(features)
    p = jnp.asarray(projections)
    if f.ndim != 3 or p.ndim != 2 or p.shape[0] != f.shape[-1]:
        raise ValueError(f"expected features [h, w, C] and projections [C, K], got {f.shape} and {p.shape}")
    acc = _acc(f.dtype)
    return jnp.matmul(f.reshape(-1, f.shape[-1]).astype(acc), p.astype(acc), precision=_HIGHEST)


def _read_quantiles(target: jax.Array, u: jax.Array) -> jax.Array:
    """Target sorted values [N, K] (quantiles at ``(j + 1/2) / N``) read at quantiles ``u`` [M, K] (or
    [M, 1]) by linear interpolation, constant beyond the first and last."""
    n = target.shape[0]
    pos = jnp.clip(u * n - 0.5, 0.0, n - 1.0)
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, max(n - 2, 0))
    hi = jnp.minimum(lo + 1, n - 1)
    frac = jnp.clip(pos - lo, 0.0, 1.0).astype(target.dtype)
    k = target.shape[1]
    lo, hi = jnp.broadcast_to(lo, (u.shape[0], k)), jnp.broadcast_to(hi, (u.shape[0], k))
    t_lo, t_hi = jnp.take_along_axis(target, lo, axis=0), jnp.take_along_axis(target, hi, axis=0)
    return t_lo + frac * (t_hi - t_lo)


def resample_sorted(target: ArrayLike, size: int) -> jax.Array:
    """Sorted values [N, K] -> [size, K]: the quantiles at ``(i + 1/2) / size`` by linear interpolation
    of the quantiles at ``(j + 1/2) / N``. The identity when ``size == N``. Compute it once per
    output size (what :func:`sliced_loss_from_projections` does inside when N differs)."""
    t = jnp.asarray(target)
    if size == t.shape[0]:
        return t
    u = ((np.arange(size) + 0.5) / size)[:, None]
    return _read_quantiles(t, jnp.asarray(u, t.dtype))


def _weighted_sort(y: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each column of y [M, K] sorted, with its pixels' weights [M, K] and their midpoint quantiles
    ``u = (cumsum(w) - w / 2) / sum(w)`` [M, K] (unnormalised cumsum first: exact for 0/1 weights)."""
    w = jnp.broadcast_to(weights[:, None].astype(y.dtype), y.shape)
    ys, ws = jax.lax.sort((y, w), dimension=0, num_keys=1)
    total = jnp.maximum(jnp.sum(weights.astype(y.dtype)), jnp.finfo(y.dtype).tiny)
    u = (jnp.cumsum(ws, axis=0) - 0.5 * ws) / total
    return ys, ws / total, u


def sliced_target(features: ArrayLike, projections: ArrayLike, mask: ArrayLike | None = None,
                  size: int | None = None) -> jax.Array:
    """A layer's target [size, K]: the sorted projections of the style's features [h, w, C]
    (``size`` default h*w). With ``mask`` [h, w] (a style mask, weights >= 0, not all 0) the
    weighted pixels' quantiles at ``(j + 1/2) / size`` (linear between the pixels' midpoint
    quantiles, constant beyond); for a 0/1 mask and ``size`` = its pixel count, exactly the
    sorted projections of the masked pixels."""
    y = project(features, projections)
    m = y.shape[0]
    size = m if size is None else int(size)
    if size < 1:
        raise ValueError(f"expected a target size of at least 1, got {size}")
    if mask is None:
        return resample_sorted(jnp.sort(y, axis=0), size)
    if np.shape(mask) != tuple(jnp.shape(features))[:2]:
        raise ValueError(f"expected a mask of the features' shape {jnp.shape(features)[:2]}, got {np.shape(mask)}")
    return weighted_quantiles(y, jnp.asarray(mask).reshape(m).astype(y.dtype), size)


def weighted_quantiles(y: jax.Array, w: jax.Array, size: int) -> jax.Array:
    """The quantiles at ``(j + 1/2) / size`` [size, K] of values y [M, K] whose pixels weigh w [M]
    (>= 0, not all 0): linear between the pixels' midpoint quantiles, constant beyond."""
    m = y.shape[0]
    # Pixels of weight 0 go last (sorted by (w == 0, value)): the others' quantiles stay increasing.
    empty = jnp.broadcast_to((w <= 0)[:, None].astype(y.dtype), y.shape)
    wk = jnp.broadcast_to(w[:, None], y.shape)
    _, ys, ws = jax.lax.sort((empty, y, wk), dimension=0, num_keys=2)
    total = jnp.maximum(jnp.sum(w), jnp.finfo(y.dtype).tiny)
    count = jnp.sum(w > 0)
    u = (jnp.cumsum(ws, axis=0) - 0.5 * ws) / total
    index = jnp.arange(m)[:, None]
    last = jnp.take_along_axis(ys, jnp.full((1, ys.shape[1]), jnp.maximum(count - 1, 0)), axis=0)
    u = jnp.where(index < count, u, 2.0 + index.astype(y.dtype))  # past every valid quantile
    ys = jnp.where(index < count, ys, last)
    grid = jnp.asarray((np.arange(size) + 0.5) / size, y.dtype)
    return jax.vmap(lambda x, v: jnp.interp(grid, x, v), in_axes=1, out_axes=1)(u, ys)


def mixture_target(projected: list[jax.Array], weights: list[jax.Array | None], blend: ArrayLike,
                   size: int) -> jax.Array:
    """The target [size, K] of several styles mixed: the quantiles of the pooled pixels of every
    style s (projections [N_s, K], pixel weights [N_s] or None for all ones), style s's pixels
    weighing ``blend_s`` in all (``blend`` >= 0, summing to 1): exactly the sorted projections of the
    weighted mixture of the styles' pixel distributions, read at ``size`` quantiles."""
    parts_y, parts_w = [], []
    for y, w, b in zip(projected, weights, jnp.asarray(blend, jnp.float32)):
        w = jnp.ones((y.shape[0],), y.dtype) if w is None else jnp.asarray(w, y.dtype)
        parts_y.append(y)
        parts_w.append(b.astype(y.dtype) * w / jnp.maximum(jnp.sum(w), jnp.finfo(y.dtype).tiny))
    return weighted_quantiles(jnp.concatenate(parts_y), jnp.concatenate(parts_w), int(size))


def sliced_loss_from_projections(y: jax.Array, target: ArrayLike, weights: ArrayLike | None = None) -> jax.Array:
    """Mean squared difference of sorted projections: y [M, K] (all of an image's pixels, e.g. the
    concatenated blocks), target sorted [N, K]. Without ``weights``: ``mean((sort(y) - t_M)^2)``,
    ``t_M`` the target resampled to M quantiles. With pixel ``weights`` [M] (a region):
    ``sum_i w_i (y_(i) - t(u_i))^2 / (K sum w)``, ``u_i`` each sorted pixel's weighted quantile."""
    t = jnp.asarray(target).astype(y.dtype)
    if y.ndim != 2 or t.ndim != 2 or t.shape[1] != y.shape[1]:
        raise ValueError(f"expected projections [M, K] and a target [N, K], got {y.shape} and {t.shape}")
    if weights is None:
        diff = jnp.sort(y, axis=0) - resample_sorted(t, y.shape[0])
        return jnp.mean(diff * diff)
    ys, ws, u = _weighted_sort(y, jnp.asarray(weights).reshape(y.shape[0]))
    diff = ys - _read_quantiles(t, u)
    return jnp.sum(ws * diff * diff) / y.shape[1]


@jax.jit
def sliced_style_loss(features: ArrayLike, target: ArrayLike, projections: ArrayLike,
                      mask: ArrayLike | None = None) -> jax.Array:
    """Sliced Wasserstein style loss of one layer's features [h, w, C] against its target's sorted
    projections [N, K] on ``projections`` [C, K] (the target's own); with ``mask`` [h, w], of that
    soft region's pixels only (see the module doc)."""
    return sliced_loss_from_projections(project(features, projections), target, mask)


@jax.jit
def masked_sliced_style_loss(features: ArrayLike, masks: ArrayLike, targets: ArrayLike,
                             projections: ArrayLike) -> jax.Array:
    """``sum_r mean(m_r) * L_r`` over regions r (as losses.masked_style_layer_loss): features
    [h, w, C], masks [R, h, w] summing to 1 at each pixel, targets [R, N, K] (one per region's
    style). The projections are computed once for all regions."""
    masks = jnp.asarray(masks)
    targets = jnp.asarray(targets)
    if masks.ndim != 3 or targets.ndim != 3 or targets.shape[0] != masks.shape[0]:
        raise ValueError(f"expected masks [R, h, w] and targets [R, N, K], got {masks.shape} and {targets.shape}")
    y = project(features, projections)
    losses = jax.vmap(lambda m, t: sliced_loss_from_projections(y, t, m))(masks.astype(y.dtype), targets)
    return jnp.sum(jnp.mean(masks.astype(y.dtype), axis=(1, 2)) * losses)


def require_whole_image(blocks: int) -> None:
    """ValueError unless the layer is evaluated in one piece (``blocks == 1``): the sliced loss sorts
    all pixels, so per-block losses do not add up to it (see the module doc for the exact way)."""
    if blocks != 1:
        raise ValueError(f"expected the sliced Wasserstein style loss on the whole image (1 block), got {blocks} "
                         "blocks: its sort is global, not a sum over pixels; use the W2 or Gram style loss "
                         "with block-by-block evaluation, or collect every block's projections first")
