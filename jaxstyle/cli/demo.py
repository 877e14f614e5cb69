"""`jaxstyle demo`: `stylize` of the example images installed with the package (:mod:`jaxstyle.examples`)."""

from __future__ import annotations

from jaxstyle.cli import stylize
from jaxstyle.examples import CONTENT, STYLE, example_path


def run(args) -> int:
    args.content, args.style = str(example_path(CONTENT)), [str(example_path(STYLE))]
    return stylize.run(args)
