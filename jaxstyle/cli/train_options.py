"""`jaxstyle train`'s options (declarations only; the value types are in :mod:`jaxstyle.cli.arguments`)."""

from __future__ import annotations

import argparse

from jaxstyle.cli.arguments import ListLayers, comma_list, finite_float, floats, non_negative_int, port, positive_int
from jaxstyle.config import (
    CONV_MODES,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    PRECISIONS,
    STYLE_LOSSES,
    StyleConfig,
)
from jaxstyle.jobs.train import TrainJob
from jaxstyle.weights import formats as weights

DESCRIPTION = """Train a feed-forward network (Johnson et al. 2016, with conditional instance norm for several
styles) on the content images with the objective `stylize` minimises, data-parallel over every device. Checkpoints
are kept beside the model (MODEL.jaxstyle-train) every --checkpoint-every steps and on Ctrl-C/SIGTERM; the same
command resumes from the last one. `jaxstyle apply MODEL ...` then stylizes images with one forward pass."""


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default where it is a value (None and False are said in the help's words)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_train_parser(sub) -> None:
    tr = sub.add_parser("train", help="train a feed-forward network for one or more styles (then `jaxstyle apply`)",
                        description=DESCRIPTION, formatter_class=DefaultsShown)
    tr.add_argument("style", nargs="+", help="style image(s); several: one network for all (conditional instance "
                    "norm), the styles taking turns over the rows of each batch")
    tr.add_argument("--contents", required=True, metavar="DIR|MANIFEST|URL",
                    help="the content images: a folder (searched recursively), a manifest (.txt: a path a line; "
                         ".csv/.jsonl: a content or path column) or a bucket URL (s3://, gs://; needs jaxstyle[cloud])")
    tr.add_argument("-o", "--output", required=True, metavar="MODEL",
                    help="the model file to write when training ends (safetensors; a path or a URL)")
    run = tr.add_argument_group("training")
    run.add_argument("--size", type=positive_int, default=TrainJob.size, metavar="PX",
                     help="side of the square random crops the network trains on")
    run.add_argument("--style-size", type=positive_int, default=None, metavar="PX",
                     help="longer side of the style images (default: --size); smaller: smaller strokes")
    run.add_argument("--batch", type=positive_int, default=TrainJob.batch,
                     help="global batch (images per step, over all devices and hosts; a multiple of the devices)")
    run.add_argument("--steps", type=positive_int, default=TrainJob.steps,
                     help="optimizer steps (the learning rate is constant: a finished or "
                     "interrupted run goes on to more steps from its checkpoint)")
    run.add_argument("--learning-rate", type=finite_float, default=TrainJob.learning_rate, help="Adam's step size")
    run.add_argument("--width", type=positive_int, default=TrainJob.width,
                     help="channels of the network's first layer (x2, x4 after each downsampling)")
    run.add_argument("--residual-blocks", type=non_negative_int, default=TrainJob.residual_blocks,
                     help="residual blocks at the lowest resolution")
    run.add_argument("--seed", type=int, default=TrainJob.seed, help="the network's start and the data order")
    run.add_argument("--temporal-weight", type=finite_float, default=TrainJob.temporal_weight,
                     help="> 0: train for video without flicker (the output of a warped input should be the warped "
                          "output; random smooth flows on still images)")
    run.add_argument("--threads", type=positive_int, default=TrainJob.threads,
                     help="host threads decoding and cropping the content images")
    run.add_argument("--checkpoint-every", type=positive_int, default=TrainJob.checkpoint_every, metavar="N",
                     help="steps between checkpoints (also written at the end and on Ctrl-C/SIGTERM)")
    run.add_argument("--checkpoints", default=None, metavar="DIR",
                     help="the checkpoint folder (default: MODEL.jaxstyle-train beside the output, removed once "
                          "the model is written; a folder named here is kept)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing model file and start afresh, discarding the checkpoints")
    add_objective_options(tr)
    shown = tr.add_argument_group("output")
    shown.add_argument("--plot", default=None, metavar="PATH.png",
                       help="write the loss curves there at each checkpoint and at the end (needs matplotlib)")
    shown.add_argument("--preview", type=port, nargs="?", const=0, default=None, metavar="PORT",
                       help="serve a live page on 127.0.0.1:PORT (default: any free port): the loss curves and "
                            "the network's outputs on the probe images, one row per style (needs jaxstyle[preview])")
    shown.add_argument("--preview-host", default="127.0.0.1", metavar="HOST",
                       help="listen on HOST instead of loopback")
    shown.add_argument("--probes", nargs="+", default=None, metavar="IMAGE",
                       help="the preview's probe images (default: the first four content images)")
    shown.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors and notices")
    hosts = tr.add_argument_group("several hosts")
    hosts.add_argument("--distributed", action="store_true",
                       help="multi-host: jax.distributed.initialize(); every host decodes its share of each batch "
                            "(the checkpoint folder must be one that every host sees)")
    hosts.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from the cluster)")
    hosts.add_argument("--num-processes", type=positive_int, default=None, help="(default: detected)")
    hosts.add_argument("--process-id", type=non_negative_int, default=None, help="(default: detected)")


