"""Many pairs at once: the single-pair optimisation vmapped over a batch axis, and shape buckets.

One compiled program optimises B images together, each with its own content target,
style Gram targets, loss weights, seed and optimizer state; each gets its own result and
loss history. Because it is ``jax.vmap`` of exactly the functions :func:`jaxstyle.engine.stylize`
uses, the images equal B separate ``stylize`` calls up to float rounding (tested).

Contents in one batch share a shape (see :func:`bucket_shape`); style images may have any
size, since only their Gram matrices ([C, C], size-independent) enter the loss. Style
targets are computed once per distinct style image.

With a ``mesh`` the batch axis is sharded over the mesh's ``"batch"`` axis
(:mod:`jaxstyle.engine.sharding`); the batch is padded to a multiple of the device count by
repeating its last pair, and the padding is dropped from the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, MutableMapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig, blend_weights, is_integer
from jaxstyle.engine.sharding import pad_batch, replicate, shard_batch
from jaxstyle.engine.stylize import (
    StyleResult,
    _check_image,
    _check_mask,
    _Program,
    _scaled,
    _styles,
    advance,
    blended_grams,
    content_targets,
    drive,
    initial_image,
    loss_terms,
    resize,
    resize_mask,
    stage_shapes,
    start_state,
    style_targets,
)
from jaxstyle.model.vgg import VGG19, check_image_size
from jaxstyle.objective import color
from jaxstyle.objective.masks import layer_masks, region_masks
from jaxstyle.optim.loop import Optimizer


def bucket_shape(height: int, width: int, size: int, multiple: int = 32) -> tuple[int, int]:
    """Output shape for an image: longer side ``size``, shorter side rounded to a multiple.

    Rounding the shorter side (to ``multiple``, or to ``size`` itself if that is smaller)
    makes a folder of photos fall into a few shapes, so a few programs are compiled. The
    image is resized to the bucket (a slight aspect change, at most multiple/2 px), never
    padded: padding would add pixels to every Gram matrix.
    """
    multiple = max(1, min(multiple, size))
    short = min(height, width) * size / max(height, width)
    short = int(min(size, max(multiple, round(short / multiple) * multiple)))
    return (size, short) if height >= width else (short, size)


_batched_content_targets = jax.jit(jax.vmap(content_targets, in_axes=(None, 0, None)), static_argnums=(2,))
_style_targets = jax.jit(style_targets, static_argnums=(2,))
_batched_layer_masks = jax.jit(jax.vmap(layer_masks, in_axes=(0, None)), static_argnums=(1,))
_batched_evaluate = jax.jit(jax.vmap(loss_terms, in_axes=(None, 0, 0, 0, None)), static_argnums=(4,))


def map_over_pairs(fn: Callable, optimizer: Optimizer, in_axes: int | None | tuple = 0, *,
                   sequential: bool | None = None) -> Callable:
    """``fn`` (written for one pair) over a batch of pairs: ``jax.vmap`` for a vmappable
    optimizer, else ``lax.map`` (the pairs one after the other, inside the same compiled
    program), so that a batch never costs more per pair than a loop. ``in_axes``: 0 (mapped)
    or None (shared) per argument. ``sequential`` overrides the choice."""
    if sequential is None:
        sequential = not optimizer.vmappable
    if not sequential:
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)

        def one(members):
            members = iter(members)
            return fn(*(next(members) if axis is not None else a for a, axis in zip(args, axes)))

        return jax.lax.map(one, tuple(a for a, axis in zip(args, axes) if axis is not None))

    return mapped


@partial(jax.jit, static_argnums=(4, 5))
def _batched_start(params, x0, targets, weights, program, sharded):
    # On a mesh the batch axis is split over devices, which needs vmap (a lax.map over a
    # sharded axis would gather it): a non-vmappable optimizer then pays for its selects.
    return map_over_pairs(start_state, program.make_optimizer(), (None, 0, 0, 0, None),
                          sequential=False if sharded else None)(params, x0, targets, weights, program)


@partial(jax.jit, static_argnums=(5, 6), donate_argnums=(1,))
def _batched_advance(params, state, targets, weights, num_steps, program, sharded):
    return map_over_pairs(advance, program.make_optimizer(), (None, 0, 0, 0, None, None),
                          sequential=False if sharded else None)(params, state, targets, weights, num_steps,
                                                                 program)


@dataclasses.dataclass(frozen=True)
class BatchProgress:
    step: int
    total: int
    losses: np.ndarray  # [B] latest finite loss per pair


def _per_pair(values: Sequence[float] | None, default: float, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, default, np.float32)
    values = np.asarray(values, np.float32)
    if values.shape != (n,):
        raise ValueError(f"expected {n} {what} values (one per pair), got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"expected finite {what} values >= 0, got {values.tolist()}")
    return values


def stylize_batch(contents: ArrayLike, styles: Sequence[ArrayLike | Sequence[ArrayLike]], *,
                  config: StyleConfig = StyleConfig(), style_blends: Sequence[Sequence[float] | None] | None = None,
                  vgg: VGG19 | None = None, mesh: jax.sharding.Mesh | None = None,
                  content_weights: Sequence[float] | None = None, style_weights: Sequence[float] | None = None,
                  seeds: Sequence[int] | None = None, gram_cache: MutableMapping | None = None,
                  callback: Callable[[BatchProgress], None] | None = None,
                  callback_every: int = 50, content_masks: Sequence[ArrayLike] | None = None,
                  style_masks: Sequence[Sequence[ArrayLike | None] | None] | None = None,
                  track_terms: bool = False) -> list[StyleResult]:
    """Stylize B pairs in one compiled program.

    contents: float32 [B, H, W, 3] RGB in [0, 1] (one shape). styles: B images [h, w, 3]
    (any sizes), or for a pair several images (a list) whose Gram targets are blended with that
    pair's ``style_blends`` entry (default ``config.style_blend``, else equal). Style targets
    are computed once per distinct style image (its pixels, mask, size and the network program
    decide: :func:`style_target_key`); pass a ``gram_cache`` mapping to keep them across calls.
    content_weights, style_weights, seeds: optional per-pair overrides of ``config``. mesh:
    shard the batch axis over ``mesh.axis_names[0]``. Returns one :class:`StyleResult` per pair
    (``seconds`` is the whole batch's wall time).

    With ``config.scales`` the batch runs coarse-to-fine as :func:`jaxstyle.engine.stylize` does, every
    pair through the same stages (one shape per stage, so one program per stage shape).

    content_masks: one grey mask [H, W] per pair (the contents' shape) giving each region its
    own style image (:mod:`jaxstyle.objective.masks`); every pair then has the same number (>= 2) of
    style images. style_masks: per pair, one mask (or None) per style image, in that image's
    shape. track_terms: record the weighted loss terms after every chunk (``term_history``).
    """
    if vgg is None:
        from jaxstyle.weights.fetch import load_vgg19

        vgg = load_vgg19()
    contents = np.asarray(contents, np.float32)
    if contents.ndim != 4 or contents.shape[-1] != 3:
        raise ValueError(f"expected contents float [B, H, W, 3], got shape {contents.shape}")
    n = contents.shape[0]
    if len(styles) != n:
        raise ValueError(f"expected {n} style images (one per content), got {len(styles)}")
    if n == 0:
        return []
    contents = np.stack([np.asarray(_check_image(c, f"content image {i}")) for i, c in enumerate(contents)])
    height, width = contents.shape[1:3]
    shapes = stage_shapes(height, width, config.scales)
    for h, w in shapes:
        at = "" if (h, w) == shapes[-1] else f" at the {max(h, w)} px scale"
        check_image_size(h, w, config.all_layers, f"content image{at}")
    cw = _per_pair(content_weights, config.content_weight, n, "content weight")
    sw = _per_pair(style_weights, config.style_weight, n, "style weight")
    seeds = [config.seed] * n if seeds is None else list(seeds)
    if len(seeds) != n:
        raise ValueError(f"expected {n} seeds (one per pair), got {len(seeds)}")
    if not all(is_integer(s) and -(2**63) <= int(s) < 2**63 for s in seeds):  # what jax.random.key takes
        raise ValueError(f"expected 64-bit integer seeds, got {seeds}")
    seeds = [int(s) for s in seeds]
    regions = 0
    if content_masks is not None:
        if len(content_masks) != n:
            raise ValueError(f"expected {n} content masks (one per pair), got {len(content_masks)}")
        counts = {len(_styles(style)) for style in styles}
        if len(counts) != 1 or min(counts) < 2:
            raise ValueError("expected the same number (at least 2) of style images for every pair of a masked batch, "
                             f"got {sorted(counts)}")
        regions = counts.pop()
        content_masks = [_check_mask(m, f"content mask of pair {i}") for i, m in enumerate(content_masks)]
        for m in content_masks:
            if m.shape != (height, width):
                raise ValueError(f"expected content masks of the contents' shape {(height, width)}, got {m.shape}")
    style_masks = [None] * n if style_masks is None else list(style_masks)
    if len(style_masks) != n:
        raise ValueError(f"expected {n} style mask lists (one per pair), got {len(style_masks)}")
    blends = [None] * n if style_blends is None else list(style_blends)
    if len(blends) != n:
        raise ValueError(f"expected {n} style blends (one per pair), got {len(blends)}")
    program = _Program.build(config, vgg, callback_every)
    start = time.perf_counter()
    base_params = program.params(vgg)
    params = base_params if mesh is None else replicate(base_params, mesh)
    gram_cache = {} if gram_cache is None else gram_cache

    # Each pair's inputs as the network sees them (colour mode applied: with preserve_colors a
    # style depends on its content), checked once.
    originals, prepared, pair_styles, pair_masks, pair_blends = contents, [], [], [], []
    for i, style in enumerate(styles):
        images = [np.asarray(_check_image(im, f"style image {i}")) for im in _styles(style)]
        masks_i = [None] * len(images) if style_masks[i] is None else list(style_masks[i])
        if len(masks_i) != len(images):
            raise ValueError(f"expected {len(images)} style masks for pair {i} (one per style image), "
                             f"got {len(masks_i)}")
        for im in images:
            for h, _ in shapes:
                check_image_size(*_scaled(im.shape, h / height), config.style_layers, f"style image {i}")
        pair_blends.append(blend_weights(config.style_blend if blends[i] is None else blends[i], len(images)))
        content_i, images = color.prepare(originals[i], images, config.preserve_colors)
        prepared.append(content_i)
        pair_styles.append(images)
        pair_masks.append([None if m is None else _check_mask(m, f"style mask of pair {i}") for m in masks_i])
    prepared = np.stack(prepared)

    def stage_grams(factor: float) -> dict:
        """Every pair's style targets at a stage whose images are ``factor`` of the full size."""
        per_pair = []
        for images, masks_i, blend in zip(pair_styles, pair_masks, pair_blends):
            per_image = []
            for im, m in zip(images, masks_i):
                shape = _scaled(im.shape, factor)
                key = style_target_key(im, m, shape, program, vgg)
                if key not in gram_cache:  # the value keeps vgg alive, so id(vgg) in the key stays its own
                    mask = None if m is None else resize_mask(m, shape)
                    gram_cache[key] = (vgg, _style_targets(base_params, resize(jnp.asarray(im), shape), program, mask))
                per_image.append(gram_cache[key][1])
            per_pair.append(jax.tree.map(lambda *g: jnp.stack(g), *per_image) if regions  # [R, C, C] per layer
                            else blended_grams(blend, per_image))
        return jax.tree.map(lambda *g: jnp.stack(g), *per_pair)

    x = np.stack([np.asarray(initial_image(jnp.asarray(prepared[i]), config,
                                           style=jnp.asarray(pair_styles[i][0]) if config.init == "style" else None,
                                           seed=seeds[i])) for i in range(n)])
    weights = {"content_weight": cw, "style_weight": sw,
               "tv_weight": np.full(n, config.tv_weight, np.float32),
               "content_layer_weights": np.tile(np.asarray(config.content_layer_weights, np.float32), (n, 1)),
               "style_layer_weights": np.tile(np.asarray(config.style_layer_weights, np.float32), (n, 1))}
    place = (lambda tree: tree) if mesh is None else (lambda tree: shard_batch(pad_batch(tree, mesh.devices.size),
                                                                               mesh))
    weights = place(weights)
    sharded = mesh is not None
    total = config.total_iterations
    term_history = [[] for _ in range(n)]
    histories = [[] for _ in range(n)]
    stopped = np.zeros(n, bool)  # a member whose loss went non-finite keeps its last finite image
    final_x, final_terms = [None] * n, [None] * n
    for index, (h, w) in enumerate(shapes):
        factor = h / height
        stage = {"contents": np.stack([np.asarray(resize(jnp.asarray(c), (h, w))) for c in prepared]),
                 "grams": stage_grams(factor)}
        if regions:
            stage["regions"] = np.stack([region_masks(np.asarray(resize_mask(m, (h, w))), regions)
                                         for m in content_masks])
        stage = place(stage)
        x = place(np.stack([np.asarray(resize(jnp.clip(xi, 0.0, 1.0) if index else jnp.asarray(xi), (h, w)))
                            for xi in np.asarray(x)[:n]]))
        targets = {"content": _batched_content_targets(params, stage["contents"], program), "style": stage["grams"]}
        if regions:
            targets["masks"] = _batched_layer_masks(stage["regions"], program.style_layers)
        state = _batched_start(params, x, targets, weights, program, sharded)
        offset = index * config.scale_iterations  # steps of the coarser stages before this one
        iterations = config.iterations if index == len(shapes) - 1 else config.scale_iterations

        def on_chunk(done, st, last, offset=offset, targets=targets, stopped=stopped):
            if track_terms:
                terms = jax.tree.map(np.asarray, _batched_evaluate(params, st.x, targets, weights, program))
                for i in np.flatnonzero(~stopped):
                    term_history[i].append({"step": offset + done, **{k: float(v[i]) for k, v in terms.items()}})
            if callback is not None:
                callback(BatchProgress(offset + done, total, np.where(stopped, np.nan, last[:n])))

        state, history = drive(lambda st, k, targets=targets: _batched_advance(params, st, targets, weights, k,
                                                                               program, sharded),
                               state, iterations=iterations, chunk=program.chunk, period=callback_every,
                               offset=offset, on_chunk=on_chunk)
        failed = np.asarray(state.nonfinite)[:n]
        x = jnp.where(jnp.asarray(np.asarray(state.nonfinite))[:, None, None, None], state.last_finite, state.x)
        last = index == len(shapes) - 1
        if last or failed.any():
            terms = jax.tree.map(np.asarray, _batched_evaluate(params, x, targets, weights, program))
            images = np.asarray(jnp.clip(x, 0.0, 1.0))[:n]
        steps = np.asarray(state.steps)[:n]
        for i in np.flatnonzero(~stopped):
            histories[i].append(history[i, : steps[i]])
            if failed[i] or last:
                final_x[i], final_terms[i] = images[i], {k: float(v[i]) for k, v in terms.items()}
        stopped |= failed
        if stopped.all():
            break
    images = np.stack([resize_image_to(final_x[i], (height, width)) for i in range(n)])
    images = np.stack([color.finish(images[i], originals[i], config.preserve_colors) for i in range(n)])
    seconds = time.perf_counter() - start
    results = []
    for i in range(n):
        history = np.concatenate(histories[i])
        results.append(StyleResult(image=images[i], loss_history=history,
                                   status="nonfinite" if stopped[i] else "done", steps=len(history),
                                   losses=final_terms[i], seconds=seconds, term_history=tuple(term_history[i])))
    return results


def style_target_key(style: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int], program: _Program,
                     vgg: VGG19) -> tuple:
    """What decides a style image's Gram targets: its pixels and mask (digests), the size it is
    resized to, the network program (layers, pooling, preprocessing, precision, convolutions,
    remat) and the network's weights (the object: a cache keeps it alive beside the targets)."""
    def digest(a: np.ndarray | None) -> str | None:
        if a is None:
            return None
        a = np.ascontiguousarray(a, np.float32)
        return hashlib.blake2b(repr(a.shape).encode() + a.tobytes(), digest_size=20).hexdigest()

    return (digest(style), digest(mask), tuple(shape), program.style_layers, program.pooling, program.prep,
            program.precision, program.remat, program.winograd_layers, id(vgg))


def resize_image_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A member's image at the output's shape (a member stopped at a coarse stage is upsampled)."""
    return image if image.shape[:2] == tuple(shape) else np.asarray(resize(jnp.asarray(image), shape))
