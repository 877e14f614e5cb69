"""The run: the compiled chunk loop and its host driver, for one image and (vmapped) for a batch.

The step loop is compiled once per program and runs in chunks of ``program.chunk`` steps, so that
progress reports and intermediate saves cost no per-step Python; the loss weights are traced
arguments and may change freely. :func:`run_stages` drives a coarse-to-fine run stage by stage
(each stage starts from the previous result, upsampled), reports after every chunk, and stops a
member whose loss went non-finite with its last finite image (runtime failure is data: the
result's ``status``). The same driver serves one image (the functions take [H, W, 3]) and a
batch (the functions are vmapped over a leading axis, and members stop one by one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.engine.program import Program
from jaxstyle.objective.inputs import stage_shapes
from jaxstyle.objective.resample import resize
from jaxstyle.optim import LoopState, init_loop, run_steps


def start_state(params, x0: jax.Array, targets: dict, weights: dict, program: Program) -> LoopState:
    """Loop state before the first step, for one image (vmap it for a batch)."""
    return init_loop(program.make_optimizer(), program.loss(params, targets, weights), x0)


def advance(params, state: LoopState, targets: dict, weights: dict, num_steps: jax.Array,
            program: Program) -> tuple[LoopState, jax.Array]:
    """Up to ``program.chunk`` steps for one image (vmap it for a batch)."""
    return run_steps(program.make_optimizer(), program.loss(params, targets, weights), state, num_steps,
                     max_steps=program.chunk)


def terms_of(params, x: jax.Array, targets: dict, weights: dict, program: Program) -> dict:
    """The weighted terms at the iterate ``x`` (content, style, tv, range, total)."""
    return program.terms(params, targets, weights)(x)


def restarted(old: LoopState, new: LoopState) -> LoopState:
    """A loop state started afresh (``new``, e.g. with other loss weights) that keeps what ``old`` had
    done: its step count, and for a member stopped on a non-finite loss, its stop and last finite
    image (works for one image and for a batch)."""
    stopped = old.nonfinite.reshape(old.nonfinite.shape + (1,) * (old.x.ndim - old.nonfinite.ndim))
    return new._replace(steps=old.steps, nonfinite=old.nonfinite,
                        last_finite=jnp.where(stopped, old.last_finite, new.last_finite))


def resume_point(state: LoopState) -> jax.Array:
    """Where a restarted loop goes on from: the iterate, or a stopped member's last finite image."""
    stopped = state.nonfinite.reshape(state.nonfinite.shape + (1,) * (state.x.ndim - state.nonfinite.ndim))
    return jnp.where(stopped, state.last_finite, state.x)


init_state = jax.jit(start_state, static_argnames=("program",))
run_chunk = jax.jit(advance, static_argnames=("program",), donate_argnames=("state",))
evaluate = jax.jit(terms_of, static_argnames=("program",))


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a callback sees after each chunk of steps."""

    step: int
    total: int
    loss: float
    _x: jax.Array  # a copy of the iterate: the loop state's own buffers are donated to the next chunk
    _finish: Callable[[np.ndarray], np.ndarray] | None = None
    terms: dict | None = None  # the weighted terms at ``step`` (when the run tracks them)

    def image(self) -> np.ndarray:
        """The image at ``step``, float32 [H, W, 3] in [0, 1] (colours restored under
        ``preserve_colors``); valid for as long as this object is kept, also after later chunks."""
        image = np.asarray(jnp.clip(self._x, 0.0, 1.0))
        return image if self._finish is None else self._finish(image)


@dataclasses.dataclass(frozen=True)
class StyleResult:
    """image: float32 [H, W, 3] RGB in [0, 1]. loss_history: float32 [steps], the total
    loss before each step. status: "done", or "nonfinite" when a loss was NaN/inf (the
    image is then the last one with a finite loss). losses: weighted terms of the
    returned image (content, style, tv, range, total). term_history (with
    ``track_terms``): one dict of weighted terms per chunk of steps, with its "step"."""

    image: np.ndarray
    loss_history: np.ndarray
    status: str
    steps: int
    losses: dict
    seconds: float
    term_history: tuple = ()


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run: its image shape (h, w), its steps, the steps of the stages before it
    (``offset``), its size relative to the full size (``factor``), and whether it is the last."""

    index: int
    shape: tuple[int, int]
    iterations: int
    offset: int
    factor: float
    last: bool


