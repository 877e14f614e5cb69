"""Targets for and from a blocked stage: content features and region masks padded to the layout's
padded size (:func:`pad_targets`), and an image's content features and style Grams computed block
by block (:func:`blocked_content_features`, :func:`blocked_style_grams`, and for "w2"
:func:`blocked_style_moments`) where the image is too
large to pass through the network whole."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxstyle.model.vgg import poolings_before
from jaxstyle.objective.blocks.layout import Blocking, BlockLayout
from jaxstyle.objective.blocks.windows import (
    add_windows,
    block_weights,
    chunk_windows,
    gram_sums,
    inner_masks,
    layer_shape,
    moment_block_sums,
    pad_image,
    scan_chunks,
    window_features,
    window_shape,
)
from jaxstyle.objective.masks import layer_masks
from jaxstyle.objective.statistics import moments_from_sums
from jaxstyle.objective.terms import Objective


def pad_targets(targets: dict, layout: BlockLayout) -> dict:
    """Content features {layer: [h, w, C]} and region masks {layer: [R, h, w]} padded with zeros to
    the layout's padded size at each layer (the windows are cut from them)."""
    def pad(array, layer, leading):
        level = poolings_before(layer)
        h, w = layout.rows.padded >> level, layout.cols.padded >> level
        rows, cols = (0, 1) if not leading else (1, 2)
        widths = [(0, 0)] * array.ndim
        widths[rows], widths[cols] = (0, h - array.shape[rows]), (0, w - array.shape[cols])
        return jnp.pad(array, widths)

    out = dict(targets)
    out["content"] = {n: pad(a, n, False) for n, a in targets["content"].items()}
    if "masks" in targets:
        out["masks"] = {n: pad(a, n, True) for n, a in targets["masks"].items()}
    return out


@partial(jax.jit, static_argnames=("objective", "layout", "blocking"))
def blocked_content_features(params, image: jax.Array, *, objective: Objective, layout: BlockLayout,
                             blocking: Blocking) -> dict:
    """Content features of an image [H, W, 3], block by block, padded to the layout's padded size:
    {layer: [h', w', C]} (zeros beyond the image)."""
    origins, inner = layout.chunks(blocking.per_chunk)
    padded = pad_image(image, layout)
    layers = objective.content_layers

    def body(out, o, i):
        windows = chunk_windows(padded, o, layout, blocking)
        feats = window_features(params, windows, o, layout, objective, layers)
        for n in layers:
            level, shape = poolings_before(n), window_shape(layout, n)
            kept = feats[n] * inner_masks(o, i, shape, level)[..., None].astype(feats[n].dtype)
            out = {**out, n: add_windows(out[n], kept, o, level)}
        return out

    shapes = jax.eval_shape(lambda: window_features(params, padded[None, : layout.unit, : layout.unit],
                                                    jnp.zeros((1, 2), jnp.int32), layout, objective, layers))
    zero = {n: jnp.zeros((layout.rows.padded >> poolings_before(n), layout.cols.padded >> poolings_before(n),
                          s.shape[-1]), s.dtype) for n, s in shapes.items()}
    return scan_chunks(body, zero, origins, inner)


def _style_sums(params, image: jax.Array, mask: jax.Array | None, objective: Objective, layout: BlockLayout,
                blocking: Blocking, summed) -> tuple[dict, dict | None]:
    """Each style layer's ``summed(features, block weights, layer)`` added over the blocks of a style
    image, and the image's own mask at each layer ({layer: [1, h, w]}, padded; None without one).
    Under a mask the block weights are [B, 1, h, w] (the mask's one region)."""
    origins, inner = layout.chunks(blocking.per_chunk)
    padded = pad_image(image, layout)
    layers = objective.style_layers
    masks = None
    if mask is not None:
        masks = pad_targets({"content": {}, "masks": layer_masks(mask[None], layers)}, layout)["masks"]

    def body(acc, o, i):
        windows = chunk_windows(padded, o, layout, blocking)
        feats = window_features(params, windows, o, layout, objective, layers)
        sums = {n: summed(feats[n], block_weights(layout, n, o, i, masks), n) for n in layers}
        return sums if acc is None else jax.tree.map(jnp.add, acc, sums)

    zero = jax.eval_shape(lambda: body(None, origins[0], inner[0]))
    return scan_chunks(body, jax.tree.map(lambda z: jnp.zeros(z.shape, z.dtype), zero), origins, inner), masks


@partial(jax.jit, static_argnames=("objective", "layout", "blocking"))
def blocked_style_grams(params, image: jax.Array, mask: jax.Array | None = None, *, objective: Objective,
                        layout: BlockLayout, blocking: Blocking) -> dict:
    """Style Gram matrices of an image (any size), block by block: {layer: [C, C]}; with ``mask``
    [H, W] (the style image's own) those of that region, as
    :func:`~jaxstyle.objective.targets.style_targets` makes them."""
    sums, masks = _style_sums(params, image, mask, objective, layout, blocking,
                              lambda feats, weight, _: gram_sums(feats, weight))
    out = {}
    for n in objective.style_layers:
        h, w = layer_shape(layout, n)
        out[n] = sums[n] / (h * w) if masks is None else sums[n][0] / jnp.maximum(jnp.sum(masks[n][0]), 1e-6)
    return out


@partial(jax.jit, static_argnames=("objective", "layout", "blocking"))
def blocked_style_moments(params, image: jax.Array, mask: jax.Array | None = None, *, objective: Objective,
                          layout: BlockLayout, blocking: Blocking) -> dict:
    """Style :class:`~jaxstyle.objective.statistics.Moments` of an image (any size), block by block:
    {layer: Moments}, as :func:`~jaxstyle.objective.targets.style_parts` makes them for "w2". Two
    passes: the means, then the sums about them (centred, as ``moments`` centres, for precision)."""
    def about(centers):
        def summed(feats, weight, name):  # a mask's one region: its weights [B, h, w]
            return moment_block_sums(feats, weight[:, 0] if weight.ndim == 4 else weight, centers[name])

        sums, _ = _style_sums(params, image, mask, objective, layout, blocking, summed)
        return {n: s._replace(center=centers[n] + jnp.zeros_like(s.first)) for n, s in sums.items()}

    first = about(dict.fromkeys(objective.style_layers, jnp.float32(0)))  # about 0: the means
    means = {n: jax.lax.stop_gradient(s.first / jnp.maximum(s.weight, 1e-6)) for n, s in first.items()}
    return {n: moments_from_sums(s) for n, s in about(means).items()}
