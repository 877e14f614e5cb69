"""Options of a style-transfer run, as one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from jaxstyle.model.vgg import canonical_layer

OPTIMIZERS = ("lbfgs", "jaxopt-lbfgs", "adam")
INITS = ("content", "noise", "style")
COLOR_MODES = ("luminance", "histogram")
PRECISIONS = ("float32", "bfloat16")
CONV_MODES = ("auto", "direct", "winograd")
STYLE_LOSSES = ("gram", "w2", "sliced")

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Per-optimizer step sizes for the image in [0, 1] units (L-BFGS uses a line search
# and takes its learning rate only as the initial step scale of optax's Adam).
DEFAULT_LEARNING_RATE = {"adam": 0.02, "lbfgs": 1.0, "jaxopt-lbfgs": 1.0}


def _layers(names, what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = tuple(n for n in names.split(",") if n)
    names = tuple(canonical_layer(n.strip()) for n in names)
    if not names:
        raise ValueError(f"expected at least one {what} layer, got none")
    if len(set(names)) != len(names):
        raise ValueError(f"expected distinct {what} layers, got {', '.join(names)}")
    return names


def _is_optimizer_object(value) -> bool:
    """An optax GradientTransformation (``init``, ``update``) or a jaxstyle Optimizer (``init``,
    ``step``), told by their functions: the config sits below the optimizers and imports none."""
    return callable(getattr(value, "init", None)) and (callable(getattr(value, "update", None))
                                                       or callable(getattr(value, "step", None)))


def optimizer_name(optimizer) -> str:
    """A name for reports and logs: the optimizer's name, or the kind of object it is."""
    if isinstance(optimizer, str):
        return optimizer
    return getattr(optimizer, "name", None) or f"optax {type(optimizer).__name__}"


SEED_RANGE = (-(2**63), 2**63)  # the seeds jax.random.key takes: 64-bit integers


def is_seed(value) -> bool:
    """True for an integer (or integral float) that jax.random.key takes."""
    return is_integer(value) and SEED_RANGE[0] <= int(value) < SEED_RANGE[1]


def is_integer(value) -> bool:
    """True for ints and integral finite floats (not bools, NaN, inf or strings)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or (math.isfinite(value) and int(value) == value)


def _number(value, name: str) -> float:
    """``value`` as a float; ValueError naming the option for what is not a real number."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"expected {name} to be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected {name} to be a number, got {value!r}") from None


def normalized_blend(weights) -> tuple[float, ...]:
    """Style blend weights scaled to sum to 1; ValueError unless finite, >= 0, with a positive sum."""
    try:
        blend = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise ValueError(f"expected style_blend to be a list of numbers, got {weights!r}") from None
    if not blend or any(not w >= 0 or w == float("inf") for w in blend) or sum(blend) <= 0:
        raise ValueError(f"expected style_blend to be finite weights >= 0 with a positive sum, got {weights!r}")
    return tuple(w / sum(blend) for w in blend)


def blend_weights(weights, styles: int) -> tuple[float, ...]:
    """One weight per style image, summing to 1: ``weights`` normalised, or equal when None."""
    if weights is None:
        return tuple(1.0 / styles for _ in range(styles))
    blend = normalized_blend(weights)
    if len(blend) != styles:
        raise ValueError(f"expected {styles} style blend weights (one per style image), got {len(blend)}")
    return blend


