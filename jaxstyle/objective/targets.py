"""The targets of the objective, computed once per stage: content features and style Gram
matrices (blended over several style images, or one per region under a content mask); for
``style_loss`` "w2" and "sliced" the statistics :mod:`jaxstyle.objective.style_losses` describes
(each style image's parts, :func:`style_parts`, cached as Grams are, then :func:`statistic_targets`).

:func:`stage_targets` is the one path from a checked pair (:class:`PairInputs`) to its targets
at a stage's size, for a single run and for every pair of a batch (which stacks them). With a
``cache`` the style targets are kept under :func:`style_target_key`: what decides them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, MutableMapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.blocks import (
    Blocking,
    blocked_content_features,
    blocked_style_grams,
    blocked_style_moments,
    pad_targets,
)
from jaxstyle.objective.inputs import PairInputs
from jaxstyle.objective.losses import gram_matrix, masked_gram_matrix
from jaxstyle.objective.masks import layer_masks, region_masks
from jaxstyle.objective.resample import resize, resize_mask, scaled
from jaxstyle.objective.sliced import mixture_target, project, resample_sorted
from jaxstyle.objective.statistics import blend_moments, moments, w2_target
from jaxstyle.objective.style_losses import layer_projections, require_whole
from jaxstyle.objective.terms import Objective, features


def content_targets(params, content: jax.Array, objective: Objective) -> dict:
    """Content features of one image [H, W, 3]: {layer: [h, w, C]}."""
    return features(params, content, objective, objective.content_layers)


def style_targets(params, style: jax.Array, objective: Objective, mask: jax.Array | None = None) -> dict:
    """Style Gram matrices of one image (any size): {layer: [C, C]}; with ``mask`` [H, W]
    (the style image's own mask) the Gram matrices of that region only."""
    feats = features(params, style, objective, objective.style_layers)
    if mask is None:
        return {k: gram_matrix(v) for k, v in feats.items()}
    masks = layer_masks(mask[None], objective.style_layers)
    return {k: masked_gram_matrix(v, masks[k][0]) for k, v in feats.items()}


def style_parts(params, style: jax.Array, objective: Objective, mask: jax.Array | None = None) -> dict:
    """What one style image [H, W, 3] (with its own ``mask`` [H, W]) gives each style layer: its
    Gram [C, C] for "gram" (:func:`style_targets`), its :class:`~jaxstyle.objective.statistics.Moments`
    for "w2", its projections on the layer's fixed directions with its pixels' mask weights
    ``(y [N, K], w [N] or None)`` for "sliced"."""
    if objective.style_loss == "gram":
        return style_targets(params, style, objective, mask)
    feats = features(params, style, objective, objective.style_layers)
    masks = None if mask is None else layer_masks(mask[None], objective.style_layers)
    parts = {}
    for n, f in feats.items():
        m = None if masks is None else masks[n][0]
        if objective.style_loss == "w2":
            parts[n] = moments(f, m)
        else:
            y = project(f, layer_projections(objective.style_layers.index(n), f.shape[-1]))
            parts[n] = (y, None if m is None else m.reshape(-1))
    return parts


def statistic_targets(parts: list[dict], blend, objective: Objective, sizes: dict, regions: bool) -> dict:
    """The style targets {layer: ...} of a "w2" or "sliced" objective from each style image's
    :func:`style_parts`: blended by ``blend`` (moments linearly; sliced: the weighted mixture of the
    styles' pixels) or, with ``regions``, one per style stacked on a leading axis. ``sizes``: the
    iterate's pixel count at each style layer (the sliced targets' length)."""
    out = {}
    for i, n in enumerate(objective.style_layers):
        layer = [p[n] for p in parts]
        if objective.style_loss == "w2":
            if regions:
                out[n] = jax.tree.map(lambda *t: jnp.stack(t), *[w2_target(m) for m in layer])
            else:
                out[n] = w2_target(layer[0] if len(layer) == 1 else blend_moments(layer, jnp.asarray(blend)))
            continue
        proj = layer_projections(i, layer[0][0].shape[-1])  # the directions style_parts projected on
        if regions:
            sorted_ = jnp.stack([mixture_target([y], [w], jnp.ones((1,)), sizes[n]) for y, w in layer])
        elif len(layer) == 1 and layer[0][1] is None:
            sorted_ = resample_sorted(jnp.sort(layer[0][0], axis=0), sizes[n])
        else:
            sorted_ = mixture_target([y for y, _ in layer], [w for _, w in layer], jnp.asarray(blend), sizes[n])
        out[n] = {"sorted": sorted_, "projections": proj}
    return out


def layer_sizes(params, shape: tuple[int, int], objective: Objective) -> dict:
    """The iterate's pixel count h*w at each style layer for an image of ``shape`` (abstract: no compute)."""
    image = jax.ShapeDtypeStruct((*shape, 3), jnp.float32)
    feats = jax.eval_shape(lambda x: features(params, x, objective, objective.style_layers), image)
    return {n: int(f.shape[0] * f.shape[1]) for n, f in feats.items()}


content_targets_jit = jax.jit(content_targets, static_argnames=("objective",))
style_targets_jit = jax.jit(style_targets, static_argnames=("objective",))
style_parts_jit = jax.jit(style_parts, static_argnames=("objective",))


@partial(jax.jit, static_argnames=("objective",))
def compute_targets(params, content: jax.Array, style: jax.Array, *, objective: Objective) -> dict:
    """Content features and style targets of one plain pair, in one program (benchmarks, memory)."""
    if objective.style_loss == "gram":
        return {"content": content_targets(params, content, objective),
                "style": style_targets(params, style, objective)}
    sizes = layer_sizes(params, content.shape[:2], objective)
    return {"content": content_targets(params, content, objective),
            "style": statistic_targets([style_parts(params, style, objective)], (1.0,), objective, sizes, False)}


def blended_grams(blend, grams: list[dict]) -> dict:
    """The style images' Gram matrices mixed by ``blend`` (one weight per image, summing to 1):
    {layer: [C, C]}. One image's are returned as they are (its weight is 1)."""
    return grams[0] if len(grams) == 1 else _blend(jnp.asarray(blend, jnp.float32), grams)


@jax.jit
def _blend(blend: jax.Array, grams: list[dict]) -> dict:
    return jax.tree.map(lambda *g: sum(blend[i] * gi for i, gi in enumerate(g)), *grams)


def _digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a, np.float32)
    return hashlib.blake2b(repr(a.shape).encode() + a.tobytes(), digest_size=20).hexdigest()


