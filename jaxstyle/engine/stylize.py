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
from jaxstyle.model.vgg import (
    CONV_KERNEL_SHAPES,
    LAYER_INDEX,
    VGG19,
    Preprocessing,
    VGG19Features,
    canonical_layer,
    check_image_size,
    preprocess,
    with_winograd_kernels,
)
from jaxstyle.objective import color
from jaxstyle.objective.losses import (
    gram_matrix,
    masked_gram_matrix,
    normalized_gradient,
    total_variation,
    weighted_content_loss,
    weighted_style_loss,
)
from jaxstyle.objective.masks import layer_masks, region_masks
from jaxstyle.optim.loop import LoopState, Optimizer, init_loop, make_optimizer, run_steps

RANGE_PENALTY = 1e3


# Layers where Winograd F(4x4, 3x3) measured at least 15% faster than lax.conv on XLA:CPU
# (forward + input gradient, at 512x384 and 256x192: benchmarks/conv_layers.py, table in
# benchmarks/README.md): those with 256 or more input channels.
CPU_WINOGRAD_LAYERS = tuple(n for n, shape in CONV_KERNEL_SHAPES.items() if shape[2] >= 256)


def winograd_layers(mode: str, layers: tuple[str, ...], platform: str, precision: str = "float32"
                    ) -> tuple[str, ...]:
    """The conv layers (up to the deepest of ``layers``) that ``conv=mode`` computes by Winograd.
    Never in bfloat16: the transforms' coefficients (up to 8 and 1/24) cost more than its 8-bit
    mantissa can spare (``conv="winograd"`` with bfloat16 is refused by StyleConfig)."""
    if precision != "float32":
        return ()
    deepest = max(LAYER_INDEX[canonical_layer(n)] for n in layers)
    convs = [n for n in CONV_KERNEL_SHAPES if LAYER_INDEX[n] <= deepest]
    if mode == "winograd":
        return tuple(n for n in convs if n != "conv1_1")  # 3 input channels: nothing to gain
    if mode == "auto" and platform == "cpu":
        return tuple(n for n in convs if n in CPU_WINOGRAD_LAYERS)
    return ()


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
    normalize_gradients: bool = False
    winograd_layers: tuple[str, ...] = ()

    @classmethod
    def build(cls, config: StyleConfig, vgg: VGG19, callback_every: int) -> _Program:
        """The program of a run whose loop is compiled in chunks of ``callback_every`` steps."""
        if int(callback_every) < 1:
            raise ValueError(f"expected callback_every >= 1, got {callback_every!r}")
        longest_stage = max(config.iterations, config.scale_iterations if config.scales else 0, 1)
        return cls(config.content_layers, config.style_layers, vgg.pooling, vgg.preprocessing, config.optimizer,
                   config.learning_rate, config.lbfgs_memory, chunk=int(min(callback_every, longest_stage)),
                   precision=config.precision, remat=config.remat,
                   normalize_gradients=config.normalize_gradients,
                   winograd_layers=winograd_layers(config.conv, config.all_layers, jax.default_backend(),
                                                   config.precision))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))

    def params(self, vgg: VGG19) -> dict:
        """The network's parameters as this program's layers need them (with the Winograd
        kernels of ``winograd_layers``, transformed here, once per run)."""
        return with_winograd_kernels(vgg.params, self.winograd_layers) if self.winograd_layers else vgg.params

    def make_optimizer(self) -> Optimizer:
        return make_optimizer(self.optimizer, learning_rate=self.learning_rate, memory=self.lbfgs_memory)


def _features(params, image: jax.Array, program: _Program, layers: tuple[str, ...]) -> dict:
    """Features of one image [H, W, 3] in [0, 1]: {layer: [h, w, C]}."""
    net = VGG19Features(layers=layers, pooling=program.pooling, dtype=jnp.dtype(program.precision),
                        remat=program.remat, winograd_layers=program.winograd_layers)
    feats = net.apply({"params": params}, preprocess(image, program.prep)[None])
    return {k: v[0] for k, v in feats.items()}


