"""Command line: argv -> config -> job (:mod:`jaxstyle.jobs`) -> exit code; nothing else.

One module per subcommand (:mod:`.stylize`, :mod:`.demo`, :mod:`.plan`, :mod:`.batch`, :mod:`.video`,
:mod:`.weights`, :mod:`.train`, :mod:`.apply`,
:mod:`.model`: namespace -> config -> job -> exit status); the parser in :mod:`.options` (the
values' types in :mod:`.arguments`), what the subcommands share in :mod:`.common`, the signals in
:mod:`.interrupts`.

Exit status 0 on success, 2 on bad input (one line on stderr, no traceback),
130 when interrupted (or stopped from the preview page with outputs left unwritten).
"""

from __future__ import annotations

import os
import sys

from jaxstyle.cli import apply, batch, demo, model, plan, stylize, train, video, weights
from jaxstyle.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, resolve_scales
from jaxstyle.cli.interrupts import Interruptions, stop_if_interrupted
from jaxstyle.cli.options import build_parser

__all__ = ["main", "build_parser", "resolve_scales", "Interruptions", "stop_if_interrupted"]

COMMANDS = {"stylize": stylize.run, "demo": demo.run, "batch": batch.run, "weights": weights.run, "plan": plan.run,
            "video": video.run, "train": train.run, "apply": apply.run, "model": model.run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with Interruptions():
        try:
            return COMMANDS[args.command](args)
        except KeyboardInterrupt:
            print("jaxstyle: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ValueError, OSError) as exc:
            if os.environ.get("JAXSTYLE_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"jaxstyle: error: {message}", file=sys.stderr)
            return EXIT_USAGE
