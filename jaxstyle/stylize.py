"""Neural style transfer of one (content, style) pair: Gatys, Ecker & Bethge,
"Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016).

The image is optimised directly. Targets (content features, style Gram matrices)
are computed once; the step loop is compiled and runs in chunks of
``callback_every`` steps so that progress reports and intermediate saves cost no
per-step Python. Every compiled function is jitted once at module level with
its static options in a hashable :class:`_Program`, so a second call with the
same shapes and options does not recompile; the loss weights are traced
arguments and may change freely.

Valid pixel range: the optimisation variable ``x`` is unconstrained, the network
sees ``clip(x, 0, 1)``, and a penalty ``RANGE_PENALTY * sum((x - clip(x))^2)``
pulls pixels that overshoot back (their loss gradient is zero out there). The
image that is scored and returned is always ``clip(x, 0, 1)``. Unlike clipping
after each step, this keeps L-BFGS's curvature pairs and line-search values
consistent with the function it minimises.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig
from jaxstyle.losses import gram_matrix, total_variation, weighted_content_loss, weighted_style_loss
from jaxstyle.optimize import LoopState, init_loop, make_optimizer, run_steps
from jaxstyle.vgg import VGG19, Preprocessing, VGG19Features, check_image_size, preprocess

RANGE_PENALTY = 1e3


@dataclasses.dataclass(frozen=True)
class _Program:
    """The static (compile-time) part of a run; hashable, used as a jit static arg."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str
    prep: Preprocessing
    optimizer: str
    learning_rate: float
    lbfgs_memory: int
    chunk: int
    precision: str = "float32"
    remat: bool = False

    @classmethod
    def build(cls, config: StyleConfig, vgg: VGG19, callback_every: int) -> _Program:
        """The program of a run whose loop is compiled in chunks of ``callback_every`` steps."""
        if int(callback_every) < 1:
            raise ValueError(f"expected callback_every >= 1, got {callback_every!r}")
        longest_stage = max(config.iterations, config.scale_iterations if config.scales else 0, 1)
        return cls(config.content_layers, config.style_layers, vgg.pooling, vgg.preprocessing, config.optimizer,
                   config.learning_rate, config.lbfgs_memory, chunk=int(min(callback_every, longest_stage)),
                   precision=config.precision, remat=config.remat)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))


def _features(params, image: jax.Array, program: _Program, layers: tuple[str, ...]) -> dict:
    """Features of one image [H, W, 3] in [0, 1]: {layer: [h, w, C]}."""
    net = VGG19Features(layers=layers, pooling=program.pooling, dtype=jnp.dtype(program.precision),
                        remat=program.remat)
    feats = net.apply({"params": params}, preprocess(image, program.prep)[None])
    return {k: v[0] for k, v in feats.items()}


def content_targets(params, content: jax.Array, program: _Program) -> dict:
    """Content features of one image [H, W, 3]: {layer: [h, w, C]}."""
    return _features(params, content, program, program.content_layers)


def style_targets(params, style: jax.Array, program: _Program) -> dict:
    """Style Gram matrices of one image (any size): {layer: [C, C]}."""
    return {k: gram_matrix(v) for k, v in _features(params, style, program, program.style_layers).items()}


@partial(jax.jit, static_argnames=("program",))
def compute_targets(params, content: jax.Array, style: jax.Array, *, program: _Program) -> dict:
    """Content features and style Gram matrices, computed once per pair."""
    return {"content": content_targets(params, content, program),
            "style": style_targets(params, style, program)}


def loss_terms(params, x: jax.Array, targets: dict, weights: dict, program: _Program) -> dict:
    """Weighted objective terms at the iterate ``x`` (see module docstring)."""
    image = jnp.clip(x, 0.0, 1.0)
    feats = _features(params, image, program, program.layers)
    content = weighted_content_loss(feats, targets["content"], program.content_layers,
                                    weights["content_layer_weights"])
    style = weighted_style_loss(feats, targets["style"], program.style_layers,
                                weights["style_layer_weights"])
    outside = x - image
    terms = {"content": weights["content_weight"] * content,
             "style": weights["style_weight"] * style,
             "tv": weights["tv_weight"] * total_variation(image),
             "range": RANGE_PENALTY * jnp.sum(outside * outside)}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"] + terms["range"]
    return terms


def _optimizer_and_loss(params, targets, weights, program: _Program):
    optimizer = make_optimizer(program.optimizer, learning_rate=program.learning_rate,
                               memory=program.lbfgs_memory)
    return optimizer, lambda x: loss_terms(params, x, targets, weights, program)["total"]


