"""Many pairs at once: the single-pair optimisation vmapped over a batch axis, and shape buckets.

One compiled program optimises B images together, each with its own content target,
style Gram targets, loss weights, seed and optimizer state; each gets its own result and
loss history. Because it is ``jax.vmap`` of exactly the functions :func:`jaxstyle.stylize`
uses, the images equal B separate ``stylize`` calls up to float rounding (tested).

Contents in one batch share a shape (see :func:`bucket_shape`); style images may have any
size, since only their Gram matrices ([C, C], size-independent) enter the loss. Style
targets are computed once per distinct style image.

With a ``mesh`` the batch axis is sharded over the mesh's ``"batch"`` axis
(:mod:`jaxstyle.sharding`); the batch is padded to a multiple of the device count by
repeating its last pair, and the padding is dropped from the results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle import color
from jaxstyle.config import StyleConfig, blend_weights
from jaxstyle.masks import layer_masks, region_masks
from jaxstyle.optimize import Optimizer
from jaxstyle.sharding import pad_batch, replicate, shard_batch
from jaxstyle.stylize import (
    StyleResult,
    _check_image,
    _check_mask,
    _Program,
    _styles,
    advance,
    blended_grams,
    content_targets,
    drive,
    initial_image,
    loss_terms,
    resize_mask,
    start_state,
    style_targets,
)
from jaxstyle.vgg import VGG19, check_image_size


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
                  seeds: Sequence[int] | None = None, style_keys: Sequence[Hashable] | None = None,
                  gram_cache: dict | None = None,
                  callback: Callable[[BatchProgress], None] | None = None,
                  callback_every: int = 50, content_masks: Sequence[ArrayLike] | None = None,
                  style_masks: Sequence[Sequence[ArrayLike | None] | None] | None = None,
                  track_terms: bool = False) -> list[StyleResult]:
    """Stylize B pairs in one compiled program.

    contents: float32 [B, H, W, 3] RGB in [0, 1] (one shape). styles: B images [h, w, 3]
    (any sizes), or for a pair several images (a list) whose Gram targets are blended with that
    pair's ``style_blends`` entry (default ``config.style_blend``, else equal); a pair's
    ``style_keys`` entry is then a tuple, one key per image. Style targets are computed once
    per distinct ``style_keys`` entry (default: the
    array object's identity); pass a ``gram_cache`` dict to keep them across calls with one ``vgg``. content_weights,
    style_weights, seeds: optional per-pair overrides of ``config``. mesh: shard the batch
    axis over ``mesh.axis_names[0]``. Returns one :class:`StyleResult` per pair
    (``seconds`` is the whole batch's wall time).

    content_masks: one grey mask [H, W] per pair (the contents' shape) giving each region its
    own style image (:mod:`jaxstyle.masks`); every pair then has the same number (>= 2) of
    style images. style_masks: per pair, one mask (or None) per style image, in that image's
    shape. track_terms: record the weighted loss terms after every chunk (``term_history``).
    """
    if config.scales:
        raise ValueError("coarse-to-fine scales are not supported by batch runs yet; use stylize, or no scales")
    if vgg is None:
        from jaxstyle.fetch import load_vgg19

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
    check_image_size(*contents.shape[1:3], config.all_layers, "content image")
    cw = _per_pair(content_weights, config.content_weight, n, "content weight")
    sw = _per_pair(style_weights, config.style_weight, n, "style weight")
    seeds = [config.seed] * n if seeds is None else [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"expected {n} seeds (one per pair), got {len(seeds)}")
    regions = 0
    if content_masks is not None:
        if len(content_masks) != n:
            raise ValueError(f"expected {n} content masks (one per pair), got {len(content_masks)}")
        counts = {len(_styles(style)) for style in styles}
        if len(counts) != 1 or min(counts) < 2:
            raise ValueError("expected the same number (at least 2) of style images for every pair of a masked batch, "
                             f"got {sorted(counts)}")
        regions = counts.pop()
    style_masks = [None] * n if style_masks is None else list(style_masks)
    if len(style_masks) != n:
        raise ValueError(f"expected {n} style mask lists (one per pair), got {len(style_masks)}")
    program = _Program.build(config, vgg, callback_every)
    start = time.perf_counter()
    base_params = program.params(vgg)
    params = base_params if mesh is None else replicate(base_params, mesh)

    # Style targets once per distinct style image.
    gram_cache = {} if gram_cache is None else gram_cache
    keys = ([tuple(id(im) for im in style) if isinstance(style, (list, tuple)) else id(style) for style in styles]
            if style_keys is None else list(style_keys))
    if len(keys) != n:
        raise ValueError(f"expected {n} style keys (one per pair), got {len(keys)}")
    blends = [None] * n if style_blends is None else list(style_blends)
    if len(blends) != n:
        raise ValueError(f"expected {n} style blends (one per pair), got {len(blends)}")
    # With preserve_colors the style a pair sees depends on its content: no sharing then.
    originals = contents
    style_grams, first_styles, prepared = [], [], []
    for i, (style, key) in enumerate(zip(styles, keys)):
        images = _styles(style)
        image_keys = tuple(key) if isinstance(key, tuple) else (key,)
        if len(image_keys) != len(images):
            raise ValueError(f"expected {len(images)} style keys for pair {i} (one per style image), "
                             f"got {len(image_keys)}")
        blend = blend_weights(config.style_blend if blends[i] is None else blends[i], len(images))
        cache_keys = [(k, program.style_layers, program.pooling, program.prep, id(vgg)) for k in image_keys]
        masks_i = [None] * len(images) if style_masks[i] is None else list(style_masks[i])
        if len(masks_i) != len(images):
            raise ValueError(f"expected {len(images)} style masks for pair {i} (one per style image), "
                             f"got {len(masks_i)}")
        fresh = (config.preserve_colors or config.init == "style" or any(m is not None for m in masks_i)
                 or any(k not in gram_cache for k in cache_keys))
        if fresh:
            checked = [np.asarray(_check_image(im, f"style image {i}")) for im in images]
            for im in checked:
                check_image_size(*im.shape[:2], config.style_layers, f"style image {i}")
            content_i, checked = color.prepare(originals[i], checked, config.preserve_colors)
            prepared.append(content_i)
            first_styles.append(checked[0])
            masks_i = [None if m is None else resize_mask(_check_mask(m, f"style mask of pair {i}"), im.shape[:2])
                       for m, im in zip(masks_i, checked)]
            per_image = [_style_targets(base_params, jnp.asarray(im), program, m) for im, m in zip(checked, masks_i)]
            if not config.preserve_colors and all(m is None for m in masks_i):
                gram_cache.update(zip(cache_keys, per_image))
        else:
            prepared.append(originals[i])
            first_styles.append(None)
            per_image = [gram_cache[k] for k in cache_keys]
        if regions:  # each region keeps its own style's Gram matrices: [R, C, C]
            style_grams.append(jax.tree.map(lambda *g: jnp.stack(g), *per_image))
        else:
            style_grams.append(blended_grams(blend, per_image))
    contents = np.stack(prepared)
    x0 = np.stack([np.asarray(initial_image(jnp.asarray(contents[i]), config,
                                            style=jnp.asarray(first_styles[i]) if config.init == "style" else None,
                                            seed=seeds[i])) for i in range(n)])
    weights = {"content_weight": cw, "style_weight": sw,
               "tv_weight": np.full(n, config.tv_weight, np.float32),
               "content_layer_weights": np.tile(np.asarray(config.content_layer_weights, np.float32), (n, 1)),
               "style_layer_weights": np.tile(np.asarray(config.style_layer_weights, np.float32), (n, 1))}
    grams = jax.tree.map(lambda *g: jnp.stack(g), *style_grams)
    batch = {"contents": contents, "x0": x0, "grams": grams, "weights": weights}
    if regions:
        batch["regions"] = np.stack([region_masks(_check_mask(m, f"content mask of pair {i}"), regions)
                                     for i, m in enumerate(content_masks)])
        if batch["regions"].shape[2:] != contents.shape[1:3]:
            raise ValueError(f"expected content masks of the contents' shape {contents.shape[1:3]}, "
                             f"got {batch['regions'].shape[2:]}")
    if mesh is not None:
        batch = shard_batch(pad_batch(batch, mesh.devices.size), mesh)
    targets = {"content": _batched_content_targets(params, batch["contents"], program), "style": batch["grams"]}
    if regions:
        targets["masks"] = _batched_layer_masks(batch["regions"], program.style_layers)
    sharded = mesh is not None
    state = _batched_start(params, batch["x0"], targets, batch["weights"], program, sharded)
    term_history = [[] for _ in range(n)]

    def on_chunk(done, st, last):
        if track_terms:
            terms = jax.tree.map(np.asarray, _batched_evaluate(params, st.x, targets, batch["weights"], program))
            for i in range(n):
                term_history[i].append({"step": done, **{k: float(v[i]) for k, v in terms.items()}})
        if callback is not None:
            callback(BatchProgress(done, config.iterations, last[:n]))

    state, history = drive(lambda st, k: _batched_advance(params, st, targets, batch["weights"], k, program,
                                                          sharded),
                           state, iterations=config.iterations, chunk=program.chunk, on_chunk=on_chunk)
    failed = np.asarray(state.nonfinite)
    final_x = jnp.where(jnp.asarray(failed)[:, None, None, None], state.last_finite, state.x)
    terms = jax.tree.map(np.asarray, _batched_evaluate(params, final_x, targets, batch["weights"], program))
    images = np.asarray(jnp.clip(final_x, 0.0, 1.0))[:n]
    images = np.stack([color.finish(images[i], originals[i], config.preserve_colors) for i in range(n)])
    steps = np.asarray(state.steps)
    seconds = time.perf_counter() - start
    return [StyleResult(image=images[i], loss_history=history[i, : steps[i]],
                        status="nonfinite" if failed[i] else "done", steps=int(steps[i]),
                        losses={k: float(v[i]) for k, v in terms.items()}, seconds=seconds,
                        term_history=tuple(term_history[i]))
            for i in range(n)]