def _weights(weights, layers: tuple[str, ...], what: str) -> tuple[float, ...]:
    if weights is None:
        return tuple(1.0 / len(layers) for _ in layers)
    try:
        weights = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise ValueError(f"expected {what} layer weights to be a list of numbers, got {weights!r}") from None
    if len(weights) != len(layers):
        raise ValueError(f"expected {len(layers)} {what} layer weights (one per layer), got {len(weights)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"expected finite, non-negative {what} layer weights, got {weights}")
    return weights


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Every option of :func:`jaxstyle.stylize`. Validated on construction.

    Objective (Gatys et al. 2016, eq. 7, plus total variation)::

        content_weight * sum_l content_layer_weights[l] * mean((F_l - P_l)^2)
        + style_weight * sum_l style_layer_weights[l] * mean((G_l - A_l)^2) / 4
        + tv_weight * TV(image)

    Layer weights default to 1/number of layers (Gatys' w_l = 1/5 for five style layers).

    Coarse-to-fine: ``scales`` are the longest sides (px) of coarser stages run before the
    full-size one, in increasing order; each runs ``scale_iterations`` steps (default:
    ``iterations``) and the next starts from its upsampled result; the full size then runs
    ``iterations`` steps. ``precision="bfloat16"`` runs the network in bfloat16 with Gram
    matrices and losses accumulated in float32. ``remat`` recomputes each VGG block's inner
    activations in the backward pass instead of keeping them (less memory, more compute).

    Artist controls: ``style_blend`` weighs several style images (normalised to sum to 1;
    default equal): the style target of each layer is the blend of their Gram matrices.
    ``preserve_colors`` is ``"luminance"`` or ``"histogram"`` (see :mod:`jaxstyle.objective.color`).
    ``init`` is ``"content"``, ``"noise"`` or ``"style"`` (the first style image, resized),
    and ``init_noise_blend`` mixes that start with uniform noise: ``(1 - a) init + a noise``.
    ``conv`` picks how the 3x3 convolutions are computed: ``"direct"`` (``lax.conv``),
    ``"winograd"`` (Winograd F(4x4, 3x3) for every layer but conv1_1, :mod:`jaxstyle.model.winograd`), or
    ``"auto"``: Winograd for the layers where it measured faster on this backend (on CPUs the
    layers with 256 or more input channels, conv3_2 onwards; on GPUs/TPUs none, their compilers
    pick their own algorithms). Values agree to ~2e-5 relative.
    ``style_loss`` is the comparison of each style layer's statistics: ``"w2"`` (the default:
    Wasserstein-2 between Gaussians, :mod:`jaxstyle.objective.statistics`; it won the equal-time
    comparison of benchmarks/quality_sweep.py), ``"gram"`` (the paper's Gram matrices, above: what
    our PyTorch comparisons match) or ``"sliced"`` (sliced Wasserstein, :mod:`jaxstyle.objective.sliced`);
    W2 and sliced are scaled so that the default ``style_weight`` pulls as hard as Gram's
    (:mod:`jaxstyle.objective.style_losses`).
    ``normalize_gradients`` divides each loss layer's gradient by its L1 norm before
    weighting it (jcjohnson/neural-style); the loss value is unchanged, so the gradient is
    no longer the loss's: it suits Adam better than L-BFGS's line search.
    """

    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = 1e-3
    tv_weight: float = 0.0
    iterations: int = 300
    optimizer: Any = "lbfgs"  # a name in OPTIMIZERS, an optax GradientTransformation or an Optimizer
    learning_rate: float | None = None
    # L-BFGS history. 50, not the usual 10: time to within 1% of the best loss was shorter on
    # every problem measured (3 pairs at 256 px, 2 at 128 px; benchmarks/README.md, optimizers).
    lbfgs_memory: int = 50
    init: str = "content"
    seed: int = 0
    noise_scale: float = 0.1
    scales: tuple[int, ...] = ()
    scale_iterations: int | None = None
    precision: str = "float32"
    remat: bool = False
    style_blend: tuple[float, ...] | None = None
    preserve_colors: str | None = None
    init_noise_blend: float = 0.0
    normalize_gradients: bool = False
    conv: str = "auto"
    style_loss: str = "w2"

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("content_layers", _layers(self.content_layers, "content"))
        set_("style_layers", _layers(self.style_layers, "style"))
        set_("content_layer_weights", _weights(self.content_layer_weights, self.content_layers, "content"))
        set_("style_layer_weights", _weights(self.style_layer_weights, self.style_layers, "style"))
        for name in ("content_weight", "style_weight", "tv_weight", "noise_scale"):
            value = _number(getattr(self, name), name)
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"expected {name} to be a finite number >= 0, got {getattr(self, name)!r}")
            set_(name, value)
        named = isinstance(self.optimizer, str)
        if named and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"expected optimizer in {OPTIMIZERS}, an optax GradientTransformation or a "
                             f"jaxstyle.Optimizer, got {self.optimizer!r}")
        if not named and not _is_optimizer_object(self.optimizer):
            raise ValueError(f"expected optimizer in {OPTIMIZERS}, an optax GradientTransformation or a "
                             f"jaxstyle.Optimizer, got {type(self.optimizer).__name__}")
        if self.init not in INITS:
            raise ValueError(f"expected init in {INITS} (or pass init_image), got {self.init!r}")
        if not is_integer(self.iterations) or self.iterations < 0:
            raise ValueError(f"expected iterations to be an integer >= 0, got {self.iterations!r}")
        if not is_integer(self.lbfgs_memory) or self.lbfgs_memory < 1:
            raise ValueError(f"expected lbfgs_memory to be an integer >= 1, got {self.lbfgs_memory!r}")
        if not named:
            if self.learning_rate is not None:
                raise ValueError("learning_rate applies to the named optimizers; an optimizer object carries "
                                 "its own")
        elif self.learning_rate is None:
            set_("learning_rate", DEFAULT_LEARNING_RATE[self.optimizer])
        elif not 0 < _number(self.learning_rate, "learning_rate") < math.inf:
            raise ValueError(f"expected learning_rate to be a finite number > 0, got {self.learning_rate!r}")
        if named:
            set_("learning_rate", float(self.learning_rate))
        set_("iterations", int(self.iterations))
        scales = tuple(self.scales)
        if any(not is_integer(v) or v < 1 for v in scales) or any(b <= a for a, b in zip(scales, scales[1:])):
            raise ValueError(f"expected scales to be increasing positive integers (px), got {self.scales!r}")
        set_("scales", tuple(int(v) for v in scales))
        if self.scale_iterations is None:
            set_("scale_iterations", self.iterations)
        elif not is_integer(self.scale_iterations) or self.scale_iterations < 0:
            raise ValueError(f"expected scale_iterations to be an integer >= 0, got {self.scale_iterations!r}")
        set_("scale_iterations", int(self.scale_iterations))
        set_("remat", bool(self.remat))
        if self.precision not in PRECISIONS:
            raise ValueError(f"expected precision in {PRECISIONS}, got {self.precision!r}")
        if self.style_loss not in STYLE_LOSSES:
            raise ValueError(f"expected style_loss one of {', '.join(STYLE_LOSSES)}, got {self.style_loss!r}")
        if self.conv not in CONV_MODES:
            raise ValueError(f"expected conv in {CONV_MODES}, got {self.conv!r}")
        if self.conv == "winograd" and self.precision != "float32":
            raise ValueError(f"conv='winograd' needs precision float32 (its transforms lose too much in "
                             f"{self.precision}); use conv='auto' or 'direct'")
        if not is_seed(self.seed):
            raise ValueError(f"expected seed to be a 64-bit integer, got {self.seed!r}")
        set_("seed", int(self.seed))
        if self.style_blend is not None:
            set_("style_blend", normalized_blend(self.style_blend))
        if self.preserve_colors is not None and self.preserve_colors not in COLOR_MODES:
            raise ValueError(f"expected preserve_colors in {COLOR_MODES} or None, got {self.preserve_colors!r}")
        blend = _number(self.init_noise_blend, "init_noise_blend")
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"expected init_noise_blend in [0, 1], got {self.init_noise_blend!r}")
        set_("init_noise_blend", blend)
        set_("normalize_gradients", bool(self.normalize_gradients))

    def blend_weights(self, styles: int) -> tuple[float, ...]:
        """One weight per style image, summing to 1 (``style_blend``, or equal)."""
        return blend_weights(self.style_blend, styles)

    @property
    def total_iterations(self) -> int:
        """Steps over all stages (coarse stages and the full size)."""
        return self.iterations + len(self.scales) * self.scale_iterations

    @property
    def all_layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))


VIDEO_MODES = ("sequential", "parallel")


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """The temporal options of a video run (Ruder, Dosovitskiy & Brox 2016), beside a
    :class:`StyleConfig` whose ``iterations`` are each later frame's steps (each pass's, with
    several passes).

    temporal_weight: the weight of ``(1/D) sum c (x - warp(x_prev))^2`` on images in [0, 1]
      (Ruder's 1e3 beside a content weight of 5 on 0-255 pixels would be ~1.3e7 here; 1e8 measured best on
      benchmarks/video.py: warping error 0.06x that of independent frames, style loss unchanged).
    relative_frames: the earlier frames i - j whose warped outputs enter frame i's temporal term
      (J; ``(1,)`` is the short-term term, e.g. ``(1, 2, 4)`` adds long-term terms, closest first).
    first_iterations: steps of a frame that starts afresh (the first, and the first after a cut);
      default ``2 * iterations``.
    passes: with more than 1, Ruder's multi-pass algorithm (sequential mode: passes alternate
      direction; the temporal term from pass ``temporal_from_pass`` on, default the second half) or
      the number of Jacobi passes (parallel mode: the temporal term from ``temporal_from_pass`` on,
      default 2, the first pass with neighbours' results).
    blend: delta of the multi-pass start, ``delta c warp(neighbour) + (1 - delta c) current``.
    cut_threshold: a frame whose share of pixels matched to the previous one (reliable flow and a
      colour within 0.1, or the same structure once each frame's exposure is factored out, so that
      flashes, exposure steps and fades stay one shot) is below this starts afresh: a scene cut.
      0 never cuts.
    mode: ``"sequential"`` (frame after frame, one device) or ``"parallel"`` (every frame of a
      pass at once, vmapped and sharded over all devices: Jacobi passes, each frame pulled towards
      both neighbours' results of the previous pass).
    """

    temporal_weight: float = 1e8
    relative_frames: tuple[int, ...] = (1,)
    first_iterations: int | None = None
    passes: int = 1
    temporal_from_pass: int | None = None
    blend: float = 0.5
    cut_threshold: float = 0.3
    mode: str = "sequential"

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        weight = _number(self.temporal_weight, "temporal_weight")
        if not 0 <= weight < math.inf:
            raise ValueError(f"expected temporal_weight to be a finite number >= 0, got {self.temporal_weight!r}")
        set_("temporal_weight", weight)
        frames = tuple(self.relative_frames)
        if not frames or any(not is_integer(j) or j < 1 for j in frames) or len(set(frames)) != len(frames):
            raise ValueError(f"expected relative_frames to be distinct integers >= 1, got {self.relative_frames!r}")
        set_("relative_frames", tuple(sorted(int(j) for j in frames)))
        if self.first_iterations is not None:
            if not is_integer(self.first_iterations) or self.first_iterations < 0:
                raise ValueError(f"expected first_iterations to be an integer >= 0, got {self.first_iterations!r}")
            set_("first_iterations", int(self.first_iterations))
        if not is_integer(self.passes) or self.passes < 1:
            raise ValueError(f"expected passes to be an integer >= 1, got {self.passes!r}")
        set_("passes", int(self.passes))
        if self.temporal_from_pass is None:
            # sequential: the second half of the passes; parallel: every pass that has neighbours (2 on)
            first = 2 if self.mode == "parallel" else self.passes // 2 + 1
            set_("temporal_from_pass", 1 if self.passes == 1 else first)
        elif not is_integer(self.temporal_from_pass) or not 1 <= self.temporal_from_pass <= self.passes:
            raise ValueError(f"expected temporal_from_pass to be an integer in 1 .. passes ({self.passes}), "
                             f"got {self.temporal_from_pass!r}")
        set_("temporal_from_pass", int(self.temporal_from_pass))
        for name in ("blend", "cut_threshold"):
            value = _number(getattr(self, name), name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"expected {name} in [0, 1], got {getattr(self, name)!r}")
            set_(name, value)
        if self.mode not in VIDEO_MODES:
            raise ValueError(f"expected mode in {VIDEO_MODES}, got {self.mode!r}")

    def first_steps(self, iterations: int) -> int:
        """Steps of a frame that starts afresh, beside ``iterations`` for the others."""
        return 2 * iterations if self.first_iterations is None else self.first_iterations
