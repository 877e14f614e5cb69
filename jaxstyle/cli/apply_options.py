"""The options of `jaxstyle apply` and `jaxstyle model` (declarations only)."""

from __future__ import annotations

from jaxstyle.cli.arguments import floats, non_negative_int, positive_int


def add_apply_parsers(sub) -> None:
    """The `apply` and `model` subcommands of the parser's ``sub`` (its subparsers)."""
    ap = sub.add_parser("apply", help="stylize images, folders, manifests, buckets and videos with a trained "
                        "feed-forward model (one forward pass per image)")
    ap.add_argument("model", metavar="MODEL", help="a model file `jaxstyle train` wrote (a path or URL)")
    ap.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="an image; a folder (every image in it); a manifest (.txt: a path a line; .csv/.jsonl: a "
                         "content column and optionally output); a bucket folder (s3://, gs://, memory://; needs "
                         "jaxstyle[cloud]); or a video (mp4, mkv, mov, webm, avi...: its frame times and audio are "
                         "kept; needs jaxstyle[video])")
    ap.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="for one image or video: a file (.png .jpg .tif / .mp4 .mov .mkv) or a folder; otherwise a "
                         "folder (created; outputs named after their inputs, NAME-2 for a second input of one name)")
    ap.add_argument("--size", type=positive_int, default=None, metavar="PX",
                    help="longer side of what is stylized, up or down (default: each input's own size)")
    ap.add_argument("--style", default=None, metavar="NAME|INDEX", help="the style of a multi-style model")
    ap.add_argument("--style-mix", type=floats, default=None, metavar="W1,W2,...",
                    help="one weight per style of a multi-style model (normalised to sum to 1)")
    ap.add_argument("--preserve-colors", choices=("luminance", "none"), default=None,
                    help="luminance: keep each input's colours (the style gives the luminance); none: the network's "
                         "colours (default: as the model was trained)")
    ap.add_argument("--batch", type=positive_int, default=8, metavar="N",
                    help="images of one size per forward pass, over all local devices (fewer when they are big; "
                         "default 8)")
    existing = ap.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep existing outputs and do the rest (resume an interrupted run)")
    ap.add_argument("--crf", type=non_negative_int, default=18,
                    help="videos' H.264 quality: 0 (lossless) .. 51 (default 18)")
    ap.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")

    md = sub.add_parser("model", help="inspect a trained feed-forward model file")
    msub = md.add_subparsers(dest="model_command", required=True)
    mi = msub.add_parser("info", help="print its architecture, styles, training, objective and checksums")
    mi.add_argument("model", metavar="MODEL", help="a model file (a path or URL)")
    mi.add_argument("--json", action="store_true", help="print everything the file holds but the tensors as JSON")