def style_target_key(style: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int], objective: Objective,
                     vgg: VGG19) -> tuple:
    """What decides a style image's Gram targets: its pixels and mask (digests), the size it is
    resized to, the objective (layers, pooling, preprocessing, precision, convolutions, remat) and
    the network's weights (the object: a cache keeps it alive beside the targets, so its id
    cannot be reused while the entry exists)."""
    key = (_digest(style), _digest(mask), tuple(shape), objective.style_layers, objective.pooling, objective.prep,
           objective.precision, objective.remat, objective.winograd_layers, id(vgg))
    return key if objective.style_loss == "gram" else (*key, objective.style_loss)


def stage_targets(params, pair: PairInputs, objective: Objective, shape: tuple[int, int], factor: float, *,
                  place: Callable[[jax.Array], jax.Array] = lambda a: a, cache: MutableMapping | None = None,
                  vgg: VGG19 | None = None, blocking: Blocking | None = None) -> dict:
    """Targets of ``pair`` at a stage of ``shape`` (h, w), its style images scaled by ``factor``:
    {content: {layer: [h', w', C]}, style: {layer: [C, C]}} (blended), or with a content mask
    style {layer: [R, C, C]} and masks {layer: [R, h', w']}. ``place`` puts the stage's content
    where the run computes (sharded). With ``cache`` (and the ``vgg`` that ``params`` come from),
    style targets are looked up before they are computed. With ``blocking``, images it evaluates
    block by block have their features computed so (the same values), and a content image so
    evaluated has its content features and masks padded to its layout
    (:func:`~jaxstyle.objective.blocks.pad_targets`)."""
    content_image = place(resize(jnp.asarray(pair.content), shape))
    layout = None if blocking is None else blocking.layout(*shape, objective.layers, objective.winograd_layers)
    gram = objective.style_loss == "gram"
    if layout is not None and not gram:
        require_whole(objective.style_loss)
    if layout is None:
        content = content_targets_jit(params, content_image, objective=objective)
    else:
        content = blocked_content_features(params, content_image, objective=objective, layout=layout,
                                           blocking=blocking)
    grams = []
    for style, mask in zip(pair.styles, pair.style_masks):
        style_shape = scaled(style.shape, factor)

        def compute(style=style, mask=mask, style_shape=style_shape):
            m = None if mask is None else resize_mask(mask, style_shape)
            image = resize(jnp.asarray(style), style_shape)
            style_layout = None if blocking is None else blocking.layout(*style_shape, objective.style_layers,
                                                                          objective.winograd_layers)
            if style_layout is None:
                return style_parts_jit(params, image, objective=objective, mask=m)
            if objective.style_loss == "w2":
                return blocked_style_moments(params, image, m, objective=objective, layout=style_layout,
                                             blocking=blocking)
            if not gram:
                require_whole(objective.style_loss, "a style image evaluated block by block")
            return blocked_style_grams(params, image, m, objective=objective, layout=style_layout, blocking=blocking)

        if cache is None:
            grams.append(compute())
            continue
        key = style_target_key(style, mask, style_shape, objective, vgg)
        if key not in cache:
            cache[key] = (vgg, compute())
        grams.append(cache[key][1])
    if not gram:
        style = statistic_targets(grams, pair.blend, objective, layer_sizes(params, shape, objective),
                                  pair.content_mask is not None)
    if pair.content_mask is None:
        targets = {"content": content, "style": blended_grams(pair.blend, grams) if gram else style}
    else:
        regions = region_masks(np.asarray(resize_mask(pair.content_mask, shape)), len(pair.styles))
        targets = {"content": content, "style": jax.tree.map(lambda *g: jnp.stack(g), *grams) if gram else style,
                   "masks": layer_masks(regions, objective.style_layers)}
    if layout is not None:  # the content features come padded already
        targets = {**pad_targets({**targets, "content": {}}, layout), "content": content}
    return targets
