"""The network terms of a blocked stage as a ``custom_vjp`` (:func:`network_terms`): the forward
pass sums each style layer's Grams and each content layer's squared differences over the blocks,
the backward pass (after the ``normalize_gradients`` norms, where asked) adds each block's
surrogate gradient into the image's; :func:`blocked_loss_terms` adds the pixel terms."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxstyle.model.vgg import poolings_before
from jaxstyle.objective.blocks.layout import Blocking, BlockLayout
from jaxstyle.objective.blocks.windows import (
    accumulation,
    add_windows,
    block_weights,
    chunk_windows,
    cut_windows,
    gram_sums,
    inner_masks,
    layer_shape,
    moment_block_sums,
    moment_sums_gradient,
    pad_image,
    scan_chunks,
    window_features,
    window_shape,
)
from jaxstyle.objective.losses import gram_style_loss, region_style_loss
from jaxstyle.objective.statistics import w2_loss_from_sums
from jaxstyle.objective.style_losses import W2_SCALE
from jaxstyle.objective.terms import Objective, pixel_terms, with_total


def _squared_sum(feats: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    acc = accumulation(feats.dtype)
    diff = feats.astype(acc) - target.astype(acc)
    return jnp.sum(weight[..., None] * diff * diff)


def _statistics(params, x_padded, targets, objective, layout, blocking, origins, inner):
    """One chunk's pass 1: ({style layer: Gram sum}, {content layer: squared-difference sum})."""
    windows = chunk_windows(x_padded, origins, layout, blocking)
    feats = window_features(params, jnp.clip(windows, 0.0, 1.0), origins, layout, objective, objective.layers)
    return _partial_sums(feats, targets, objective, layout, origins, inner)


def _partial_sums(feats, targets, objective, layout, origins, inner):
    masks = targets.get("masks")
    if objective.style_loss == "w2":  # moments about the target's mean (one per region)
        grams = {n: moment_block_sums(feats[n], block_weights(layout, n, origins, inner, masks),
                                      targets["style"][n].mean) for n in objective.style_layers}
    else:
        grams = {n: gram_sums(feats[n], block_weights(layout, n, origins, inner, masks))
                 for n in objective.style_layers}
    squares = {}
    for n in objective.content_layers:
        level, shape = poolings_before(n), window_shape(layout, n)
        target = cut_windows(targets["content"][n], origins, shape + (feats[n].shape[-1],), level)
        squares[n] = _squared_sum(feats[n], target, inner_masks(origins, inner, shape, level))
    return grams, squares


def _content_value(squares, targets, weights, objective, layout):
    """The content term, weighted, from the whole image's squared-difference sums."""
    content = 0.0
    for i, n in enumerate(objective.content_layers):
        h, w = layer_shape(layout, n)
        content = content + weights["content_layer_weights"][i] * squares[n] / (h * w * targets["content"][n].shape[-1])
    return weights["content_weight"] * content


def _style_value(grams, targets, weights, objective, layout):
    """The style term, weighted, from the whole image's Gram sums (moment sums for "w2")."""
    masks = targets.get("masks")
    style = 0.0
    for i, n in enumerate(objective.style_layers):
        h, w = layer_shape(layout, n)
        if objective.style_loss == "w2":
            loss = W2_SCALE * _w2_value(grams[n], targets["style"][n], None if masks is None else masks[n], h * w)
        elif masks is None:
            loss = gram_style_loss(grams[n] / (h * w), targets["style"][n])
        else:
            area = jnp.sum(masks[n], axis=(1, 2))
            loss = region_style_loss(grams[n] / jnp.maximum(area, 1e-6)[:, None, None], targets["style"][n],
                                     area / (h * w))
        style = style + weights["style_layer_weights"][i] * loss
    return weights["style_weight"] * style


