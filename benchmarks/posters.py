"""Posters: block-by-block evaluation (jaxstyle.objective.blocks) measured.

    python -m benchmarks.posters --parts exactness,cost,tiles      # ~20 min on a 2-core CPU
    python -m benchmarks.posters --parts poster --poster-size 4096   # the 4096x3072 run, peak RSS

Parts:

* ``exactness``: value and gradient of the blocked objective against the whole image's, at 512 and
  1024 px, several block sizes, direct and Winograd convolutions; relative errors (norm of the
  difference over the norm), and Winograd's own distance from the direct convolution beside them.
* ``cost``: one value-and-gradient at 1024x768, whole image vs block sizes (compiled, best of 3).
* ``tiles``: independent tiles (each stylized alone, with its own Gram matrices: Neural-Tile's way)
  against block evaluation at the same size and steps; a figure with a crop at the tiles' corner,
  and a seam score: the mean colour jump across the tile boundaries over the mean jump between
  neighbouring pixels elsewhere (1: no seam).
* ``poster``: ``jaxstyle stylize --size N`` in a subprocess (the planner chooses everything), its
  wall time, the plan it printed, and its peak resident memory (``getrusage`` of the child).

Writes JSON to benchmarks/results/ and the figure to benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.machine import machine_info
from benchmarks.step_time import SHARED, random_vgg
from jaxstyle import StyleConfig, load_vgg19
from jaxstyle.engine.stylize import stylize
from jaxstyle.io import images as image_io
from jaxstyle.objective import blocks
from jaxstyle.objective.targets import content_targets, style_targets
from jaxstyle.objective.terms import Objective, loss_terms, loss_weights

CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def problem(vgg, config, size):
    """(params, objective, targets, weights, x) of tubingen in the style of starry_night at ``size``:
    x halfway between the content and the style image, resized (a mid-run iterate)."""
    objective = Objective.build(config, vgg)
    params = objective.params(vgg)
    content = jnp.asarray(image_io.load_image(str(CONTENT), max_size=size))
    style = jnp.asarray(image_io.load_image(str(STYLE), max_size=size))
    h, w = content.shape[:2]
    targets = {"content": content_targets(params, content, objective), "style": style_targets(params, style, objective)}
    x = 0.5 * content + 0.5 * jax.image.resize(style, (h, w, 3), "linear")
    return params, objective, targets, loss_weights(config), x


def whole_and_blocked(params, objective, targets, weights, x, block_size):
    h, w = x.shape[:2]
    whole = jax.jit(jax.value_and_grad(lambda x: loss_terms(params, x, targets, weights, objective)["total"]))
    blocking = blocks.Blocking(block_size)
    layout = blocking.layout(h, w, objective.layers, objective.winograd_layers)
    padded = blocks.pad_targets(targets, layout)
    blocked = jax.jit(jax.value_and_grad(
        lambda x: blocks.blocked_loss_terms(params, x, padded, weights, objective, layout, blocking)["total"]))
    return whole, blocked, layout


def exactness(vgg, args) -> list[dict]:
    rows = []
    for size, block_sizes in ((512, (128, 256)), (1024, (512,))):
        whole_grads = {}
        for conv in ("direct", "auto"):
            params, objective, targets, weights, x = problem(vgg, StyleConfig(conv=conv), size)
            for block in block_sizes:
                whole, blocked, layout = whole_and_blocked(params, objective, targets, weights, x, block)
                value, grad = whole(x)
                whole_grads[conv] = grad
                blocked_value, blocked_grad = blocked(x)
                row = {"size": list(x.shape[:2]), "conv": conv, "block_size": block, "blocks": layout.count,
                       "window": list(layout.window), "value_error": relative(blocked_value, value),
                       "gradient_error": relative(blocked_grad, grad)}
                rows.append(row)
                print("exactness", json.dumps(row), flush=True)
        rows.append({"size": list(x.shape[:2]), "winograd_vs_direct_gradient":
                     relative(whole_grads["auto"], whole_grads["direct"])})
        print("exactness", json.dumps(rows[-1]), flush=True)
    return rows


def best_of(fn, x, repeats=3) -> float:
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return min(times)


def cost(vgg, args) -> list[dict]:
    params, objective, targets, weights, x = problem(vgg, StyleConfig(), 1024)
    whole, _, _ = whole_and_blocked(params, objective, targets, weights, x, 512)
    whole_seconds = best_of(whole, x)
    rows = [{"evaluation": "whole", "size": list(x.shape[:2]), "seconds": whole_seconds}]
    print("cost", json.dumps(rows[-1]), flush=True)
    for block in (768, 512):
        _, blocked, layout = whole_and_blocked(params, objective, targets, weights, x, block)
        seconds = best_of(blocked, x)
        area = layout.count * layout.window[0] * layout.window[1] / (x.shape[0] * x.shape[1])
        rows.append({"evaluation": "blocks", "block_size": block, "blocks": layout.count, "window": list(layout.window),
                     "window_area_over_image": area, "seconds": seconds, "over_whole": seconds / whole_seconds})
        print("cost", json.dumps(rows[-1]), flush=True)
    return rows


def seam_score(image: np.ndarray, rows: list[int], cols: list[int]) -> float:
    """Mean colour jump across the given row and column boundaries over the mean jump elsewhere."""
    dy = np.abs(np.diff(image, axis=0)).sum(-1)  # dy[i] is the jump between rows i and i+1
    dx = np.abs(np.diff(image, axis=1)).sum(-1)
    at = np.concatenate([dy[[r - 1 for r in rows]].ravel(), dx[:, [c - 1 for c in cols]].ravel()])
    keep_y = np.ones(dy.shape[0], bool)
    keep_y[[r - 1 for r in rows]] = False
    keep_x = np.ones(dx.shape[1], bool)
    keep_x[[c - 1 for c in cols]] = False
    elsewhere = np.concatenate([dy[keep_y].ravel(), dx[:, keep_x].ravel()])
    return float(at.mean() / elsewhere.mean())


def tiles(vgg, args) -> dict:
    config = StyleConfig(iterations=args.tile_iterations)
    content = image_io.load_image(str(CONTENT), max_size=args.tile_size)
    style = image_io.load_image(str(STYLE), max_size=args.tile_size)
    h, w = content.shape[:2]
    rows, cols = [h // 2], [w // 2]
    start = time.perf_counter()
    tiled = np.zeros_like(content)
    for r0, r1 in ((0, rows[0]), (rows[0], h)):
        for c0, c1 in ((0, cols[0]), (cols[0], w)):
            tiled[r0:r1, c0:c1] = stylize(content[r0:r1, c0:c1], style, vgg=vgg, config=config, block_size=None).image
    tiled_seconds = time.perf_counter() - start
    result = stylize(content, style, vgg=vgg, config=config, block_size=max(h, w) // 2)
    blocked = result.image
    scores = {"tiles": seam_score(tiled, rows, cols), "blocks": seam_score(blocked, rows, cols),
              "content": seam_score(content, rows, cols)}
    figure = Path(__file__).parent / "figures" / f"posters-tiles-vs-blocks-{args.tile_size}.png"
    crop = max(h, w) // 5
    sheet = [tiled, blocked]
    crops = [im[rows[0] - crop // 2: rows[0] + crop // 2, cols[0] - crop // 2: cols[0] + crop // 2] for im in sheet]
    crops = [np.asarray(Image.fromarray((c * 255).astype(np.uint8)).resize((w, w * c.shape[0] // c.shape[1]),
                                                                            Image.NEAREST)) / 255.0 for c in crops]
    top = np.concatenate(sheet, axis=1)
    bottom = np.concatenate(crops, axis=1)
    canvas = Image.fromarray((np.concatenate([top, bottom], axis=0) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), f"independent tiles (own Gram each), seam {scores['tiles']:.2f}", fill=(255, 255, 255))
    draw.text((w + 8, 8), f"block evaluation (one Gram), seam {scores['blocks']:.2f}", fill=(255, 255, 255))
    draw.text((8, h + 8), "crop at the tiles' corner", fill=(255, 255, 255))
    figure.parent.mkdir(exist_ok=True)
    canvas.save(figure)
    out = {"size": [h, w], "iterations": args.tile_iterations, "seam_scores": scores, "figure": str(figure),
           "tiled_seconds": tiled_seconds, "blocked_seconds": result.seconds,
           "blocked_style_loss": result.losses["style"]}
    print("tiles", json.dumps(out), flush=True)
    return out


def poster(vgg, args) -> dict:
    output = Path(args.poster_output)
    command = [sys.executable, "-m", "jaxstyle", "stylize", str(CONTENT), str(STYLE), "-o", str(output),
               "--size", str(args.poster_size), "--iterations", str(args.poster_iterations),
               "--scale-iterations", str(args.poster_scale_iterations), "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out = {"command": " ".join(command[1:]), "returncode": proc.returncode, "seconds": seconds,
           "peak_rss_bytes": peak, "peak_rss_gb": peak / 1e9, "log": proc.stderr.strip().splitlines()[-12:]}
    if proc.returncode == 0:
        out["output_size"] = list(Image.open(output).size)
    print("poster", json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="exactness,cost,tiles")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--tile-size", type=int, default=384)
    parser.add_argument("--tile-iterations", type=int, default=60)
    parser.add_argument("--poster-size", type=int, default=4096)
    parser.add_argument("--poster-iterations", type=int, default=3)
    parser.add_argument("--poster-scale-iterations", type=int, default=5)
    parser.add_argument("--poster-output", default="/tmp/jaxstyle-poster.png")
    args = parser.parse_args()
    parts = args.parts.split(",")
    vgg = random_vgg() if args.random_weights else (load_vgg19() if parts != ["poster"] else None)
    out = {"benchmark": "posters", "machine": machine_info(), "real_weights": not args.random_weights}
    for part in parts:
        out[part] = {"exactness": exactness, "cost": cost, "tiles": tiles, "poster": poster}[part](vgg, args)
    name = f"posters-{'-'.join(parts)}-{time.strftime('%Y-%m-%dT%H%M%S')}"
    path = Path(__file__).parent / "results" / f"{name}.json"
    path.write_text(json.dumps(out, indent=1))
    print("wrote", path)


if __name__ == "__main__":
    main()
