"""Every VGG-19 3x3 convolution shape: direct (lax.conv) against Winograd F(4x4, 3x3).

    python -m benchmarks.conv_layers --sizes 512x384,256x192

For each layer at each image size (width x height), the time of the forward convolution plus its
input gradient (what one optimisation step runs per layer: the weights are frozen; Winograd's
kernel transforms are done beforehand, as a run does them once), as compiled functions, median
of ``--reps`` after a warm-up. Effective GFLOP/s counts the direct
convolution's multiply-adds (2 * 9 * H * W * I * O per pass, two passes) for both, so that the
faster one has the higher number. Writes JSON to benchmarks/results/ and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import machine_info
from jaxstyle.model.vgg import CONV_KERNEL_SHAPES, conv3x3, poolings_before
from jaxstyle.model.winograd import transform_kernels, winograd_conv3x3


def _fwd_and_input_grad(conv):
    def run(x, kernels, cotangent):
        y, vjp = jax.vjp(lambda x: conv(x, *kernels), x)
        return y, vjp(cotangent)[0]

    return jax.jit(run)


def median_seconds(fn, *args, reps: int) -> float:
    """The median wall time of ``fn(*args)`` over ``reps`` runs after one (compiling) run."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(width: int, height: int, reps: int = 5) -> list[dict]:
    rng = np.random.default_rng(0)
    direct, winograd = _fwd_and_input_grad(conv3x3), _fwd_and_input_grad(winograd_conv3x3)
    rows, seen = [], {}
    for name, (_, _, cin, cout) in CONV_KERNEL_SHAPES.items():
        h, w = height >> poolings_before(name), width >> poolings_before(name)
        key = (h, w, cin, cout)
        if key in seen:  # same shape as an earlier layer: same numbers
            rows.append({**seen[key], "layer": name})
            continue
        x = jnp.asarray(rng.standard_normal((1, h, w, cin)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
        cotangent = jnp.asarray(rng.standard_normal((1, h, w, cout)), jnp.float32)
        t_direct = median_seconds(direct, x, (kernel,), cotangent, reps=reps)
        # Kernels transformed beforehand, as a run does once outside its loop.
        t_winograd = median_seconds(winograd, x, jax.jit(transform_kernels)(kernel), cotangent, reps=reps)
        flops = 2 * (2 * 9 * h * w * cin * cout)
        row = {"layer": name, "height": h, "width": w, "in": cin, "out": cout,
               "direct_ms": round(t_direct * 1e3, 2), "winograd_ms": round(t_winograd * 1e3, 2),
               "direct_gflops": round(flops / t_direct / 1e9, 1), "winograd_gflops": round(flops / t_winograd / 1e9, 1),
               "speedup": round(t_direct / t_winograd, 2)}
        seen[key] = row
        rows.append(row)
        print(f"{width}x{height} {name} {w}x{h} {cin}->{cout}: direct {row['direct_ms']} ms, "
              f"winograd {row['winograd_ms']} ms ({row['speedup']}x)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| layer | input (w x h x ch) | out ch | direct ms | Winograd ms | direct GFLOP/s | Winograd eff. GFLOP/s "
             "| speed-up |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['width']}x{r['height']}x{r['in']} | {r['out']} | {r['direct_ms']} | "
                     f"{r['winograd_ms']} | {r['direct_gflops']} | {r['winograd_gflops']} | {r['speedup']}x |")
    total_d, total_w = sum(r["direct_ms"] for r in rows), sum(r["winograd_ms"] for r in rows)
    lines.append(f"| all 16 | | | {total_d:.0f} | {total_w:.0f} | | | {total_d / total_w:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512x384,256x192", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    results = {"machine": machine_info(), "sizes": {}}
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        rows = measure(width, height, args.reps)
        results["sizes"][size] = rows
        print(f"\n{size}\n{table(rows)}\n", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"conv_layers-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
