"""The network terms of the objective (content, style) evaluated block by block, for images whose
activations do not fit in memory at once: the value and gradient of the *whole-image* objective
(after Galerne, Raad, Lezama & Morel, "Scaling Painting Style Transfer", EGSR 2024).

The image is cut into blocks whose inner regions tile it; each block is evaluated on a window, its
inner region plus a halo as wide as the receptive field of the deepest layer used, so the
window's activations over the inner region are the whole image's. Window offsets are multiples of
``2 ** poolings`` (the poolings keep the image's grid), and where a window reaches past the image
every convolution's input is zeroed there as the image's own padding is
(:class:`~jaxstyle.model.vgg.VGG19Features` ``extent``).

* Pass 1 (the value): each style layer's Gram sum ``sum F^T F`` over the blocks' inner regions
  (one per region under a content mask) and the content layers' squared differences; the style
  loss of the summed Grams is the whole image's.
* Pass 2 (the gradient): with ``D = dE/dG`` of the *global* Grams, each block's surrogate
  ``<D, F_b^T F_b> + content_b`` has, over the block's inner features, the gradient of the whole
  objective; its vector-Jacobian product through the window is added into the image's gradient at
  the window's place (windows overlap in their halos: their contributions add). This needs half
  the halo of assembling each block's gradient from its inner region alone, and is exact: every
  inner feature is the same function of the image's pixels as in the whole image.
* With ``normalize_gradients`` a pass between the two sums each layer's feature-gradient L1 norm
  over the blocks, by which pass 2 then scales that layer's gradient.

Blocks are evaluated ``per_chunk`` at a time (one batched network call) inside a ``lax.scan`` over
chunks, all in the one compiled program; with a ``mesh`` each chunk's windows are split over its
devices (XLA reduces the Gram sums across them). Nothing here reads the device: the planner
(:mod:`jaxstyle.engine.planner`) picks the block size and chunk.

Targets of a blocked stage differ from the whole image's in one respect: content features and
region masks are padded to the blocked layout's padded size (:func:`pad_targets`), zeros beyond the
image, so that windows cut from them stay in bounds.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstyle.model.vgg import LAYER_INDEX, LAYER_NAMES, VGG19Features, poolings_before, preprocess
from jaxstyle.objective.losses import gram_style_loss, region_style_loss
from jaxstyle.objective.masks import layer_masks
from jaxstyle.objective.terms import Objective, pixel_terms, with_total

MIN_BLOCK_UNITS = 2  # a block's inner side is at least two pooling units (32 px under relu5_1)


def receptive_halo(layers: tuple[str, ...], winograd_layers: tuple[str, ...] = ()) -> tuple[int, int]:
    """(halo, unit) in input pixels for the deepest of ``layers``: ``unit`` is the grid windows are
    placed on (``2 ** poolings``, so the poolings keep the image's grid, and 4 positions at the depth
    of each Winograd layer, so its 4x4 tiles do and it rounds as on the whole image), ``halo`` (a
    multiple of it) how far a window's own edge spoils its activations: each 3x3 convolution at
    depth k adds ``2 ** k`` px, each pooling rounds up."""
    deepest = max(LAYER_INDEX[n] for n in layers)
    spoiled, level, unit = 0, 0, 1  # positions from a window's edge, at the current level
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("conv"):
            spoiled += 1
            if name in winograd_layers:
                unit = max(unit, 4 * 2 ** level)
        elif name.startswith("pool"):
            spoiled, level = -(-spoiled // 2), level + 1
    unit = max(unit, 2 ** level)
    return -(-spoiled * 2 ** level // unit) * unit, unit


@dataclasses.dataclass(frozen=True)
class AxisBlocks:
    """The blocks along one axis: the image's ``length``, the ``padded`` length (a multiple of the
    unit), the ``window`` length (all windows alike), each window's ``starts`` and the inner
    regions' ``bounds`` (``len(starts) + 1`` boundaries from 0 to ``length``)."""

    length: int
    padded: int
    window: int
    starts: tuple[int, ...]
    bounds: tuple[int, ...]


