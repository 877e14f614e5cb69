"""Many pairs at once: the single-pair run vmapped over a batch axis, and shape buckets.

One compiled program optimises B images together, each with its own content target,
style Gram targets, loss weights, seed and optimizer state; each gets its own result and
loss history. The pairs' inputs and targets take the single run's path
(:func:`jaxstyle.objective.inputs.prepare_pair`, :func:`jaxstyle.objective.targets.stage_targets`),
the step functions are ``jax.vmap`` of the single run's, and the stages are driven by the same
:func:`jaxstyle.engine.run.run_stages`; so the images equal B separate ``stylize`` calls up to
float rounding (tested), coarse-to-fine included.

Contents in one batch share a shape (see :func:`bucket_shape`); style images may have any
size, since only their Gram matrices ([C, C], size-independent) enter the loss. Style
targets are computed once per distinct style image (a ``gram_cache`` keeps them across calls).

With a ``mesh`` the batch axis is sharded over the mesh's ``"batch"`` axis
(:mod:`jaxstyle.engine.sharding`); the batch is padded to a multiple of the device count by
repeating its last pair, and the padding is dropped from the results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, MutableMapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig, is_seed
from jaxstyle.engine.evaluation import WholeImage
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import StyleResult, advance, restarted, resume_point, run_stages, stages, start_state, terms_of
from jaxstyle.engine.sharding import pad_batch, replicate, shard_batch
from jaxstyle.engine.stylize import check_steering
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.color import finish as finish_colors
from jaxstyle.objective.inputs import check_stage_sizes, initial_image, prepare_pair, style_list
from jaxstyle.objective.resample import resize
from jaxstyle.objective.targets import stage_targets
from jaxstyle.optim import Optimizer


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


batched_evaluate = jax.jit(jax.vmap(terms_of, in_axes=(None, 0, 0, 0, None)), static_argnums=(4,))


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
def batched_start(params, x0, targets, weights, program, sharded):
    # On a mesh the batch axis is split over devices, which needs vmap (a lax.map over a
    # sharded axis would gather it): a non-vmappable optimizer then pays for its selects.
    return map_over_pairs(start_state, program.make_optimizer(), (None, 0, 0, 0, None),
                          sequential=False if sharded else None)(params, x0, targets, weights, program)


@partial(jax.jit, static_argnums=(5, 6), donate_argnums=(1,))
def batched_advance(params, state, targets, weights, num_steps, program, sharded):
    return map_over_pairs(advance, program.make_optimizer(), (None, 0, 0, 0, None, None),
                          sequential=False if sharded else None)(params, state, targets, weights, num_steps,
                                                                 program)


@dataclasses.dataclass(frozen=True)
class BatchProgress:
    """What a batch callback sees after each chunk of steps (``step`` over all stages)."""

    step: int
    total: int
    losses: np.ndarray  # [B] latest finite loss per pair
    _x: jax.Array | None = None  # a copy of the first pair's iterate [H, W, 3]

    def image(self) -> np.ndarray:
        """The first pair's image at ``step``, float32 [H, W, 3] in [0, 1] (at the stage's size)."""
        return np.asarray(jnp.clip(self._x, 0.0, 1.0))


def _per_pair(values: Sequence[float] | None, default: float, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, default, np.float32)
    values = np.asarray(values, np.float32)
    if values.shape != (n,):
        raise ValueError(f"expected {n} {what} values (one per pair), got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"expected finite {what} values >= 0, got {values.tolist()}")
    return values


def stylize_batch(contents: ArrayLike, styles: Sequence[ArrayLike | Sequence[ArrayLike]], *, vgg: VGG19,
                  config: StyleConfig = StyleConfig(), style_blends: Sequence[Sequence[float] | None] | None = None,
                  mesh: jax.sharding.Mesh | None = None,
                  content_weights: Sequence[float] | None = None, style_weights: Sequence[float] | None = None,
                  seeds: Sequence[int] | None = None, gram_cache: MutableMapping | None = None,
                  callback: Callable[[BatchProgress], None] | None = None,
                  callback_every: int = 50, content_masks: Sequence[ArrayLike] | None = None,
                  style_masks: Sequence[Sequence[ArrayLike | None] | None] | None = None,
                  track_terms: bool = False, steer: Callable[[int], dict | None] | None = None,
                  evaluation: WholeImage = WholeImage()) -> list[StyleResult]:
    """Stylize B pairs in one compiled program.

    contents: float32 [B, H, W, 3] RGB in [0, 1] (one shape). styles: B images [h, w, 3]
    (any sizes), or for a pair several images (a list) whose Gram targets are blended with that
    pair's ``style_blends`` entry (default ``config.style_blend``, else equal). Style targets
    are computed once per distinct style image (its pixels, mask, size and the objective decide:
    :func:`jaxstyle.objective.targets.style_target_key`); pass a ``gram_cache`` mapping to keep
    them across calls. content_weights, style_weights, seeds: optional per-pair overrides of
    ``config``. mesh: shard the batch axis over ``mesh.axis_names[0]``. Returns one
    :class:`StyleResult` per pair (``seconds`` is the whole batch's wall time).

    With ``config.scales`` the batch runs coarse-to-fine as :func:`jaxstyle.stylize` does, every
    pair through the same stages (one shape per stage, so one program per stage shape).

    content_masks: one grey mask per pair (any size; resized with the stages) giving each region
    its own style image (:mod:`jaxstyle.objective.masks`); every pair then has the same number
    (>= 2) of style images. style_masks: per pair, one mask (or None) per style image, in that
    image's shape. track_terms: record the weighted loss terms after every chunk (``term_history``).
    evaluation: how each pair's objective is evaluated (:mod:`jaxstyle.engine.evaluation`; e.g.
    :class:`~jaxstyle.engine.evaluation.BlockByBlock` for pairs beyond one device's memory, one at a time).
    """
    contents = np.asarray(contents, np.float32)
    if contents.ndim != 4 or contents.shape[-1] != 3:
        raise ValueError(f"expected contents float [B, H, W, 3], got shape {contents.shape}")
    n = contents.shape[0]
    if len(styles) != n:
        raise ValueError(f"expected {n} style images (one per content), got {len(styles)}")
    if n == 0:
        return []
    cw = _per_pair(content_weights, config.content_weight, n, "content weight")
    sw = _per_pair(style_weights, config.style_weight, n, "style weight")
    seeds = [config.seed] * n if seeds is None else list(seeds)
    if len(seeds) != n:
        raise ValueError(f"expected {n} seeds (one per pair), got {len(seeds)}")
    if not all(is_seed(s) for s in seeds):
        raise ValueError(f"expected 64-bit integer seeds, got {seeds}")
    seeds = [int(s) for s in seeds]
    for name, per_pair in (("content masks", content_masks), ("style mask lists", style_masks),
                           ("style blends", style_blends)):
        if per_pair is not None and len(per_pair) != n:
            raise ValueError(f"expected {n} {name} (one per pair), got {len(per_pair)}")
    if content_masks is not None:
        counts = {len(style_list(style)) for style in styles}
        if len(counts) != 1 or min(counts) < 2:
            raise ValueError("expected the same number (at least 2) of style images for every pair of a masked batch, "
                             f"got {sorted(counts)}")
    pairs = [prepare_pair(contents[i], styles[i], config, name=f"of pair {i}",
                          content_mask=None if content_masks is None else content_masks[i],
                          style_masks=None if style_masks is None else style_masks[i],
                          style_blend=None if style_blends is None else style_blends[i])
             for i in range(n)]
    height, width = contents.shape[1:3]
    for i, pair in enumerate(pairs):
        of = f" of pair {i}" if n > 1 else ""
        check_stage_sizes(height, width, [s.shape for s in pair.styles], config, content_name=f"content image{of}",
                          style_names=[f"style image {k + 1}{of}" for k in range(len(pair.styles))])
    if evaluation is None:
        evaluation = WholeImage()
    if mesh is not None and evaluation.blocking is not None:
        raise ValueError("a batch sharded over a mesh is evaluated whole: give a mesh or block-by-block evaluation")
    program = Program.build(config, vgg, callback_every, evaluation)
    start = time.perf_counter()
    base_params = program.objective.params(vgg)
    params = base_params if mesh is None else replicate(base_params, mesh)
    gram_cache = {} if gram_cache is None else gram_cache
    place = (lambda tree: tree) if mesh is None else (lambda tree: shard_batch(pad_batch(tree, mesh.devices.size),
                                                                               mesh))
    weights = {"now": None}
    weights["now"] = place({"content_weight": cw, "style_weight": sw,
                     "tv_weight": np.full(n, config.tv_weight, np.float32),
                     "content_layer_weights": np.tile(np.asarray(config.content_layer_weights, np.float32), (n, 1)),
                     "style_layer_weights": np.tile(np.asarray(config.style_layer_weights, np.float32), (n, 1))})
    x = np.stack([np.asarray(initial_image(jnp.asarray(pair.content), config,
                                           style=jnp.asarray(pair.styles[0]) if config.init == "style" else None,
                                           seed=seeds[i])) for i, pair in enumerate(pairs)])
    sharded = mesh is not None
    term_history = [[] for _ in range(n)]

    def targets_at(stage):
        per_pair = [stage_targets(base_params, pair, program.objective, stage.shape, stage.factor, cache=gram_cache,
                                  vgg=vgg, blocking=evaluation.blocking) for pair in pairs]
        return place(jax.tree.map(lambda *t: jnp.stack(t), *per_pair))

    def start_x(x, stage):
        members = np.asarray(x)[:n]
        return place(np.stack([np.asarray(resize(jnp.clip(xi, 0.0, 1.0) if stage.index else jnp.asarray(xi),
                                                 stage.shape)) for xi in members]))

    def on_chunk(step, state, last, targets, stopped):
        if track_terms:
            terms = jax.tree.map(np.asarray, batched_evaluate(params, state.x, targets, weights["now"], program))
            for i in np.flatnonzero(~stopped):
                term_history[i].append({"step": step, **{k: float(v[i]) for k, v in terms.items()}})
        if callback is not None:
            callback(BatchProgress(step, config.total_iterations, np.where(stopped, np.nan, last[:n]),
                                   jnp.copy(state.x[0])))
        change = steer(step) if steer is not None else None
        if change:
            check_steering(change)
            size = jax.tree.leaves(weights["now"])[0].shape[0]
            weights["now"] = place({**jax.tree.map(np.asarray, weights["now"]),
                                    **{k: np.full(size, v, np.float32) for k, v in change.items()}})
            return restarted(state, batched_start(params, resume_point(state), targets, weights["now"], program,
                                                  sharded))
        return None

    outcome = run_stages(
        x, stages(height, width, config), targets_at=targets_at, start_x=start_x,
        init=lambda x, targets: batched_start(params, x, targets, weights["now"], program, sharded),
        advance=lambda state, targets, k: batched_advance(params, state, targets, weights["now"], k, program,
                                                          sharded),
        evaluate=lambda x, targets: batched_evaluate(params, x, targets, weights["now"], program),
        chunk=program.chunk, period=callback_every, members=n, on_chunk=on_chunk)
    seconds = time.perf_counter() - start
    return [StyleResult(image=finish_colors(outcome.images[i], pair.original, config.preserve_colors),
                        loss_history=outcome.histories[i], status="nonfinite" if outcome.stopped[i] else "done",
                        steps=len(outcome.histories[i]), losses=outcome.terms[i], seconds=seconds,
                        term_history=tuple(term_history[i]))
            for i, pair in enumerate(pairs)]
