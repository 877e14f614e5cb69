"""Neural style transfer of one (content, style) pair: Gatys, Ecker & Bethge,
"Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016).

The image is optimised directly: a composition of the inputs (:mod:`jaxstyle.objective.inputs`),
the targets (:mod:`jaxstyle.objective.targets`), the program (:mod:`jaxstyle.engine.program`),
the evaluation strategy (:mod:`jaxstyle.engine.evaluation`) and the run
(:mod:`jaxstyle.engine.run`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig
from jaxstyle.engine.evaluation import SpatiallySharded, WholeImage
from jaxstyle.engine.planner import plan_evaluation
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import (
    Progress,
    StyleResult,
    evaluate,
    init_state,
    restarted,
    resume_point,
    run_chunk,
    run_stages,
    stages,
)
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.inputs import check_stage_sizes, grey_init, initial_image, prepare_pair, restore_colors
from jaxstyle.objective.resample import resize
from jaxstyle.objective.targets import stage_targets
from jaxstyle.objective.terms import loss_weights

STEERABLE = ("content_weight", "style_weight", "tv_weight")
FLOAT32_MAX = 3.4028234663852886e38  # weights are float32 in the compiled loop


def check_steering(change: dict) -> None:
    """ValueError unless ``change`` names only :data:`STEERABLE` weights, each finite and >= 0."""
    for name, value in change.items():
        if name not in STEERABLE:
            raise ValueError(f"expected weights among {', '.join(STEERABLE)} to steer, got {name!r}")
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= FLOAT32_MAX):
            raise ValueError(f"expected {name} to be a finite number >= 0, got {value!r}")


def stylize(content: ArrayLike, style: ArrayLike | list[ArrayLike], *, vgg: VGG19,
            config: StyleConfig = StyleConfig(), init_image: ArrayLike | None = None,
            callback: Callable[[Progress], None] | None = None, callback_every: int = 50,
            mesh: jax.sharding.Mesh | None = None, content_mask: ArrayLike | None = None,
            style_masks: list[ArrayLike | None] | None = None, track_terms: bool = False,
            steer: Callable[[int], dict | None] | None = None, block_size: int | str | None = "auto",
            evaluation: WholeImage | None = None) -> StyleResult:
    """Render ``content`` in the style of ``style``.

    content: float32 [H, W, 3] RGB in [0, 1]. style: one such image (any size) or a list of
      them; several styles are blended with ``config.style_blend`` (their Gram matrices are).
    vgg: the loaded network (:func:`jaxstyle.load_vgg19`; ``jaxstyle.stylize`` loads the cached one).
    init_image: optional start image, shape of content (overrides ``config.init``).
    callback: called after every ``callback_every`` steps (counted over all stages) and at the
      end of each stage.
    mesh: a 2-D ``("height", "width")`` mesh (:func:`jaxstyle.engine.sharding.spatial_mesh`) to split
      the image over several devices, for images beyond one device's memory.
    block_size: how the objective is evaluated (:func:`jaxstyle.engine.planner.plan_evaluation`):
      "auto" on the whole image when its memory estimate fits, else block by block, the whole
      image's value and gradient from one block's activations at a time (the L-BFGS history
      shrunk, with a warning, if even that does not fit); an int forces blocks of that many px;
      None forbids them. ``evaluation`` (a strategy of :mod:`jaxstyle.engine.evaluation`, e.g. a
      plan's, with its config) overrides it.
    content_mask: [H, W] grey levels in [0, 1] (any size; resized to the content's) that give
      each region of the output its own style image, instead of blending them
      (:mod:`jaxstyle.objective.masks`: with two styles, white takes the first, black the second).
    style_masks: one mask (or None) per style image, [h, w] of that style image: the part of
      it whose statistics count (white: use).
    track_terms: also record the weighted loss terms after every chunk (``term_history``).
    steer(step): after every chunk (and its callback), new values for some of ``content_weight``,
      ``style_weight`` and ``tv_weight`` (a dict), or None. The weights are traced inputs of the
      compiled loop, so a change compiles nothing; the optimizer starts afresh from the current
      image (L-BFGS's curvature pairs belong to the old objective).

    With ``config.scales`` the run is coarse-to-fine: content and style are both shrunk by
    each stage's factor (the style keeps its size relative to the output), and every stage
    starts from the previous stage's result, upsampled. ``loss_history`` then holds every
    stage's losses in order (each at its own resolution); ``losses`` are the full size's.
    """
    pair = prepare_pair(content, style, config, content_mask=content_mask, style_masks=style_masks)
    init_image = grey_init(init_image, config)
    height, width = pair.original.shape[:2]
    check_stage_sizes(height, width, [s.shape for s in pair.styles], config)
    if mesh is not None:
        evaluation = SpatiallySharded(mesh)
    elif evaluation is None:
        plan = plan_evaluation(height, width, config, block_size=block_size)
        if plan.config != config:
            warnings.warn("; ".join(plan.notes), stacklevel=2)
        config, evaluation = plan.config, plan.evaluation
    program = Program.build(config, vgg, callback_every, evaluation)
    start = time.perf_counter()
    params, initial_weights = evaluation.place_shared((program.objective.params(vgg), loss_weights(config)))
    weights = {"now": initial_weights}  # replaced by ``steer``; every call below reads the current one
    x = initial_image(jnp.asarray(pair.content), config, init_image, style=jnp.asarray(pair.styles[0]))
    finish = partial(restore_colors, original=pair.original, preserve_colors=config.preserve_colors)
    term_history = []

    def targets_at(stage):
        return stage_targets(params, pair, program.objective, stage.shape, stage.factor,
                             place=evaluation.place_image, blocking=evaluation.blocking)

    def start_x(x, stage):
        return evaluation.place_image(resize(jnp.clip(x, 0.0, 1.0), stage.shape) if stage.index
                                      else resize(x, stage.shape))

    def on_chunk(step, state, last, targets, stopped):
        terms = None
        if track_terms:
            terms = evaluate(params, state.x, targets, weights["now"], program=program)
            terms = {k: float(v) for k, v in terms.items()}
            term_history.append({"step": step, **terms})
        if callback is not None:
            callback(Progress(step, config.total_iterations, float(last), jnp.copy(state.x), finish, terms))
        change = steer(step) if steer is not None and not bool(state.nonfinite) else None
        if change:
            check_steering(change)
            weights["now"] = evaluation.place_shared(
                {**weights["now"], **{k: jnp.float32(v) for k, v in change.items()}})
            return restarted(state, init_state(params, resume_point(state), targets, weights["now"], program=program))
        return None

    outcome = run_stages(
        x, stages(height, width, config), targets_at=targets_at, start_x=start_x,
        init=lambda x, targets: init_state(params, x, targets, weights["now"], program=program),
        advance=lambda state, targets, n: run_chunk(params, state, targets, weights["now"], n, program=program),
        evaluate=lambda x, targets: evaluate(params, x, targets, weights["now"], program=program),
        chunk=program.chunk, period=callback_every,
        on_chunk=on_chunk if callback is not None or track_terms or steer is not None else None)
    history = outcome.histories[0]
    return StyleResult(image=finish(outcome.images[0]), loss_history=history,
                       status="nonfinite" if outcome.stopped[0] else "done", steps=len(history),
                       losses=outcome.terms[0], seconds=time.perf_counter() - start, term_history=tuple(term_history))

