"""Time the compiled optimisation loop: compile time and steady-state time per step.

    python -m benchmarks.step_time --sizes 128,256 --optimizers lbfgs,adam --steps 10

Uses the cached real VGG-19 weights (`jaxstyle weights fetch`), or random weights of
the same shapes with --random-weights (same cost). Images are the shared test photos
when present, else smooth synthetic images. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import machine_info
from jaxstyle import StyleConfig, image_io, load_vgg19
from jaxstyle.stylize import _Program, compute_targets, init_state, loss_weights, run_chunk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def _images(size: int):
    content_path, style_path = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    if content_path.exists() and style_path.exists():
        return image_io.load_image(content_path, max_size=size), image_io.load_image(style_path, max_size=size)
    y, x = np.mgrid[0:size, 0:size] / size
    content = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), 0.5 + 0.3 * np.sin(4 * x * y)], -1)
    return content.astype(np.float32), content[::-1].copy().astype(np.float32)


def _random_vgg():
    from jaxstyle.vgg import CAFFE_PREPROCESSING, CONV_KERNEL_SHAPES
    from jaxstyle.weights import VGGWeights

    rng = np.random.default_rng(0)
    layers = {n: ((rng.standard_normal(s, dtype=np.float32) * np.sqrt(2 / np.prod(s[:3]))).astype(np.float32),
                  np.zeros(s[3], np.float32)) for n, s in CONV_KERNEL_SHAPES.items()}
    return VGGWeights(layers, CAFFE_PREPROCESSING, "random", "").to_vgg()


def time_steps(vgg, size: int, optimizer: str, steps: int, repeats: int) -> dict:
    content, style = _images(size)
    config = StyleConfig(optimizer=optimizer, iterations=steps)
    program = _Program.build(config, vgg, steps)
    weights = loss_weights(config)
    targets = compute_targets(vgg.params, content, style, program=program)
    state = init_state(vgg.params, jnp.asarray(content), targets, weights, program=program)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, _ = run_chunk(vgg.params, state, targets, weights, jnp.int32(steps), program=program)
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, losses = run_chunk(vgg.params, state, targets, weights, jnp.int32(steps), program=program)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - start) / steps)
    step = statistics.median(times)
    return {"size": list(content.shape[:2]), "optimizer": optimizer, "steps_per_repeat": steps,
            "repeats": repeats, "step_seconds_median": step, "step_seconds_all": times,
            "compile_seconds": max(first - steps * step, 0.0), "final_loss": float(np.asarray(losses)[-1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--optimizers", default="lbfgs,jaxopt-lbfgs,adam")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = _random_vgg() if args.random_weights else load_vgg19()
    info = machine_info()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for optimizer in args.optimizers.split(","):
            row = time_steps(vgg, size, optimizer, args.steps, args.repeats)
            rows.append(row)
            print(f"{info['device_kind']:>10s} {row['size'][0]}x{row['size'][1]:<5d} {optimizer:13s} "
                  f"step {row['step_seconds_median'] * 1e3:8.1f} ms  compile {row['compile_seconds']:6.1f} s",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"step_time-{info['platform']}-{info['date'][:19].replace(':', '')}.json"
    (out / name).write_text(json.dumps({"machine": info, "weights": "random" if args.random_weights else vgg.source,
                                        "results": rows}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
