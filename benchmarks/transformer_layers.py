"""The feed-forward network's convolutions, per layer and whole, "direct" (lax.conv) against "matmul".

    python -m benchmarks.transformer_layers --sizes 256,512 --batches 1,4

For each convolution of ``TransformerNet(width=32, residual_blocks=5)`` (one row for the five
blocks' ten identical 3x3 convolutions, timed once) at each image size and batch: the forward pass
(what ``apply`` runs) and the forward pass plus the gradients with respect to the input and the
kernel (what a training step runs), as compiled functions, median of ``--reps`` after a warm-up,
for both formulations of :class:`jaxstyle.model.transformer.Conv`. Then the whole network the same
way (``apply``; and the gradient of a mean square of its output with respect to the parameters and
the image). GFLOP/s counts the direct convolution's multiply-adds, so the faster one has the higher
number. Writes JSON (with the machine and the load average) to benchmarks/results/ and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.conv_layers import median_seconds
from benchmarks.machine import machine_info
from jaxstyle.model.transformer import Conv, TransformerNet, init_network

FORMULATIONS = ("direct", "matmul")


def layers(size: int, width: int = 32) -> list[dict]:
    """The network's convolutions at a ``size`` x ``size`` input: name, input grid, channels, kernel,
    stride, upsampling; ``count`` how many the network has of that shape."""
    w = width
    return [dict(name="conv_in", grid=size, cin=3, cout=w, k=9, stride=1, up=False, count=1),
            dict(name="down_1", grid=size, cin=w, cout=2 * w, k=3, stride=2, up=False, count=1),
            dict(name="down_2", grid=size // 2, cin=2 * w, cout=4 * w, k=3, stride=2, up=False, count=1),
            dict(name="residual", grid=size // 4, cin=4 * w, cout=4 * w, k=3, stride=1, up=False, count=10),
            dict(name="up_1", grid=size // 4, cin=4 * w, cout=2 * w, k=3, stride=1, up=True, count=1),
            dict(name="up_2", grid=size // 2, cin=2 * w, cout=w, k=3, stride=1, up=True, count=1),
            dict(name="conv_out", grid=size, cin=w, cout=3, k=9, stride=1, up=False, count=1)]


def _layer_functions(layer: dict, conv: str):
    module = Conv(layer["cout"], layer["k"], layer["stride"], layer["up"], conv=conv)

    def forward(kernel, x):
        return module.apply({"params": {"kernel": kernel}}, x)

    def train(kernel, x):
        return jax.grad(lambda kernel, x: jnp.sum(jnp.square(forward(kernel, x))), argnums=(0, 1))(kernel, x)

    return jax.jit(forward), jax.jit(train)


def measure_layers(size: int, batch: int, reps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for layer in layers(size):
        k, cin, cout, grid = layer["k"], layer["cin"], layer["cout"], layer["grid"]
        x = jnp.asarray(rng.uniform(0, 1, (batch, grid, grid, cin)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
        out_grid = 2 * grid if layer["up"] else grid // layer["stride"]
        flops = 2 * k * k * cin * cout * out_grid * out_grid * batch
        row = {**layer, "batch": batch, "size": size}
        for conv in FORMULATIONS:
            forward, train = _layer_functions(layer, conv)
            row[f"{conv}_ms"] = round(median_seconds(forward, kernel, x, reps=reps) * 1e3, 2)
            row[f"{conv}_train_ms"] = round(median_seconds(train, kernel, x, reps=reps) * 1e3, 2)
            row[f"{conv}_gflops"] = round(flops / row[f"{conv}_ms"] / 1e6, 1)
        rows.append(row)
        print(f"{size} px x{batch} {layer['name']}: direct {row['direct_ms']} / {row['direct_train_ms']} ms, "
              f"matmul {row['matmul_ms']} / {row['matmul_train_ms']} ms", flush=True)
    return rows


def measure_network(size: int, batch: int, reps: int) -> dict:
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)), jnp.float32)
    mix = jnp.ones((batch, 1), jnp.float32)
    params = init_network(jax.random.PRNGKey(0), TransformerNet(), size=16)
    row = {"size": size, "batch": batch}
    for conv in FORMULATIONS:
        net = TransformerNet(conv=conv)

        def loss(p, x, net=net):
            return jnp.mean(jnp.square(net.apply({"params": p}, x, mix) - 0.5))

        apply = jax.jit(lambda p, x, net=net: net.apply({"params": p}, x, mix))
        row[f"{conv}_ms"] = round(median_seconds(apply, params, x, reps=reps) * 1e3, 1)
        train = jax.jit(jax.grad(loss, argnums=(0, 1)))
        row[f"{conv}_train_ms"] = round(median_seconds(train, params, x, reps=reps) * 1e3, 1)
    print(f"{size} px x{batch} network: direct {row['direct_ms']} / {row['direct_train_ms']} ms, "
          f"matmul {row['matmul_ms']} / {row['matmul_train_ms']} ms", flush=True)
    return row


def tables(layer_rows: list[dict], network_rows: list[dict]) -> str:
    lines = ["| size x batch | layer | in -> out | direct ms | matmul ms | direct GFLOP/s | matmul eff. GFLOP/s "
             "| fwd+bwd direct ms | fwd+bwd matmul ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in layer_rows:
        name = r["name"] + (f" (x{r['count']})" if r["count"] > 1 else "")
        lines.append(f"| {r['size']} x{r['batch']} | {name} | {r['grid']}^2 x {r['cin']} -> {r['cout']} "
                     f"| {r['direct_ms']} | {r['matmul_ms']} | {r['direct_gflops']} | {r['matmul_gflops']} "
                     f"| {r['direct_train_ms']} | {r['matmul_train_ms']} |")
    lines += ["", "| size x batch | apply direct ms | apply matmul ms | speed-up | fwd+bwd direct ms "
              "| fwd+bwd matmul ms | speed-up |", "|---|---|---|---|---|---|---|"]
    for r in network_rows:
        lines.append(f"| {r['size']} x{r['batch']} | {r['direct_ms']} | {r['matmul_ms']} "
                     f"| {r['direct_ms'] / r['matmul_ms']:.1f}x | {r['direct_train_ms']} | {r['matmul_train_ms']} "
                     f"| {r['direct_train_ms'] / r['matmul_train_ms']:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512", help="comma-separated square image sizes")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-layers", action="store_true", help="only the whole network")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    results = {"machine": {**machine_info(), "load_average_before": os.getloadavg()}, "layers": [], "network": []}
    for size in map(int, args.sizes.split(",")):
        for batch in map(int, args.batches.split(",")):
            if not args.skip_layers:
                results["layers"] += measure_layers(size, batch, args.reps)
            results["network"].append(measure_network(size, batch, args.reps))
    results["machine"]["load_average_after"] = os.getloadavg()
    print(f"\n{tables(results['layers'], results['network'])}\n", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"transformer_layers-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