def start_state(params, x0: jax.Array, targets: dict, weights: dict, program: _Program) -> LoopState:
    """Loop state before the first step, for one image (vmap it for a batch)."""
    optimizer, loss_fn = _optimizer_and_loss(params, targets, weights, program)
    return init_loop(optimizer, loss_fn, x0)


def advance(params, state: LoopState, targets: dict, weights: dict, num_steps: jax.Array,
            program: _Program) -> tuple[LoopState, jax.Array]:
    """Up to ``program.chunk`` steps for one image (vmap it for a batch)."""
    optimizer, loss_fn = _optimizer_and_loss(params, targets, weights, program)
    return run_steps(optimizer, loss_fn, state, num_steps, max_steps=program.chunk)


init_state = jax.jit(start_state, static_argnames=("program",))
run_chunk = jax.jit(advance, static_argnames=("program",), donate_argnames=("state",))
evaluate = jax.jit(loss_terms, static_argnames=("program",))


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a callback sees after each chunk of steps."""

    step: int
    total: int
    loss: float
    _state: LoopState

    def image(self) -> np.ndarray:
        """The current image, float32 [H, W, 3] in [0, 1]."""
        return np.asarray(jnp.clip(self._state.x, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class StyleResult:
    """image: float32 [H, W, 3] RGB in [0, 1]. loss_history: float32 [steps], the total
    loss before each step. status: "done", or "nonfinite" when a loss was NaN/inf (the
    image is then the last one with a finite loss). losses: weighted terms of the
    returned image (content, style, tv, range, total)."""

    image: np.ndarray
    loss_history: np.ndarray
    status: str
    steps: int
    losses: dict
    seconds: float


def _check_image(array: ArrayLike, what: str) -> jax.Array:
    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected {what} as float [H, W, 3] RGB, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"expected {what} values in [0, 1], got range "
                         f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
    return jnp.asarray(np.clip(a, 0.0, 1.0))


def loss_weights(config: StyleConfig) -> dict:
    return {"content_weight": jnp.float32(config.content_weight),
            "style_weight": jnp.float32(config.style_weight),
            "tv_weight": jnp.float32(config.tv_weight),
            "content_layer_weights": jnp.asarray(config.content_layer_weights, jnp.float32),
            "style_layer_weights": jnp.asarray(config.style_layer_weights, jnp.float32)}


def initial_image(content: jax.Array, config: StyleConfig, init_image: ArrayLike | None) -> jax.Array:
    if init_image is not None:
        init = _check_image(init_image, "init image")
        if init.shape != content.shape:
            raise ValueError(f"expected init image of shape {content.shape}, got {init.shape}")
        return init
    if config.init == "noise":
        return jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32)
    return content


def stage_shapes(height: int, width: int, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(h, w) of each coarse-to-fine stage: ``scales`` as longest sides, then the full size."""
    longest = max(height, width)
    if scales and scales[-1] >= longest:
        raise ValueError(f"expected coarse scales smaller than the output's longest side {longest} px, "
                         f"got {', '.join(map(str, scales))}")
    return [(max(1, round(height * s / longest)), max(1, round(width * s / longest))) for s in scales] + [
        (height, width)]


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Lanczos resize of [H, W, 3] in [0, 1] to ``shape`` (antialiased when shrinking), clipped to [0, 1]."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    return jnp.clip(jax.image.resize(image, (*shape, image.shape[-1]), "lanczos3"), 0.0, 1.0)


