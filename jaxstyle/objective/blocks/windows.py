"""What every pass does with one chunk's windows: cut them from the padded image or targets, run
the network on them (zeroing past the image as the image's own padding does), weigh their features
by the blocks' inner regions (and region masks), sum their Grams, and add windows back into a
whole-image array; :func:`scan_chunks` runs a pass over the chunks. For ``style_loss="w2"`` each
style layer sums moments instead of Grams (:func:`moment_block_sums`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.model.vgg import VGG19Features, poolings_before, preprocess
from jaxstyle.objective.blocks.layout import Blocking, BlockLayout
from jaxstyle.objective.statistics import MomentSums
from jaxstyle.objective.terms import Objective


def window_features(params, windows: jax.Array, origins: jax.Array, layout: BlockLayout, objective: Objective,
                    layers: tuple[str, ...]) -> dict:
    """Features of windows [B, h, w, 3] (in [0, 1]) at ``origins`` [B, 2] of the image: {layer: [B, h', w', C]}."""
    net = VGG19Features(layers=layers, pooling=objective.pooling, dtype=jnp.dtype(objective.precision),
                        remat=objective.remat, winograd_layers=objective.winograd_layers,
                        extent=layout.extent if layout.reaches_past_image else None)
    x = preprocess(windows, objective.prep)
    return net.apply({"params": params}, x, origins) if layout.reaches_past_image else net.apply({"params": params}, x)


def inner_masks(origins: jax.Array, inner: jax.Array, shape: tuple[int, int], level: int) -> jax.Array:
    """[B, h, w] float32: 1 over each window's inner region at ``level`` poolings (windows ``shape``
    (h, w) at that level, ``origins`` [B, 2] and ``inner`` [B, 4] in input pixels)."""
    rows = jnp.arange(shape[0])[None] + (origins[:, :1] >> level)
    cols = jnp.arange(shape[1])[None] + (origins[:, 1:] >> level)
    rows = (rows >= inner[:, :1] >> level) & (rows < inner[:, 1:2] >> level)
    cols = (cols >= inner[:, 2:3] >> level) & (cols < inner[:, 3:4] >> level)
    return (rows[:, :, None] & cols[:, None, :]).astype(jnp.float32)


def cut_windows(array: jax.Array, origins: jax.Array, shape: tuple[int, ...], level: int = 0) -> jax.Array:
    """Windows [B, *shape] of ``array`` [H', W', ...] (at ``level`` poolings) at ``origins`` [B, 2] (input px)."""
    def cut(origin):
        start = (origin[0] >> level, origin[1] >> level) + (0,) * (array.ndim - 2)
        return jax.lax.dynamic_slice(array, start, shape)

    return jax.vmap(cut)(origins)


def cut_region_windows(masks: jax.Array, origins: jax.Array, shape: tuple[int, int], level: int) -> jax.Array:
    """Windows [B, R, h, w] of region masks [R, H', W'] at ``origins``."""
    return jnp.moveaxis(cut_windows(jnp.moveaxis(masks, 0, -1), origins, shape + (masks.shape[0],), level), -1, 1)


def add_windows(total: jax.Array, windows: jax.Array, origins: jax.Array, level: int = 0) -> jax.Array:
    """``total`` [H', W', ...] with each of ``windows`` [B, h, w, ...] added at its origin (one after another)."""
    for i in range(windows.shape[0]):
        start = (origins[i, 0] >> level, origins[i, 1] >> level) + (0,) * (total.ndim - 2)
        here = jax.lax.dynamic_slice(total, start, windows.shape[1:])
        total = jax.lax.dynamic_update_slice(total, here + windows[i].astype(total.dtype), start)
    return total


def chunk_windows(x_padded: jax.Array, origins: jax.Array, layout: BlockLayout, blocking: Blocking) -> jax.Array:
    """A chunk's windows [per_chunk, h, w, 3] of the padded iterate, spread over the mesh."""
    return blocking.spread(cut_windows(x_padded, origins, layout.window + (3,)))


