"""Pairs per second against batch size (and device count), beside a Python loop over stylize.

    python -m benchmarks.batch_throughput --size 128 --batch-sizes 1,2,4 --pairs 8 --steps 10
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.batch_throughput ...

Every configuration stylizes the same pairs (tubingen/golden_gate x the shared paintings,
else synthetic images) twice: the first pass is a warm-up and is not timed, so every program
(one per style-image shape for the style targets, one per batch shape for the loop) is
compiled before the timed pass. (Warming up on the first pair alone, as this benchmark did
before 2026-11-25, left the compiles for the other style shapes in the loop's time: on an
H100 that made the loop look 3.8x slower than a batch of one.) Writes JSON to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.machine import machine_info
from benchmarks.step_time import SHALLOW, SHARED, random_vgg
from jaxstyle import StyleConfig, load_vgg19, stylize
from jaxstyle.engine.batch import stylize_batch
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.io import images as image_io


def mixed_pairs(size: int, n: int):
    contents = [SHARED / f for f in ("tubingen.jpg", "golden_gate.jpg")]
    styles = [SHARED / f for f in ("starry_night.jpg", "the_scream.jpg", "shipwreck.jpg", "seated-nude.jpg")]
    if all(p.exists() for p in contents + styles):
        cs = [image_io.resize_to(image_io.load_image(p), size, size) for p in contents]
        ss = [image_io.load_image(p, max_size=size) for p in styles]
    else:
        rng = np.random.default_rng(0)
        cs = [rng.uniform(size=(size, size, 3)).astype(np.float32) for _ in range(2)]
        ss = [rng.uniform(size=(size, size, 3)).astype(np.float32) for _ in range(4)]
    return [cs[i % len(cs)] for i in range(n)], [ss[i % len(ss)] for i in range(n)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,2,4")
    parser.add_argument("--pairs", type=int, default=8, help="timed pairs per configuration")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--optimizer", default="lbfgs")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--shallow", action="store_true", help="content relu2_1, style relu1_1,relu2_1 (quick checks)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = random_vgg() if args.random_weights else load_vgg19()
    config = StyleConfig(iterations=args.steps, optimizer=args.optimizer, **(SHALLOW if args.shallow else {}))
    contents, styles = mixed_pairs(args.size, args.pairs)
    info = machine_info()
    rows = []

    def loop_pass():
        for c, s in zip(contents, styles):
            stylize(c, s, config=config, vgg=vgg)

    loop_pass()  # warm-up: compiles every shape
    start = time.perf_counter()
    loop_pass()
    loop = args.pairs / (time.perf_counter() - start)
    rows.append({"mode": "python loop over stylize", "batch_size": 1, "devices": 1, "pairs_per_second": loop})
    print(f"loop over stylize            {loop:8.3f} pairs/s", flush=True)

    mesh = batch_mesh() if jax.local_device_count() > 1 else None
    for b in (int(x) for x in args.batch_sizes.split(",")):
        def batch_pass(b=b):
            for i in range(0, args.pairs, b):
                stylize_batch(np.stack(contents[i:i + b]), styles[i:i + b], config=config, vgg=vgg, mesh=mesh)

        batch_pass()  # warm-up
        start = time.perf_counter()
        batch_pass()
        rate = args.pairs / (time.perf_counter() - start)
        rows.append({"mode": "stylize_batch", "batch_size": b, "devices": jax.local_device_count(),
                     "pairs_per_second": rate})
        print(f"stylize_batch b={b:<3d} devices={jax.local_device_count()} {rate:8.3f} pairs/s "
              f"({rate / loop:.2f}x loop)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = (f"batch_throughput-{info['platform']}{jax.local_device_count()}-"
            f"{info['date'][:19].replace(':', '')}.json")
    (out / name).write_text(json.dumps({"machine": info, "size": args.size, "steps": args.steps,
                                        "optimizer": args.optimizer, "results": rows}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