def add_objective_options(tr: argparse.ArgumentParser) -> None:
    """The loss, as `stylize`'s options set it (what stylize decides per image is left out)."""
    loss = tr.add_argument_group("objective (as stylize's)")
    loss.add_argument("--style-loss", choices=STYLE_LOSSES, default=StyleConfig.style_loss,
                      help="Gram matrices, Wasserstein-2 between Gaussians, or sliced Wasserstein")
    loss.add_argument("--content-weight", type=finite_float, default=StyleConfig.content_weight,
                      help="weight of the content term")
    loss.add_argument("--style-weight", type=finite_float, default=StyleConfig.style_weight,
                      help="weight of the style term (higher: more stylized)")
    loss.add_argument("--tv-weight", type=finite_float, default=StyleConfig.tv_weight,
                      help="weight of the total variation term (smoothness)")
    loss.add_argument("--content-layers", type=comma_list, default=",".join(DEFAULT_CONTENT_LAYERS),
                      help="comma-separated layer names (see --list-layers)")
    loss.add_argument("--style-layers", type=comma_list, default=",".join(DEFAULT_STYLE_LAYERS),
                      help="comma-separated layer names")
    loss.add_argument("--content-layer-weights", type=floats, default=None,
                      help="one weight per content layer (default: equal, summing to 1)")
    loss.add_argument("--style-layer-weights", type=floats, default=None,
                      help="one weight per style layer (default: equal, summing to 1)")
    loss.add_argument("--preserve-colors", choices=("luminance",), default=None,
                      help="luminance: train on the luminance only; `apply` puts each image's colours back")
    loss.add_argument("--normalize-gradients", action="store_true",
                      help="divide each loss layer's gradient by its L1 norm (jcjohnson/neural-style)")
    loss.add_argument("--precision", choices=PRECISIONS, default="float32",
                      help="VGG's compute dtype; Gram matrices and losses stay float32")
    loss.add_argument("--conv", choices=CONV_MODES, default=StyleConfig.conv, help="VGG's 3x3 convolutions")
    loss.add_argument("--remat", action="store_true", help="recompute VGG's activations in the backward pass")
    loss.add_argument("--pooling", choices=("max", "avg"), default="max", help="VGG's pooling")
    loss.add_argument("--weights", default=None, help="VGG-19 weights file or URL (default: $JAXSTYLE_WEIGHTS, "
                      "else the cache, fetched on first use)")
    loss.add_argument("--preprocessing", choices=tuple(weights.PREPROCESSING_BY_NAME), default=None,
                      help="input normalisation of a state-dict weights file")
    loss.add_argument("--list-layers", action=ListLayers, help="list layer names and aliases, then exit")