def accumulation(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def gram_sums(feats: jax.Array, weight: jax.Array) -> jax.Array:
    """``sum_b F_b^T diag(weight_b) F_b`` of features [B, h, w, C] under weights [B, h, w] -> [C, C];
    with region weights [B, R, h, w] -> [R, C, C]."""
    acc = accumulation(feats.dtype)
    if weight.ndim == 3:
        return jnp.einsum("bhwi,bhwj->ij", feats * weight[..., None].astype(feats.dtype), feats,
                          preferred_element_type=acc)
    return jnp.einsum("brhwi,bhwj->rij", feats[:, None] * weight[..., None].astype(feats.dtype), feats,
                      preferred_element_type=acc)


def moment_block_sums(feats: jax.Array, weight: jax.Array, center: jax.Array) -> MomentSums:
    """:func:`~jaxstyle.objective.statistics.moment_sums` of features [B, h, w, C] under weights
    [B, h, w] about ``center`` [C]; with region weights [B, R, h, w] and centres [R, C], one set
    of sums per region (every field with a leading R)."""
    acc = accumulation(feats.dtype)
    if weight.ndim == 3:
        c = center.astype(feats.dtype)
        f = feats - c
        first = jnp.einsum("bhw,bhwi->i", weight.astype(acc), f.astype(acc))
        second = jnp.einsum("bhwi,bhwj->ij", f * weight[..., None].astype(f.dtype), f, preferred_element_type=acc)
        return MomentSums(jnp.sum(weight.astype(acc)), first, second, c.astype(acc))
    return jax.vmap(lambda w, c: moment_block_sums(feats, w, c), in_axes=(1, 0))(weight, center)


def moment_sums_gradient(feats: jax.Array, weight: jax.Array, center: jax.Array, cotangent: MomentSums) -> jax.Array:
    """d/dF of ``<D1, first> + <D2, second>`` for :func:`moment_block_sums` about ``center`` (``cotangent``
    holds the D's): ``w (D1 + (F - c)(D2 + D2^T))``, summed over regions -> [B, h, w, C], accumulation dtype."""
    acc = accumulation(feats.dtype)
    if weight.ndim == 3:
        return _moment_gradient(feats, weight, center, cotangent, acc)
    per_region = jax.vmap(lambda w, c, d: _moment_gradient(feats, w, c, d, acc), in_axes=(1, 0, 0))(
        weight, center, cotangent)
    return jnp.sum(per_region, axis=0)


def _moment_gradient(feats, weight, center, cotangent, acc):
    both = (cotangent.second + cotangent.second.T).astype(feats.dtype)
    f = feats - center.astype(feats.dtype)
    grad = cotangent.first.astype(acc) + jnp.einsum("bhwi,ij->bhwj", f, both, preferred_element_type=acc)
    return weight[..., None].astype(acc) * grad


def layer_shape(layout: BlockLayout, layer: str) -> tuple[int, int]:
    """The whole image's (h, w) at ``layer``."""
    level = poolings_before(layer)
    return layout.rows.length >> level, layout.cols.length >> level


def window_shape(layout: BlockLayout, layer: str) -> tuple[int, int]:
    level = poolings_before(layer)
    return layout.rows.window >> level, layout.cols.window >> level


def block_weights(layout, layer, origins, inner, masks):
    """Per-window weights of a style layer's Gram: the inner region [B, h, w], times each region's
    mask [B, R, h, w] under a content mask."""
    level, shape = poolings_before(layer), window_shape(layout, layer)
    weight = inner_masks(origins, inner, shape, level)
    if masks is None:
        return weight
    return weight[:, None] * cut_region_windows(masks[layer], origins, shape, level)


def scan_chunks(body, init, origins, inner):
    """``body(carry, origins_chunk, inner_chunk) -> carry`` over the chunks."""
    def step(carry, chunk):
        return body(carry, *chunk), None

    return jax.lax.scan(step, init, (jnp.asarray(origins), jnp.asarray(inner)))[0]


def pad_image(x: jax.Array, layout: BlockLayout) -> jax.Array:
    (ph, pw), (h, w) = layout.padded, layout.extent
    return jnp.pad(x, ((0, ph - h), (0, pw - w), (0, 0)))
