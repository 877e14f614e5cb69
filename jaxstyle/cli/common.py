"""What the subcommands share: exit statuses, the log and the notices, the progress bar, the
compiled-program cache, and the translation of the style options into a :class:`StyleConfig`."""

from __future__ import annotations

import os
import sys

from jaxstyle.config import INITS, OPTIMIZERS, StyleConfig
from jaxstyle.engine.planner import COARSE_TO_FINE_FROM, coarse_to_fine_scales
from jaxstyle.jobs.batch import EXIT_FAILED as EXIT_USAGE
from jaxstyle.jobs.batch import EXIT_INTERRUPTED
from jaxstyle.optim import optimizer_from_factory
from jaxstyle.weights import fetch

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "DEFAULT_SIZE", "log", "notify", "progress_bar", "network_path",
           "keep_compiled_programs", "resolve_scales", "style_size", "style_config", "default_scales_line", "notes"]

DEFAULT_SIZE = 512
XLA_CACHE_MAX_BYTES = 1 << 30


def log(args, message: str) -> None:
    """A progress message (on stderr; nothing under --quiet)."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def notify(message: str) -> None:
    """What is said even under --quiet (the weights fetched, a partial result saved)."""
    print(f"jaxstyle: {message}", file=sys.stderr, flush=True)


def progress_bar(args, total: int, unit: str):
    """A tqdm bar on stderr, or None under --quiet or when stderr is not a terminal (then progress is logged)."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)


def network_path(args) -> str | None:
    return args.weights or os.environ.get("JAXSTYLE_WEIGHTS") or None


def keep_compiled_programs() -> None:
    """Keep XLA's compiled programs between runs (JAX's persistent compilation cache), so a
    repeated job of the same shapes skips compiling: at 256 px on a 2-core CPU a 60-step job
    took 23.2 s with the cache warm against 28.8 s cold (the difference is compiling).
    In ``$JAXSTYLE_XLA_CACHE`` (``off`` turns it off), else the cache folder's ``xla/``, at most
    1 GiB (least recently used programs go first); a ``JAX_COMPILATION_CACHE_DIR`` the user set wins."""
    setting = os.environ.get("JAXSTYLE_XLA_CACHE", "")
    if setting.lower() == "off" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", setting or str(fetch.cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # not the many tiny programs
    jax.config.update("jax_compilation_cache_max_size", XLA_CACHE_MAX_BYTES)


def resolve_scales(args, default_coarse: bool = True) -> None:
    """Sets ``args.size`` and ``args.coarse_scales`` from --size, --scales and --min-scale; without
    them a big output (``default_coarse``) runs coarse-to-fine by default
    (:func:`jaxstyle.engine.planner.coarse_to_fine_scales`), and ``args.default_scales`` says so."""
    args.default_scales = False
    if args.scales and args.min_scale:
        raise ValueError("give --scales or --min-scale, not both")
    if args.scales:
        if args.size is not None and args.size != args.scales[-1]:
            raise ValueError(f"--scales must end with the output size --size {args.size}, got {args.scales[-1]}")
        if any(b <= a for a, b in zip(args.scales, args.scales[1:])):
            raise ValueError(f"--scales must increase, got {','.join(map(str, args.scales))}")
        args.size, args.coarse_scales = args.scales[-1], args.scales[:-1]
        return
    args.size = args.size or DEFAULT_SIZE
    args.coarse_scales = coarse_to_fine_scales(args.size) if default_coarse and not args.min_scale else ()
    args.default_scales = bool(args.coarse_scales)
    if args.min_scale:
        if args.min_scale > args.size:
            raise ValueError(f"--min-scale {args.min_scale} is larger than --size {args.size}")
        scales, scale = [], float(args.min_scale)
        while round(scale) < args.size * 0.95:  # stop short of a stage almost the output's size
            scales.append(round(scale))
            scale *= 2 ** 0.5
        args.coarse_scales = tuple(scales)


def style_size(args) -> int:
    """The style image's longest side, from --style-size or --style-scale (after :func:`resolve_scales`)."""
    if args.style_size and args.style_scale:
        raise ValueError("give --style-size or --style-scale, not both")
    if args.style_scale is not None:
        if not 0 < args.style_scale <= 16:
            raise ValueError(f"--style-scale must be in (0, 16], got {args.style_scale}")
        return max(1, round(args.size * args.style_scale))
    return args.style_size or args.size


def style_config(args, default_coarse: bool = True) -> StyleConfig:
    """The :class:`StyleConfig` of the style options; sets ``args.size`` and the stages (:func:`resolve_scales`)."""
    resolve_scales(args, default_coarse)
    return StyleConfig(lbfgs_memory=args.lbfgs_memory,
        scales=args.coarse_scales, scale_iterations=args.scale_iterations, precision=args.precision, conv=args.conv,
        remat=args.remat,
        content_layers=args.content_layers, style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        iterations=args.iterations, learning_rate=args.learning_rate,
        optimizer=args.optimizer if args.optimizer in OPTIMIZERS else optimizer_from_factory(args.optimizer),
        init=getattr(args, "init", "content") if getattr(args, "init", None) in INITS else "content",
        seed=args.seed, style_blend=getattr(args, "style_blend", None), preserve_colors=args.preserve_colors,
        init_noise_blend=getattr(args, "init_noise_blend", 0.0), normalize_gradients=args.normalize_gradients,
        style_loss=getattr(args, "style_loss", StyleConfig.style_loss))


def default_scales_line(args) -> str:
    stages = " -> ".join(map(str, (*args.coarse_scales, args.size)))
    return (f"coarse-to-fine {stages} px (the default for outputs of {COARSE_TO_FINE_FROM} px and more; "
            f"--scales {args.size} runs one scale)")


def notes(args) -> tuple[str, ...]:
    """The CLI's lines about the run for the job to log: the default coarse-to-fine stages."""
    return (default_scales_line(args),) if args.default_scales else ()