def _w2_value(sums, target, masks, pixels):
    """A layer's W2 loss from its moment sums, as statistics.w2_style_loss / masked_w2_style_loss give it
    (the sums were taken about the target's mean: the centre summed over the chunks is replaced by it)."""
    sums = sums._replace(center=target.mean.astype(sums.first.dtype))
    if masks is None:
        return w2_loss_from_sums(sums, target)
    losses = jax.vmap(w2_loss_from_sums)(sums, target)
    return jnp.sum(jnp.sum(masks, axis=(1, 2)) / pixels * losses)


def _pass_sums(params, x_padded, targets, objective, layout, blocking):
    origins, inner = layout.chunks(blocking.per_chunk)
    zero = jax.eval_shape(lambda: _statistics(params, x_padded, targets, objective, layout, blocking,
                                              origins[0], inner[0]))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
    return scan_chunks(lambda acc, o, i: jax.tree.map(jnp.add, acc, _statistics(
        params, x_padded, targets, objective, layout, blocking, o, i)), zero, origins, inner)


def _surrogate_gradients(feats, targets, weights, objective, layout, origins, inner, style_cotangent, content_scale):
    """d/dF of a chunk's surrogate ``content_scale * content_b + <D, Gram sums_b>`` (``D``:
    ``style_cotangent``), whose gradient over the blocks' inner features is the whole objective's:
    ({content layer: [B, h, w, C]}, {style layer: ...}). Written out, one product per Gram as
    :func:`~jaxstyle.objective.losses.gram_matrix`'s own rule: ``W F (D + D^T)`` for the Gram
    ``F^T W F``, and ``2 w (F - P) / (h w C)`` for a content layer's mean squared difference."""
    masks = targets.get("masks")
    content = {}
    for i, n in enumerate(objective.content_layers):
        f = feats[n]
        level, shape = poolings_before(n), window_shape(layout, n)
        acc = accumulation(f.dtype)
        target = cut_windows(targets["content"][n], origins, shape + (f.shape[-1],), level)
        h, w = layer_shape(layout, n)
        scale = (content_scale * weights["content_weight"] * weights["content_layer_weights"][i]
                 * 2.0 / (h * w * f.shape[-1]))
        weight = inner_masks(origins, inner, shape, level)[..., None]
        content[n] = (scale * weight * (f.astype(acc) - target.astype(acc))).astype(f.dtype)
    style = {}
    for n in objective.style_layers:
        f = feats[n]
        acc = accumulation(f.dtype)
        weight = block_weights(layout, n, origins, inner, masks)
        if objective.style_loss == "w2":
            style[n] = moment_sums_gradient(f, weight, targets["style"][n].mean, style_cotangent[n]).astype(f.dtype)
            continue
        d = style_cotangent[n]
        both = (d + jnp.swapaxes(d, -1, -2)).astype(f.dtype)
        if weight.ndim == 3:
            grad = weight[..., None] * jnp.einsum("bhwi,ij->bhwj", f, both, preferred_element_type=acc)
        else:
            grad = jnp.einsum("brhw,brhwj->bhwj", weight,
                              jnp.einsum("bhwi,rij->brhwj", f, both, preferred_element_type=acc))
        style[n] = grad.astype(f.dtype)
    return content, style


def _norms(params, x_padded, targets, weights, objective, layout, blocking, style_cotangent, content_scale):
    """Each layer's feature-gradient L1 norm over the whole image, per kind (``normalize_gradients``)."""
    origins, inner = layout.chunks(blocking.per_chunk)

    def body(acc, o, i):
        windows = chunk_windows(x_padded, o, layout, blocking)
        feats = window_features(params, jnp.clip(windows, 0.0, 1.0), o, layout, objective, objective.layers)
        grads = _surrogate_gradients(feats, targets, weights, objective, layout, o, i, style_cotangent, content_scale)
        return jax.tree.map(lambda a, g: a + jnp.sum(jnp.abs(g.astype(jnp.float32))), acc, grads)

    zero = ({n: jnp.float32(0) for n in objective.content_layers}, {n: jnp.float32(0) for n in objective.style_layers})
    return scan_chunks(body, zero, origins, inner)


