"""`jaxstyle weights fetch | convert | info`: the VGG-19 weights (:mod:`jaxstyle.weights`)."""

from __future__ import annotations

import os
from pathlib import Path

from jaxstyle.io import storage
from jaxstyle.jobs.single import refuse_overwrite
from jaxstyle.weights import fetch, formats


def run(args) -> int:
    return {"fetch": fetch_weights, "convert": convert, "info": info}[args.weights_command](args)


def fetch_weights(args) -> int:
    target = fetch.cached_weights_path()
    if target.exists() and not args.force:
        print(f"weights already cached at {target} (use --force to fetch again)")
        return 0
    sources = (args.source,) if args.source else fetch.SOURCES
    fetch.fetch_weights(destination=target, sources=sources, log=print)
    return 0


def convert(args) -> int:
    dst = Path(args.dst)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: expected a .npz output path")
    refuse_overwrite(dst, args.overwrite)
    converted = fetch.read_weights_at(args.src, preprocessing=args.preprocessing)
    formats.write_converted(converted, dst)
    print(f"converted {args.src} ({converted.source}) to {dst}")
    return 0


def info(args) -> int:
    path = args.path or os.environ.get("JAXSTYLE_WEIGHTS") or fetch.cached_weights_path()
    if not storage.exists(storage.location(path)):
        raise ValueError(f"{path}: no weights file (run `jaxstyle weights fetch`)")
    print(f"file: {path}")
    print(formats.describe(fetch.read_weights_at(path, preprocessing=args.preprocessing)))
    return 0
