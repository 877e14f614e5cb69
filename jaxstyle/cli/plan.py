"""`jaxstyle plan`: the stages, steps and memory a `stylize` run would need (:mod:`jaxstyle.jobs.plan`);
exit 1 when it would not fit."""

from __future__ import annotations

from jaxstyle.cli import common
from jaxstyle.jobs.network import load_network
from jaxstyle.jobs.plan import plan_run


def run(args) -> int:
    config = common.style_config(args)
    if args.default_scales:
        print(common.default_scales_line(args))
    plan = plan_run(args.content, config, args.size, block_size=args.block_size, compile_with=(
        (lambda: load_network(common.network_path(args), pooling=args.pooling, preprocessing=args.preprocessing,
                              log=common.notify)) if args.compile else None))
    for line in plan.lines:
        print(line)
    return 0 if plan.fits else 1
