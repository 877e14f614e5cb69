"""The command line's value types (argparse ``type=``): each parses one option's text or refuses it
with "expected X, got Y" (argparse turns that into a one-line error, exit 2); and ``--list-layers``."""

from __future__ import annotations

import argparse
import math
import os
import sys

from jaxstyle.config import OPTIMIZERS
from jaxstyle.model.vgg import LAYER_NAMES


class ListLayers(argparse.Action):
    """``--list-layers``: print the layer names and their Keras aliases, then exit."""

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


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def finite_float(text: str) -> float:
    """A finite number: NaN and infinities are refused here, before any work starts."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in comma_list(text))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers, got {text!r}")
    return values


def ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in comma_list(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def optimizer_spec(text: str) -> str:
    if text in OPTIMIZERS or ":" in text:
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(OPTIMIZERS)} or package.module:factory, "
                                     f"got {text!r}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def block_size(text: str) -> int | str | None:
    if text in ("auto", "off"):
        return None if text == "off" else "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto, off or a block size in px, got {text!r}") from None


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0 .. 65535 (0: any free one), got {text!r}")
    return value


def frame_range(text: str) -> tuple[int, int | None]:
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
