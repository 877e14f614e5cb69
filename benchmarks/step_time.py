"""Time the compiled optimisation loop: compile time, steady-state time per step, roofline, memory.

    python -m benchmarks.step_time --sizes 128,256 --optimizers lbfgs,adam --precisions float32,bfloat16

Roofline: ``step_flops`` counts one function evaluation from the layer shapes (every
convolution up to the deepest layer used, forward and input-gradient; Gram matrices forward
and backward); achieved FLOP/s = step_flops x evaluations per step / step time, as a fraction
of a square matrix multiply's FLOP/s measured in the same run on the same device. Memory: the
compiled chunk's memory analysis (arguments + temporaries + outputs), plus peak host RSS (CPU)
or the device's peak bytes in use (GPU).

Uses the cached real VGG-19 weights (`jaxstyle weights fetch`), or random weights of
the same shapes with --random-weights (same cost). Images are the shared test photos
when present, else smooth synthetic images. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import machine_info
from jaxstyle import StyleConfig, load_vgg19
from jaxstyle.engine.memory import available_bytes, compiled_bytes
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import init_state, run_chunk
from jaxstyle.io import images as image_io
from jaxstyle.model.vgg import CONV_KERNEL_SHAPES, LAYER_INDEX, LAYER_NAMES
from jaxstyle.objective.targets import compute_targets
from jaxstyle.objective.terms import loss_weights

# Two shallow layers: small programs for the benchmarks' quick checks and tests (--shallow, --quick).
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def _images(size: int):
    content_path, style_path = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    if content_path.exists() and style_path.exists():
        return image_io.load_image(content_path, max_size=size), image_io.load_image(style_path, max_size=size)
    y, x = np.mgrid[0:size, 0:size] / size
    content = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), 0.5 + 0.3 * np.sin(4 * x * y)], -1)
    return content.astype(np.float32), content[::-1].copy().astype(np.float32)


def random_vgg():
    from jaxstyle.model.vgg import CAFFE_PREPROCESSING, CONV_KERNEL_SHAPES
    from jaxstyle.weights.formats import VGGWeights

    rng = np.random.default_rng(0)
    layers = {n: ((rng.standard_normal(s, dtype=np.float32) * np.sqrt(2 / np.prod(s[:3]))).astype(np.float32),
                  np.zeros(s[3], np.float32)) for n, s in CONV_KERNEL_SHAPES.items()}
    return VGGWeights(layers, CAFFE_PREPROCESSING, "random", "").to_vgg()


def step_flops(height: int, width: int, config: StyleConfig) -> float:
    """FLOPs of one value-and-gradient of the objective at an H x W image (multiply-add = 2)."""
    deepest = max(LAYER_INDEX[n] for n in config.all_layers)
    h, w, flops = height, width, 0.0
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        elif name.startswith("conv"):
            kh, kw, cin, cout = CONV_KERNEL_SHAPES[name]
            flops += 2 * (2 * h * w * kh * kw * cin * cout)  # forward + input gradient
        elif name in config.style_layers:
            cout = CONV_KERNEL_SHAPES["conv" + name[4:]][3]
            flops += 2 * (2 * h * w * cout * cout)  # Gram forward + backward
    return flops


def matmul_peak(dtype: str, n: int = 4096, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matrix multiply on the default device."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_memory_bytes() -> dict:
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return {"device_peak_bytes": int(stats["peak_bytes_in_use"]), "device_limit_bytes": stats.get("bytes_limit")}
    return {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def largest_fitting_size(vgg, config: StyleConfig, limit: int, sizes=(512, 1024, 1536, 2048, 3072, 4096, 6144,
                                                                          8192)) -> list[dict]:
    """Compiled memory per size (4:3 images) until one exceeds ``limit``."""
    rows = []
    for size in sizes:
        memory = compiled_bytes(vgg, size * 3 // 4, size, config)
        rows.append({"size": [size * 3 // 4, size], "compiled_memory_bytes": memory, "fits": memory <= limit})
        print(f"  {size * 3 // 4}x{size}: compiled memory {memory / 2**30:6.2f} GiB "
              f"({'fits' if memory <= limit else 'does not fit'} in {limit / 2**30:.1f} GiB)", flush=True)
        if memory > limit:
            break
    return rows


def time_steps(vgg, size: int, optimizer: str, steps: int, repeats: int, precision: str = "float32",
               remat: bool = False, **options) -> dict:
    """``options``: other StyleConfig fields (e.g. shallower layers for quick checks)."""
    content, style = _images(size)
    config = StyleConfig(optimizer=optimizer, iterations=steps, precision=precision, remat=remat, **options)
    program = Program.build(config, vgg, steps)
    params = program.objective.params(vgg)
    weights = loss_weights(config)
    targets = compute_targets(params, content, style, objective=program.objective)
    state = init_state(params, jnp.asarray(content), targets, weights, program=program)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, _ = run_chunk(params, state, targets, weights, jnp.int32(steps), program=program)
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, losses = run_chunk(params, state, targets, weights, jnp.int32(steps), program=program)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - start) / steps)
    step = statistics.median(times)
    memory = compiled_bytes(vgg, *content.shape[:2], config)  # after timing: it would pre-compile the loop
    return {"size": list(content.shape[:2]), "optimizer": optimizer, "precision": precision, "remat": remat,
            "steps_per_repeat": steps, "repeats": repeats, "step_seconds_median": step, "step_seconds_all": times,
            "compile_seconds": max(first - steps * step, 0.0), "final_loss": float(np.asarray(losses)[-1]),
            "flops_per_evaluation": step_flops(*content.shape[:2], config),
            "compiled_memory_bytes": memory, **peak_memory_bytes()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--optimizers", default="lbfgs,jaxopt-lbfgs,adam")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="float32")
    parser.add_argument("--remat", action="store_true", help="time with per-block rematerialisation")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--fit", action="store_true", help="also find the largest size whose compiled "
                        "memory fits the device (host RAM on CPU), per precision")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = random_vgg() if args.random_weights else load_vgg19()
    info = machine_info()
    precisions = args.precisions.split(",")
    peaks = {p: matmul_peak(p) for p in precisions}
    print("matmul peak: " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()), flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for optimizer in args.optimizers.split(","):
            for precision in precisions:
                row = time_steps(vgg, size, optimizer, args.steps, args.repeats, precision, args.remat)
                # one evaluation per step: Adam always; the L-BFGS line searches accept their first
                # trial almost always after the first steps, so this is a lower bound on achieved FLOP/s
                row["achieved_flops_per_second"] = row["flops_per_evaluation"] / row["step_seconds_median"]
                row["matmul_peak_flops_per_second"] = peaks[precision]
                row["fraction_of_matmul_peak"] = row["achieved_flops_per_second"] / peaks[precision]
                rows.append(row)
                memory = row["compiled_memory_bytes"]
                print(f"{info['device_kind']:>10s} {row['size'][0]}x{row['size'][1]:<5d} {optimizer:13s} "
                      f"{precision:9s} step {row['step_seconds_median'] * 1e3:8.1f} ms  compile "
                      f"{row['compile_seconds']:6.1f} s  {row['achieved_flops_per_second'] / 1e9:6.0f} GFLOP/s "
                      f"({row['fraction_of_matmul_peak']:.0%} of matmul)  compiled memory "
                      f"{memory / 2**20 if memory else float('nan'):7.0f} MiB", flush=True)
    fit = {}
    if args.fit:
        limit = available_bytes()[0]
        for precision in precisions:
            for remat in (False, True):
                print(f"largest size, {precision}{', remat' if remat else ''}:", flush=True)
                fit[f"{precision}{'-remat' if remat else ''}"] = largest_fitting_size(
                    vgg, StyleConfig(precision=precision, remat=remat), limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"step_time-{info['platform']}-{info['date'][:19].replace(':', '')}.json"
    (out / name).write_text(json.dumps({"machine": info, "weights": "random" if args.random_weights else vgg.source,
                                        "results": rows, "matmul_peak_flops_per_second": peaks, "fit": fit}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