def stages(height: int, width: int, config: StyleConfig) -> list[Stage]:
    """The stages of a run at ``height`` x ``width``: ``config.scales`` (``scale_iterations`` steps
    each), then the full size (``iterations`` steps)."""
    shapes = stage_shapes(height, width, config.scales)
    out = []
    for index, shape in enumerate(shapes):
        last = index == len(shapes) - 1
        out.append(Stage(index, shape, config.iterations if last else config.scale_iterations,
                         index * config.scale_iterations, shape[0] / height, last))
    return out


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Per member: the final image (clipped, at the full size), loss history over all stages,
    weighted terms of that image, and whether it stopped on a non-finite loss."""

    images: list[np.ndarray]
    histories: list[np.ndarray]
    terms: list[dict]
    stopped: np.ndarray


def run_stages(x: jax.Array, plan: list[Stage], *, targets_at: Callable[[Stage], dict],
               start_x: Callable[[jax.Array, Stage], jax.Array], init: Callable, advance: Callable,
               evaluate: Callable, chunk: int, period: int, members: int | None = None,
               on_chunk: Callable | None = None) -> Outcome:
    """Run the stages of ``plan`` from ``x`` and return the :class:`Outcome`.

    ``targets_at(stage)`` gives a stage's targets; ``start_x(x, stage)`` the stage's start from the
    previous result (resized, placed); ``init(x, targets)`` the loop state, ``advance(state,
    targets, n)`` up to ``chunk`` steps, ``evaluate(x, targets)`` the weighted terms. ``members``:
    None when these functions take one image, else the number of real members of the batch along
    their leading axis (more may follow: padding). ``on_chunk(step, state, last_losses, targets,
    stopped)`` runs after every chunk, ``step`` counted over all stages (it may return a new loop
    state to go on from, e.g. one started afresh with other loss weights); chunks end at every
    multiple of ``period`` global steps."""
    single = members is None
    count = 1 if single else members
    stopped = np.zeros(count, bool)
    histories: list[list[np.ndarray]] = [[] for _ in range(count)]
    images: list = [None] * count
    terms: list = [None] * count
    for stage in plan:
        targets = targets_at(stage)
        x = start_x(x, stage)
        state = init(x, targets)

        def report(done, st, last, stage=stage, targets=targets, stopped=stopped):
            return on_chunk(stage.offset + done, st, last, targets, stopped)

        state, history = drive(lambda st, n, targets=targets: advance(st, targets, n), state,
                               iterations=stage.iterations, chunk=chunk, period=period, offset=stage.offset,
                               on_chunk=report if on_chunk is not None else None)
        if single:
            failed = np.array([bool(state.nonfinite)])
            x = state.last_finite if failed[0] else state.x
            history, steps = history[None], [history.shape[-1]]
        else:
            nonfinite = np.asarray(state.nonfinite)
            failed = nonfinite[:count]
            x = jnp.where(jnp.asarray(nonfinite)[:, None, None, None], state.last_finite, state.x)
            steps = np.asarray(state.steps)[:count]
        if stage.last or failed.any():
            stage_terms = jax.tree.map(np.asarray, evaluate(x, targets))
            stage_images = np.asarray(jnp.clip(x, 0.0, 1.0))
            for i in np.flatnonzero(failed | stage.last):
                if not stopped[i]:
                    images[i] = stage_images if single else stage_images[i]
                    terms[i] = {k: float(v if single else v[i]) for k, v in stage_terms.items()}
        for i in np.flatnonzero(~stopped):
            histories[i].append(history[i, : steps[i]])
        del state, targets, report  # before the next stage's are made: a stage's memory at a time
        stopped |= failed
        if stopped.all():
            break
    full = plan[-1].shape
    images = [im if im.shape[:2] == tuple(full) else np.asarray(resize(jnp.asarray(im), full))  # a coarse stop
              for im in images]
    return Outcome(images=images, histories=[np.concatenate(h) for h in histories], terms=terms, stopped=stopped)


def drive(run: Callable[[LoopState, jax.Array], tuple[LoopState, jax.Array]], state: LoopState, *,
          iterations: int, chunk: int, period: int | None = None, offset: int = 0,
          on_chunk: Callable[[int, LoopState, np.ndarray], LoopState | None] | None = None
          ) -> tuple[LoopState, np.ndarray]:
    """Run ``iterations`` steps as compiled chunks of at most ``chunk`` steps.

    Works for one image (losses [n]) and for a vmapped batch (losses [B, n]). Returns the
    final state and the loss history [..., steps] (NaN after a member stopped on a non-finite
    loss). ``on_chunk(steps_done, state, last_finite_losses)`` runs after every chunk; a state it
    returns replaces the loop's (the steps already done still count). Chunks
    also end at every multiple of ``period`` (default ``chunk``) of the run's global step count,
    ``offset + steps_done``, so that callbacks of a multi-stage run fall on the same global steps
    whatever each stage's length (``--save-every``). Stops early once every member has stopped.
    """
    period = chunk if period is None else max(1, int(period))
    history = []
    done = 0
    while done < iterations:
        n = min(chunk, iterations - done, period - (offset + done) % period)
        state, losses = run(state, jnp.int32(n))
        losses = np.asarray(losses)[..., :n]
        history.append(losses)
        done += n
        if on_chunk is not None:
            replaced = on_chunk(done, state, last_finite(np.concatenate(history, axis=-1)))
            if replaced is not None:
                state = replaced
        if bool(np.all(np.asarray(state.nonfinite))):
            break
    if not history:
        return state, np.zeros(np.shape(state.steps) + (0,), np.float32)
    history = np.concatenate(history, axis=-1)
    if history.ndim == 1:  # one image: drop the NaNs after a failure
        history = history[: int(state.steps)]
    return state, history


def last_finite(losses: np.ndarray) -> np.ndarray:
    """The last finite value along the last axis (NaN where there is none)."""
    finite = np.isfinite(losses)
    index = np.where(finite.any(-1), losses.shape[-1] - 1 - np.argmax(finite[..., ::-1], -1), 0)
    return np.where(finite.any(-1), np.take_along_axis(losses, index[..., None], -1)[..., 0], np.nan)