def _pass_gradient(params, x_padded, targets, weights, objective, layout, blocking, style_cotangent, content_scale,
                   factors):
    origins, inner = layout.chunks(blocking.per_chunk)

    def body(total, o, i):
        windows = chunk_windows(x_padded, o, layout, blocking)
        feats, pullback = jax.vjp(lambda w: window_features(params, jnp.clip(w, 0.0, 1.0), o, layout, objective,
                                                            objective.layers), windows)
        content_grads, style_grads = _surrogate_gradients(feats, targets, weights, objective, layout, o, i,
                                                          style_cotangent, content_scale)
        if factors is not None:
            content_grads = {n: g * factors[0][n].astype(g.dtype) for n, g in content_grads.items()}
            style_grads = {n: g * factors[1][n].astype(g.dtype) for n, g in style_grads.items()}
        cotangent = {n: jnp.zeros_like(f) for n, f in feats.items()}
        for grads in (content_grads, style_grads):
            for n, g in grads.items():
                cotangent[n] = cotangent[n] + g.astype(cotangent[n].dtype)
        (grad_windows,) = pullback(cotangent)
        return add_windows(total, grad_windows, o)

    return scan_chunks(body, jnp.zeros(x_padded.shape, jnp.float32), origins, inner)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def network_terms(params, x, targets, weights, objective: Objective, layout: BlockLayout, blocking: Blocking):
    """(content term, style term), weighted, of the iterate ``x`` [H, W, 3], block by block; its
    gradient (with respect to ``x`` only: the other arguments get none) is the whole image's."""
    grams, squares = _pass_sums(params, pad_image(x, layout), targets, objective, layout, blocking)
    return (_content_value(squares, targets, weights, objective, layout),
            _style_value(grams, targets, weights, objective, layout))


def _network_terms_fwd(params, x, targets, weights, objective, layout, blocking):
    x_padded = pad_image(x, layout)
    grams, squares = _pass_sums(params, x_padded, targets, objective, layout, blocking)
    values = (_content_value(squares, targets, weights, objective, layout),
              _style_value(grams, targets, weights, objective, layout))
    return values, (params, x_padded, targets, weights, grams)


def _network_terms_bwd(objective, layout, blocking, residuals, cotangents):
    params, x_padded, targets, weights, grams = residuals
    content_scale, style_scale = cotangents
    style_cotangent = jax.grad(lambda g: style_scale * _style_value(g, targets, weights, objective, layout))(grams)
    factors = None
    if objective.normalize_gradients:  # each layer's gradient scaled to L1 norm = its weight
        content_norms, style_norms = _norms(params, x_padded, targets, weights, objective, layout, blocking,
                                            style_cotangent, content_scale)
        content_scales = weights["content_weight"] * weights["content_layer_weights"]
        style_scales = weights["style_weight"] * weights["style_layer_weights"]
        factors = ({n: content_scales[i] / (content_norms[n] + 1e-8) for i, n in enumerate(objective.content_layers)},
                   {n: style_scales[i] / (style_norms[n] + 1e-8) for i, n in enumerate(objective.style_layers)})
    total = _pass_gradient(params, x_padded, targets, weights, objective, layout, blocking, style_cotangent,
                           content_scale, factors)
    h, w = layout.extent
    zeros = jax.tree.map(jnp.zeros_like, (params, targets, weights))
    return zeros[0], total[:h, :w].astype(x_padded.dtype), zeros[1], zeros[2]


network_terms.defvjp(_network_terms_fwd, _network_terms_bwd)


def blocked_loss_terms(params, x: jax.Array, targets: dict, weights: dict, objective: Objective,
                       layout: BlockLayout, blocking: Blocking) -> dict:
    """:func:`~jaxstyle.objective.terms.loss_terms` with the network terms evaluated block by block
    (targets padded: :func:`~jaxstyle.objective.blocks.targets.pad_targets`); same values and gradient."""
    content, style = network_terms(params, x, targets, weights, objective, layout, blocking)
    return with_total({"content": content, "style": style, **pixel_terms(x, targets, weights)})