def stylize(content: ArrayLike, style: ArrayLike, *, config: StyleConfig = StyleConfig(),
            vgg: VGG19 | None = None, init_image: ArrayLike | None = None,
            callback: Callable[[Progress], None] | None = None,
            callback_every: int = 50, mesh: jax.sharding.Mesh | None = None) -> StyleResult:
    """Render ``content`` in the style of ``style``.

    content, style: float32 [H, W, 3] RGB in [0, 1] (sizes may differ).
    vgg: loaded network (default: :func:`jaxstyle.load_vgg19` with cached weights).
    init_image: optional start image, shape of content (overrides ``config.init``).
    callback: called after every ``callback_every`` steps of each stage and at the end.
    mesh: a 2-D ``("height", "width")`` mesh (:func:`jaxstyle.sharding.spatial_mesh`) to split
      the image over several devices, for images beyond one device's memory.

    With ``config.scales`` the run is coarse-to-fine: content and style are both shrunk by
    each stage's factor (the style keeps its size relative to the output), and every stage
    starts from the previous stage's result, upsampled. ``loss_history`` then holds every
    stage's losses in order (each at its own resolution); ``losses`` are the full size's.
    """
    if vgg is None:
        from jaxstyle.fetch import load_vgg19

        vgg = load_vgg19()
    content = _check_image(content, "content image")
    style = _check_image(style, "style image")
    shapes = stage_shapes(*content.shape[:2], config.scales)
    for h, w in shapes:
        at = "" if (h, w) == shapes[-1] else f" at the {max(h, w)} px scale"
        check_image_size(h, w, config.all_layers, f"content image{at}")
        factor = h / content.shape[0]
        check_image_size(max(1, round(style.shape[0] * factor)), max(1, round(style.shape[1] * factor)),
                         config.style_layers, f"style image{at}")
    program = _Program.build(config, vgg, callback_every)
    start = time.perf_counter()
    params = vgg.params
    weights = loss_weights(config)
    total = config.total_iterations
    x = initial_image(content, config, init_image)
    if mesh is not None:
        from jaxstyle.sharding import replicate, shard_spatially

        params, weights, style = replicate((params, weights, style), mesh)
        place = partial(shard_spatially, mesh=mesh)
    else:
        place = lambda a: a  # noqa: E731
    histories = []
    for index, (h, w) in enumerate(shapes):
        factor = h / content.shape[0]
        style_shape = (max(1, round(style.shape[0] * factor)), max(1, round(style.shape[1] * factor)))
        targets = compute_targets(params, place(resize(content, (h, w))), resize(style, style_shape),
                                  program=program)
        x = place(resize(jnp.clip(x, 0.0, 1.0), (h, w)) if index else resize(x, (h, w)))
        state = init_state(params, x, targets, weights, program=program)
        offset = sum(len(hist) for hist in histories)
        iterations = config.iterations if index == len(shapes) - 1 else config.scale_iterations
        state, history = drive(lambda st, n, targets=targets: run_chunk(params, st, targets, weights, n,
                                                                        program=program),
                               state, iterations=iterations, chunk=program.chunk,
                               on_chunk=None if callback is None else (
                                   lambda done, st, last, offset=offset: callback(
                                       Progress(offset + done, total, float(last), st))))
        histories.append(history)
        failed = bool(state.nonfinite)
        x = state.last_finite if failed else state.x
        if failed:
            break
    terms = {k: float(v) for k, v in evaluate(params, x, targets, weights, program=program).items()}
    image = np.asarray(jnp.clip(x, 0.0, 1.0))
    if failed and image.shape != content.shape:  # stopped at a coarse stage: still return the full size
        image = np.asarray(resize(jnp.asarray(image), content.shape[:2]))
    history = np.concatenate(histories)
    return StyleResult(image=image, loss_history=history, status="nonfinite" if failed else "done",
                       steps=len(history), losses=terms, seconds=time.perf_counter() - start)


def drive(run: Callable[[LoopState, jax.Array], tuple[LoopState, jax.Array]], state: LoopState, *,
          iterations: int, chunk: int,
          on_chunk: Callable[[int, LoopState, np.ndarray], None] | None = None) -> tuple[LoopState, np.ndarray]:
    """Run ``iterations`` steps as compiled chunks of ``chunk`` steps.

    Works for one image (losses [n]) and for a vmapped batch (losses [B, n]). Returns the
    final state and the loss history [..., steps] (NaN after a member stopped on a non-finite
    loss). ``on_chunk(steps_done, state, last_finite_losses)`` runs between chunks. Stops early
    once every member has stopped.
    """
    history = []
    done = 0
    while done < iterations:
        n = min(chunk, iterations - done)
        state, losses = run(state, jnp.int32(n))
        losses = np.asarray(losses)[..., :n]
        history.append(losses)
        done += n
        if on_chunk is not None:
            on_chunk(done, state, _last_finite(np.concatenate(history, axis=-1)))
        if bool(np.all(np.asarray(state.nonfinite))):
            break
    if not history:
        return state, np.zeros(np.shape(state.steps) + (0,), np.float32)
    history = np.concatenate(history, axis=-1)
    if history.ndim == 1:  # one image: drop the NaNs after a failure
        history = history[: int(state.steps)]
    return state, history


def _last_finite(losses: np.ndarray) -> np.ndarray:
    """The last finite value along the last axis (NaN where there is none)."""
    finite = np.isfinite(losses)
    index = np.where(finite.any(-1), losses.shape[-1] - 1 - np.argmax(finite[..., ::-1], -1), 0)
    return np.where(finite.any(-1), np.take_along_axis(losses, index[..., None], -1)[..., 0], np.nan)