def axis_blocks(length: int, block: int, halo: int, unit: int) -> AxisBlocks:
    """Inner regions of about ``block`` px tiling ``length`` (boundaries on the unit grid), each
    window its region plus ``halo`` on each side, kept inside the padded length."""
    padded = -(-length // unit) * unit
    count = max(1, -(-length // block))
    if count == 1:
        return AxisBlocks(length, padded, padded, (0,), (0, length))
    inner = [0] + [round(i * length / count / unit) * unit for i in range(1, count)] + [length]
    if any(b <= a for a, b in zip(inner, inner[1:])):
        raise ValueError(f"expected a block size of at least {MIN_BLOCK_UNITS * unit} px, got {block}")
    need = [min(padded, -(-(b + halo) // unit) * unit) - max(0, a - halo) for a, b in zip(inner, inner[1:])]
    window = min(padded, max(need))
    starts = tuple(min(max(0, a - halo), padded - window) for a in inner[:-1])
    return AxisBlocks(length, padded, window, starts, tuple(inner))


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """The blocks of an image: rows x columns of them (row-major)."""

    rows: AxisBlocks
    cols: AxisBlocks
    unit: int

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def window(self) -> tuple[int, int]:
        return self.rows.window, self.cols.window

    @property
    def padded(self) -> tuple[int, int]:
        return self.rows.padded, self.cols.padded

    @property
    def extent(self) -> tuple[int, int]:
        return self.rows.length, self.cols.length

    @property
    def reaches_past_image(self) -> bool:
        """Whether some window reaches past the image (then the network zeroes what lies there)."""
        return self.padded != self.extent

    def chunks(self, per_chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """(origins [chunks, per_chunk, 2], inner [chunks, per_chunk, 4]: row0, row1, col0, col1),
        int32; the last chunk is filled with empty blocks (no inner region)."""
        origins, inner = [], []
        for r, r0, r1 in zip(self.rows.starts, self.rows.bounds, self.rows.bounds[1:]):
            for c, c0, c1 in zip(self.cols.starts, self.cols.bounds, self.cols.bounds[1:]):
                origins.append((r, c))
                inner.append((r0, r1, c0, c1))
        while len(origins) % per_chunk:
            origins.append((0, 0))
            inner.append((0, 0, 0, 0))
        return (np.asarray(origins, np.int32).reshape(-1, per_chunk, 2),
                np.asarray(inner, np.int32).reshape(-1, per_chunk, 4))


def block_layout(height: int, width: int, layers: tuple[str, ...], block_size: int,
                 winograd_layers: tuple[str, ...] = ()) -> BlockLayout:
    """The layout of an ``height`` x ``width`` image in blocks of about ``block_size`` px for ``layers``
    (and the network's ``winograd_layers``)."""
    halo, unit = receptive_halo(layers, winograd_layers)
    if block_size < MIN_BLOCK_UNITS * unit:
        raise ValueError(f"expected a block size of at least {MIN_BLOCK_UNITS * unit} px for layer "
                         f"{max(layers, key=LAYER_INDEX.__getitem__)}, got {block_size}")
    block = max(unit, block_size // unit * unit)
    return BlockLayout(axis_blocks(height, block, halo, unit), axis_blocks(width, block, halo, unit), unit)


@dataclasses.dataclass(frozen=True)
class Blocking:
    """How images are evaluated block by block; hashable (a jit static argument).

    block_size: the inner side of a block in px (rounded down to the pooling grid).
    per_chunk: blocks evaluated together in one batched network call (a multiple of the mesh's devices).
    whole_up_to: images of at most this many pixels are evaluated whole (the coarse stages that fit).
    mesh: a one-axis mesh (``"blocks"``) to split each chunk's windows over, or None.
    """

    block_size: int
    per_chunk: int = 1
    whole_up_to: int = 0
    mesh: Mesh | None = None

    def __post_init__(self):
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"expected block_size to be a positive integer (px), got {self.block_size!r}")
        if isinstance(self.per_chunk, bool) or not isinstance(self.per_chunk, int) or self.per_chunk < 1:
            raise ValueError(f"expected per_chunk to be a positive integer, got {self.per_chunk!r}")
        if self.mesh is not None and self.per_chunk % self.mesh.devices.size:
            raise ValueError(f"expected per_chunk to be a multiple of the mesh's {self.mesh.devices.size} devices, "
                             f"got {self.per_chunk}")

    def layout(self, height: int, width: int, layers: tuple[str, ...], winograd_layers: tuple[str, ...] = ()
               ) -> BlockLayout | None:
        """The layout of an image of this size, or None where it is evaluated whole (small enough,
        or a single block)."""
        if height * width <= self.whole_up_to:
            return None
        layout = block_layout(height, width, layers, self.block_size, winograd_layers)
        return layout if layout.count > 1 else None

    def spread(self, windows: jax.Array) -> jax.Array:
        """Windows [per_chunk, ...] split over the mesh's devices (as they are without one)."""
        if self.mesh is None:
            return windows
        return jax.lax.with_sharding_constraint(windows, NamedSharding(self.mesh, PartitionSpec(
            self.mesh.axis_names[0])))


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


def _chunk_windows(x_padded: jax.Array, origins: jax.Array, layout: BlockLayout, blocking: Blocking) -> jax.Array:
    """A chunk's windows [per_chunk, h, w, 3] of the padded iterate, spread over the mesh."""
    return blocking.spread(cut_windows(x_padded, origins, layout.window + (3,)))


def _accumulation(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _gram_sums(feats: jax.Array, weight: jax.Array) -> jax.Array:
    """``sum_b F_b^T diag(weight_b) F_b`` of features [B, h, w, C] under weights [B, h, w] -> [C, C];
    with region weights [B, R, h, w] -> [R, C, C]."""
    acc = _accumulation(feats.dtype)
    if weight.ndim == 3:
        return jnp.einsum("bhwi,bhwj->ij", feats * weight[..., None].astype(feats.dtype), feats,
                          preferred_element_type=acc)
    return jnp.einsum("brhwi,bhwj->rij", feats[:, None] * weight[..., None].astype(feats.dtype), feats,
                      preferred_element_type=acc)


def _squared_sum(feats: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    acc = _accumulation(feats.dtype)
    diff = feats.astype(acc) - target.astype(acc)
    return jnp.sum(weight[..., None] * diff * diff)


def _layer_shape(layout: BlockLayout, layer: str) -> tuple[int, int]:
    """The whole image's (h, w) at ``layer``."""
    level = poolings_before(layer)
    return layout.rows.length >> level, layout.cols.length >> level


def _window_shape(layout: BlockLayout, layer: str) -> tuple[int, int]:
    level = poolings_before(layer)
    return layout.rows.window >> level, layout.cols.window >> level


def _block_weights(layout, layer, origins, inner, masks):
    """Per-window weights of a style layer's Gram: the inner region [B, h, w], times each region's
    mask [B, R, h, w] under a content mask."""
    level, shape = poolings_before(layer), _window_shape(layout, layer)
    weight = inner_masks(origins, inner, shape, level)
    if masks is None:
        return weight
    return weight[:, None] * cut_region_windows(masks[layer], origins, shape, level)


def _statistics(params, x_padded, targets, objective, layout, blocking, origins, inner):
    """One chunk's pass 1: ({style layer: Gram sum}, {content layer: squared-difference sum})."""
    windows = _chunk_windows(x_padded, origins, layout, blocking)
    feats = window_features(params, jnp.clip(windows, 0.0, 1.0), origins, layout, objective, objective.layers)
    return _partial_sums(feats, targets, objective, layout, origins, inner)


def _partial_sums(feats, targets, objective, layout, origins, inner):
    masks = targets.get("masks")
    grams = {n: _gram_sums(feats[n], _block_weights(layout, n, origins, inner, masks)) for n in objective.style_layers}
    squares = {}
    for n in objective.content_layers:
        level, shape = poolings_before(n), _window_shape(layout, n)
        target = cut_windows(targets["content"][n], origins, shape + (feats[n].shape[-1],), level)
        squares[n] = _squared_sum(feats[n], target, inner_masks(origins, inner, shape, level))
    return grams, squares


def _content_value(squares, targets, weights, objective, layout):
    """The content term, weighted, from the whole image's squared-difference sums."""
    content = 0.0
    for i, n in enumerate(objective.content_layers):
        h, w = _layer_shape(layout, n)
        content = content + weights["content_layer_weights"][i] * squares[n] / (h * w * targets["content"][n].shape[-1])
    return weights["content_weight"] * content


def _style_value(grams, targets, weights, objective, layout):
    """The style term, weighted, from the whole image's Gram sums."""
    masks = targets.get("masks")
    style = 0.0
    for i, n in enumerate(objective.style_layers):
        h, w = _layer_shape(layout, n)
        if masks is None:
            loss = gram_style_loss(grams[n] / (h * w), targets["style"][n])
        else:
            area = jnp.sum(masks[n], axis=(1, 2))
            loss = region_style_loss(grams[n] / jnp.maximum(area, 1e-6)[:, None, None], targets["style"][n],
                                     area / (h * w))
        style = style + weights["style_layer_weights"][i] * loss
    return weights["style_weight"] * style


def _scan_chunks(body, init, origins, inner):
    """``body(carry, origins_chunk, inner_chunk) -> carry`` over the chunks."""
    def step(carry, chunk):
        return body(carry, *chunk), None

    return jax.lax.scan(step, init, (jnp.asarray(origins), jnp.asarray(inner)))[0]


def _pass_sums(params, x_padded, targets, objective, layout, blocking):
    origins, inner = layout.chunks(blocking.per_chunk)
    zero = jax.eval_shape(lambda: _statistics(params, x_padded, targets, objective, layout, blocking,
                                              origins[0], inner[0]))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
    return _scan_chunks(lambda acc, o, i: jax.tree.map(jnp.add, acc, _statistics(
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
        level, shape = poolings_before(n), _window_shape(layout, n)
        acc = _accumulation(f.dtype)
        target = cut_windows(targets["content"][n], origins, shape + (f.shape[-1],), level)
        h, w = _layer_shape(layout, n)
        scale = (content_scale * weights["content_weight"] * weights["content_layer_weights"][i]
                 * 2.0 / (h * w * f.shape[-1]))
        weight = inner_masks(origins, inner, shape, level)[..., None]
        content[n] = (scale * weight * (f.astype(acc) - target.astype(acc))).astype(f.dtype)
    style = {}
    for n in objective.style_layers:
        f = feats[n]
        acc = _accumulation(f.dtype)
        d = style_cotangent[n]
        both = (d + jnp.swapaxes(d, -1, -2)).astype(f.dtype)
        weight = _block_weights(layout, n, origins, inner, masks)
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
        windows = _chunk_windows(x_padded, o, layout, blocking)
        feats = window_features(params, jnp.clip(windows, 0.0, 1.0), o, layout, objective, objective.layers)
        grads = _surrogate_gradients(feats, targets, weights, objective, layout, o, i, style_cotangent, content_scale)
        return jax.tree.map(lambda a, g: a + jnp.sum(jnp.abs(g.astype(jnp.float32))), acc, grads)

    zero = ({n: jnp.float32(0) for n in objective.content_layers}, {n: jnp.float32(0) for n in objective.style_layers})
    return _scan_chunks(body, zero, origins, inner)


def _pass_gradient(params, x_padded, targets, weights, objective, layout, blocking, style_cotangent, content_scale,
                   factors):
    origins, inner = layout.chunks(blocking.per_chunk)

    def body(total, o, i):
        windows = _chunk_windows(x_padded, o, layout, blocking)
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

    return _scan_chunks(body, jnp.zeros(x_padded.shape, jnp.float32), origins, inner)


def _pad_image(x: jax.Array, layout: BlockLayout) -> jax.Array:
    (ph, pw), (h, w) = layout.padded, layout.extent
    return jnp.pad(x, ((0, ph - h), (0, pw - w), (0, 0)))


@partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def network_terms(params, x, targets, weights, objective: Objective, layout: BlockLayout, blocking: Blocking):
    """(content term, style term), weighted, of the iterate ``x`` [H, W, 3], block by block; its
    gradient (with respect to ``x`` only: the other arguments get none) is the whole image's."""
    grams, squares = _pass_sums(params, _pad_image(x, layout), targets, objective, layout, blocking)
    return (_content_value(squares, targets, weights, objective, layout),
            _style_value(grams, targets, weights, objective, layout))


def _network_terms_fwd(params, x, targets, weights, objective, layout, blocking):
    x_padded = _pad_image(x, layout)
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
    (targets padded: :func:`pad_targets`); same values and gradient."""
    content, style = network_terms(params, x, targets, weights, objective, layout, blocking)
    return with_total({"content": content, "style": style, **pixel_terms(x, targets, weights)})


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
    padded = _pad_image(image, layout)
    layers = objective.content_layers

    def body(out, o, i):
        windows = _chunk_windows(padded, o, layout, blocking)
        feats = window_features(params, windows, o, layout, objective, layers)
        for n in layers:
            level, shape = poolings_before(n), _window_shape(layout, n)
            kept = feats[n] * inner_masks(o, i, shape, level)[..., None].astype(feats[n].dtype)
            out = {**out, n: add_windows(out[n], kept, o, level)}
        return out

    shapes = jax.eval_shape(lambda: window_features(params, padded[None, : layout.unit, : layout.unit],
                                                    jnp.zeros((1, 2), jnp.int32), layout, objective, layers))
    zero = {n: jnp.zeros((layout.rows.padded >> poolings_before(n), layout.cols.padded >> poolings_before(n),
                          s.shape[-1]), s.dtype) for n, s in shapes.items()}
    return _scan_chunks(body, zero, origins, inner)


@partial(jax.jit, static_argnames=("objective", "layout", "blocking"))
def blocked_style_grams(params, image: jax.Array, mask: jax.Array | None = None, *, objective: Objective,
                        layout: BlockLayout, blocking: Blocking) -> dict:
    """Style Gram matrices of an image (any size), block by block: {layer: [C, C]}; with ``mask``
    [H, W] (the style image's own) those of that region, as
    :func:`~jaxstyle.objective.targets.style_targets` makes them."""
    origins, inner = layout.chunks(blocking.per_chunk)
    padded = _pad_image(image, layout)
    layers = objective.style_layers
    masks = None
    if mask is not None:
        masks = pad_targets({"content": {}, "masks": layer_masks(mask[None], layers)}, layout)["masks"]

    def body(acc, o, i):
        windows = _chunk_windows(padded, o, layout, blocking)
        feats = window_features(params, windows, o, layout, objective, layers)
        sums = {n: _gram_sums(feats[n], _block_weights(layout, n, o, i, masks)) for n in layers}
        return sums if acc is None else jax.tree.map(jnp.add, acc, sums)

    zero = jax.eval_shape(lambda: body(None, origins[0], inner[0]))
    sums = _scan_chunks(body, jax.tree.map(lambda z: jnp.zeros(z.shape, z.dtype), zero), origins, inner)
    out = {}
    for n in layers:
        h, w = _layer_shape(layout, n)
        out[n] = sums[n] / (h * w) if masks is None else sums[n][0] / jnp.maximum(jnp.sum(masks[n][0]), 1e-6)
    return out