def content_targets(params, content: jax.Array, program: _Program) -> dict:
    """Content features of one image [H, W, 3]: {layer: [h, w, C]}."""
    return _features(params, content, program, program.content_layers)


def style_targets(params, style: jax.Array, program: _Program, mask: jax.Array | None = None) -> dict:
    """Style Gram matrices of one image (any size): {layer: [C, C]}; with ``mask`` [H, W]
    (the style image's own mask) the Gram matrices of that region only."""
    feats = _features(params, style, program, program.style_layers)
    if mask is None:
        return {k: gram_matrix(v) for k, v in feats.items()}
    masks = layer_masks(mask[None], program.style_layers)
    return {k: masked_gram_matrix(v, masks[k][0]) for k, v in feats.items()}


content_targets_jit = jax.jit(content_targets, static_argnames=("program",))
style_targets_jit = jax.jit(style_targets, static_argnames=("program",))


@partial(jax.jit, static_argnames=("program",))
def compute_targets(params, content: jax.Array, style: jax.Array, *, program: _Program) -> dict:
    """Content features and style Gram matrices, computed once per pair."""
    return {"content": content_targets(params, content, program),
            "style": style_targets(params, style, program)}


def loss_terms(params, x: jax.Array, targets: dict, weights: dict, program: _Program) -> dict:
    """Weighted objective terms at the iterate ``x`` (see module docstring)."""
    image = jnp.clip(x, 0.0, 1.0)
    feats = _features(params, image, program, program.layers)
    content_feats = style_feats = feats
    if program.normalize_gradients:  # each layer's gradient scaled to L1 norm = its weight
        scales = weights["content_weight"] * weights["content_layer_weights"]
        content_feats = {n: normalized_gradient(feats[n], scales[i]) for i, n in enumerate(program.content_layers)}
        scales = weights["style_weight"] * weights["style_layer_weights"]
        style_feats = {n: normalized_gradient(feats[n], scales[i]) for i, n in enumerate(program.style_layers)}
    content = weighted_content_loss(content_feats, targets["content"], program.content_layers,
                                    weights["content_layer_weights"])
    style = weighted_style_loss(style_feats, targets["style"], program.style_layers, weights["style_layer_weights"],
                                masks=targets.get("masks"))
    outside = x - image
    terms = {"content": weights["content_weight"] * content,
             "style": weights["style_weight"] * style,
             "tv": weights["tv_weight"] * total_variation(image),
             "range": RANGE_PENALTY * jnp.sum(outside * outside)}
    terms["total"] = terms["content"] + terms["style"] + terms["tv"] + terms["range"]
    return terms


def _optimizer_and_loss(params, targets, weights, program: _Program):
    return program.make_optimizer(), lambda x: loss_terms(params, x, targets, weights, program)["total"]


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
    _x: jax.Array  # a copy of the iterate: the loop state's own buffers are donated to the next chunk
    _finish: Callable[[np.ndarray], np.ndarray] | None = None

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


def _check_image(array: ArrayLike, what: str) -> jax.Array:
    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected {what} as float [H, W, 3] RGB, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"expected {what} values in [0, 1], got range "
                         f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
    return jnp.asarray(np.clip(a, 0.0, 1.0))


def _check_mask(array: ArrayLike, what: str) -> np.ndarray:
    """A mask [H, W] (or an RGB image, taken by luminance) with values in [0, 1]."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = color.luminance(a).astype(np.float32)
    if a.ndim != 2 or not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"expected {what} as float [H, W] in [0, 1], got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)


def loss_weights(config: StyleConfig) -> dict:
    return {"content_weight": jnp.float32(config.content_weight),
            "style_weight": jnp.float32(config.style_weight),
            "tv_weight": jnp.float32(config.tv_weight),
            "content_layer_weights": jnp.asarray(config.content_layer_weights, jnp.float32),
            "style_layer_weights": jnp.asarray(config.style_layer_weights, jnp.float32)}


def initial_image(content: jax.Array, config: StyleConfig, init_image: ArrayLike | None = None,
                  style: jax.Array | None = None, seed: int | None = None) -> jax.Array:
    """The start of the optimisation: ``init_image``, or ``config.init`` (content, noise, or
    ``style`` resized to the content's shape), mixed with uniform noise by ``config.init_noise_blend``."""
    seed = config.seed if seed is None else seed
    noise = lambda: jax.random.uniform(jax.random.key(seed), content.shape, jnp.float32)  # noqa: E731
    if init_image is not None:
        start = _check_image(init_image, "init image")
        if start.shape != content.shape:
            raise ValueError(f"expected init image of shape {content.shape}, got {start.shape}")
    elif config.init == "noise":
        return noise()
    elif config.init == "style":
        if style is None:
            raise ValueError("expected a style image for init='style'")
        start = resize(jnp.asarray(style), content.shape[:2])
    else:
        start = jnp.asarray(content)
    if config.init_noise_blend:
        start = (1.0 - config.init_noise_blend) * start + config.init_noise_blend * noise()
    return start


def stage_shapes(height: int, width: int, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(h, w) of each coarse-to-fine stage: ``scales`` as longest sides, then the full size."""
    longest = max(height, width)
    if scales and scales[-1] >= longest:
        raise ValueError(f"expected coarse scales smaller than the output's longest side {longest} px, "
                         f"got {', '.join(map(str, scales))}")
    return [(max(1, round(height * s / longest)), max(1, round(width * s / longest))) for s in scales] + [
        (height, width)]


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Lanczos resize of [H, W, C] in [0, 1] to ``shape`` (antialiased when shrinking), clipped to [0, 1]."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    return jnp.clip(jax.image.resize(image, (*shape, image.shape[-1]), "lanczos3"), 0.0, 1.0)


def resize_mask(mask: ArrayLike, shape: tuple[int, int]) -> jax.Array:
    """Resize a mask [H, W] in [0, 1] to ``shape`` with a filter that cannot overshoot (linear,
    antialiased when shrinking: non-negative weights), so a hard edge between two grey levels
    gets only values between them. Lanczos would ring there, and with three or more styles the
    overshoot lands on another style's grey (a band of it along every edge)."""
    mask = jnp.asarray(mask, jnp.float32)
    if tuple(mask.shape) == tuple(shape):
        return mask
    return jnp.clip(jax.image.resize(mask, tuple(shape), "linear", antialias=True), 0.0, 1.0)


def _scaled(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def _styles(style) -> list:
    """One style image [H, W, 3] or a sequence of them -> a list."""
    if isinstance(style, (list, tuple)):
        return list(style)
    a = np.asarray(style)
    return [a] if a.ndim == 3 else list(a)


def _checked_inputs(content, style, config: StyleConfig, content_mask, style_masks):
    """Checked inputs of a pair: (original content, content to optimise (colour mode applied),
    style images, style masks, content mask, blend weights)."""
    original = np.asarray(_check_image(content, "content image"))
    styles = [np.asarray(_check_image(s, f"style image {i + 1}" if i else "style image"))
              for i, s in enumerate(_styles(style))]
    if not styles:
        raise ValueError("expected at least one style image, got none")
    style_masks = [None] * len(styles) if style_masks is None else list(style_masks)
    if len(style_masks) != len(styles):
        raise ValueError(f"expected {len(styles)} style masks (one per style image), got {len(style_masks)}")
    style_masks = [None if m is None else _check_mask(m, f"style mask {i + 1}") for i, m in enumerate(style_masks)]
    if content_mask is not None:
        if config.style_blend is not None:
            raise ValueError("give a content mask or style blend weights, not both: the mask decides "
                             "which style goes where")
        if len(styles) < 2:
            raise ValueError(f"expected a content mask to split the image between at least 2 styles, "
                             f"got {len(styles)}")
        content_mask = _check_mask(content_mask, "content mask")
    blend = jnp.asarray(config.blend_weights(len(styles)), jnp.float32)
    content_opt, styles = color.prepare(original, styles, config.preserve_colors)
    return original, content_opt, styles, style_masks, content_mask, blend


def restore_colors(image: np.ndarray, original: np.ndarray, preserve_colors: str | None) -> np.ndarray:
    """The optimised image [h, w, 3] with the content's colours put back (``preserve_colors=
    "luminance"`` optimises luminance only), at the image's size; otherwise the image itself."""
    if preserve_colors != "luminance":
        return image
    return color.finish(image, np.asarray(resize(jnp.asarray(original), image.shape[:2])), "luminance")


def blended_grams(blend, grams: list[dict]) -> dict:
    """The style images' Gram matrices mixed by ``blend`` (one weight per image, summing to 1):
    {layer: [C, C]}. One image's are returned as they are (its weight is 1)."""
    return grams[0] if len(grams) == 1 else _blend(jnp.asarray(blend, jnp.float32), grams)


@jax.jit
def _blend(blend: jax.Array, grams: list[dict]) -> dict:
    return jax.tree.map(lambda *g: sum(blend[i] * gi for i, gi in enumerate(g)), *grams)


def _stage_targets(params, content_opt, styles, style_masks, content_mask, blend, program: _Program,
                   shape: tuple[int, int], factor: float, place=lambda a: a) -> dict:
    """Content features and style Grams of one stage at ``shape`` (h, w); styles scaled by ``factor``."""
    content_targets_ = content_targets_jit(params, place(resize(jnp.asarray(content_opt), shape)), program=program)
    grams = []
    for s, m in zip(styles, style_masks):
        style_shape = _scaled(s.shape, factor)
        mask = None if m is None else resize_mask(m, style_shape)
        grams.append(style_targets_jit(params, resize(jnp.asarray(s), style_shape), program=program, mask=mask))
    if content_mask is None:
        return {"content": content_targets_, "style": blended_grams(blend, grams)}
    stage_regions = region_masks(np.asarray(resize_mask(content_mask, shape)), len(styles))
    return {"content": content_targets_, "style": jax.tree.map(lambda *g: jnp.stack(g), *grams),
            "masks": layer_masks(stage_regions, program.style_layers)}


def stylize(content: ArrayLike, style: ArrayLike | list[ArrayLike], *, config: StyleConfig = StyleConfig(),
            vgg: VGG19 | None = None, init_image: ArrayLike | None = None,
            callback: Callable[[Progress], None] | None = None, callback_every: int = 50,
            mesh: jax.sharding.Mesh | None = None, content_mask: ArrayLike | None = None,
            style_masks: list[ArrayLike | None] | None = None, track_terms: bool = False) -> StyleResult:
    """Render ``content`` in the style of ``style``.

    content: float32 [H, W, 3] RGB in [0, 1]. style: one such image (any size) or a list of
      them; several styles are blended with ``config.style_blend`` (their Gram matrices are).
    vgg: loaded network (default: :func:`jaxstyle.load_vgg19` with cached weights).
    init_image: optional start image, shape of content (overrides ``config.init``).
    callback: called after every ``callback_every`` steps of each stage and at the end.
    mesh: a 2-D ``("height", "width")`` mesh (:func:`jaxstyle.engine.sharding.spatial_mesh`) to split
      the image over several devices, for images beyond one device's memory.
    content_mask: [H, W] grey levels in [0, 1] (any size; resized to the content's) that give
      each region of the output its own style image, instead of blending them
      (:mod:`jaxstyle.objective.masks`: with two styles, white takes the first, black the second).
    style_masks: one mask (or None) per style image, [h, w] of that style image: the part of
      it whose statistics count (white: use).
    track_terms: also record the weighted loss terms after every chunk (``term_history``).

    With ``config.scales`` the run is coarse-to-fine: content and style are both shrunk by
    each stage's factor (the style keeps its size relative to the output), and every stage
    starts from the previous stage's result, upsampled. ``loss_history`` then holds every
    stage's losses in order (each at its own resolution); ``losses`` are the full size's.
    """
    if vgg is None:
        from jaxstyle.weights.fetch import load_vgg19

        vgg = load_vgg19()
    original, content_opt, styles, style_masks, content_mask, blend = _checked_inputs(
        content, style, config, content_mask, style_masks)
    if init_image is not None and config.preserve_colors == "luminance":
        init_image = color.grey(color.luminance(_check_image(init_image, "init image")))

    shapes = stage_shapes(*original.shape[:2], config.scales)
    for h, w in shapes:
        at = "" if (h, w) == shapes[-1] else f" at the {max(h, w)} px scale"
        check_image_size(h, w, config.all_layers, f"content image{at}")
        for i, s in enumerate(styles):
            check_image_size(*_scaled(s.shape, h / original.shape[0]), config.style_layers,
                             f"style image{f' {i + 1}' if i else ''}{at}")
    program = _Program.build(config, vgg, callback_every)
    start = time.perf_counter()
    params = program.params(vgg)
    weights = loss_weights(config)
    total = config.total_iterations
    x = initial_image(jnp.asarray(content_opt), config, init_image, style=jnp.asarray(styles[0]))
    if mesh is not None:
        from jaxstyle.engine.sharding import replicate, shard_spatially

        params, weights = replicate((params, weights), mesh)
        place = partial(shard_spatially, mesh=mesh)
    else:
        place = lambda a: a  # noqa: E731

    finish = partial(restore_colors, original=original, preserve_colors=config.preserve_colors)

    histories, term_history = [], []
    for index, (h, w) in enumerate(shapes):
        targets = _stage_targets(params, content_opt, styles, style_masks, content_mask, blend, program, (h, w),
                                 h / original.shape[0], place)
        x = place(resize(jnp.clip(x, 0.0, 1.0), (h, w)) if index else resize(x, (h, w)))
        state = init_state(params, x, targets, weights, program=program)
        offset = sum(len(hist) for hist in histories)
        iterations = config.iterations if index == len(shapes) - 1 else config.scale_iterations

        def on_chunk(done, st, last, offset=offset, targets=targets):
            if track_terms:
                terms = evaluate(params, st.x, targets, weights, program=program)
                term_history.append({"step": offset + done, **{k: float(v) for k, v in terms.items()}})
            if callback is not None:
                callback(Progress(offset + done, total, float(last), jnp.copy(st.x), finish))

        state, history = drive(lambda st, n, targets=targets: run_chunk(params, st, targets, weights, n,
                                                                        program=program),
                               state, iterations=iterations, chunk=program.chunk, period=callback_every,
                               offset=offset, on_chunk=on_chunk if callback is not None or track_terms else None)
        histories.append(history)
        failed = bool(state.nonfinite)
        x = state.last_finite if failed else state.x
        if failed:
            break
    terms = {k: float(v) for k, v in evaluate(params, x, targets, weights, program=program).items()}
    image = np.asarray(jnp.clip(x, 0.0, 1.0))
    if failed and image.shape != original.shape:  # stopped at a coarse stage: still return the full size
        image = np.asarray(resize(jnp.asarray(image), original.shape[:2]))
    image = finish(image)
    history = np.concatenate(histories)
    return StyleResult(image=image, loss_history=history, status="nonfinite" if failed else "done",
                       steps=len(history), losses=terms, seconds=time.perf_counter() - start,
                       term_history=tuple(term_history))


def drive(run: Callable[[LoopState, jax.Array], tuple[LoopState, jax.Array]], state: LoopState, *,
          iterations: int, chunk: int, period: int | None = None, offset: int = 0,
          on_chunk: Callable[[int, LoopState, np.ndarray], None] | None = None) -> tuple[LoopState, np.ndarray]:
    """Run ``iterations`` steps as compiled chunks of at most ``chunk`` steps.

    Works for one image (losses [n]) and for a vmapped batch (losses [B, n]). Returns the
    final state and the loss history [..., steps] (NaN after a member stopped on a non-finite
    loss). ``on_chunk(steps_done, state, last_finite_losses)`` runs after every chunk. Chunks
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
