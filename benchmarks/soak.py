"""Soak: a long batch run stays flat in host memory and compiles once per program shape.

    python -m benchmarks.soak --pairs 300 --size 64 --batch-size 2

Writes a few hundred small synthetic pairs to a temporary folder (content images in three
aspect ratios, so three shape buckets; more distinct style images than the run caches, so the
style caches must evict) and runs them through :func:`jaxstyle.jobs.pairs.run_pairs` with random
VGG-19 weights, the path `jaxstyle batch` takes. After every finished pair it records the
process's resident memory (RSS, from /proc) and the number of XLA compilations so far
(JAX's ``/jax/core/compile/backend_compile_duration`` events).

What should hold: RSS flat once every bucket has been seen (no growth per pair: bounded caches,
no arrays kept), the optimisation loop compiled once per bucket (``loop_compiles``; a last,
smaller batch of a bucket is one more shape), and no compilation of anything after the first
batches of each bucket.
Writes JSON to benchmarks/results/ with the machine facts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from benchmarks.machine import machine_info
from benchmarks.step_time import random_vgg
from jaxstyle import StyleConfig
from jaxstyle.engine.batch import bucket_shape
from jaxstyle.jobs.manifest import Pair
from jaxstyle.jobs.pairs import CACHED_STYLES, run_pairs

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
SHAPES = ((32, 64), (64, 32), (64, 64), (30, 60), (66, 36), (50, 52))  # six sizes, three buckets at 64 px


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _write_images(folder: Path, pairs: int, styles: int, seed: int = 0) -> list[Pair]:
    rng = np.random.default_rng(seed)

    def save(path, h, w):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)

    for j in range(styles):
        save(folder / f"style{j:03d}.png", 64, 64)  # one style shape: one style-target program
    out = folder / "out"
    result = []
    for i in range(pairs):
        h, w = SHAPES[i % len(SHAPES)]
        save(folder / f"content{i:04d}.png", h, w)
        result.append(Pair(content=folder / f"content{i:04d}.png", style=folder / f"style{i % styles:03d}.png",
                           output=out / f"pair{i:04d}.png"))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--styles", type=int, default=2 * CACHED_STYLES, help="distinct style images")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: compiles.append(kw.get("fun_name", "?")) if event == COMPILE_EVENT else None)
    vgg = random_vgg()
    config = StyleConfig(iterations=args.steps)
    samples = []
    with tempfile.TemporaryDirectory(prefix="jaxstyle-soak-") as tmp:
        folder = Path(tmp)
        pairs = _write_images(folder, args.pairs, args.styles)
        (folder / "out").mkdir()
        start = time.perf_counter()

        def on_pair(record):
            live = jax.live_arrays()
            samples.append({"pair": len(samples) + 1, "rss_mib": round(rss_mib(), 1), "compiles": len(compiles),
                            "live_arrays": len(live), "live_array_mib": round(sum(a.nbytes for a in live) / 2**20, 1),
                            "seconds": round(time.perf_counter() - start, 2), "status": record["status"]})

        report = run_pairs(pairs, config=config, vgg=vgg, size=args.size, batch_size=args.batch_size,
                           report_path=folder / "out" / "report.json", on_pair=on_pair)
    buckets = len({bucket_shape(h, w, args.size) for h, w in SHAPES})
    settled = samples[len(samples) // 10:]  # after the first tenth of the run
    rss = np.array([s["rss_mib"] for s in settled])
    # Each bucket's pairs run together: a new bucket compiles new programs (a step in RSS).
    # Growth per pair is measured inside each bucket's run, after its first tenth.
    segments, current = [], [samples[0]]
    for sample in samples[1:]:
        if sample["compiles"] != current[-1]["compiles"]:
            segments.append(current)
            current = []
        current.append(sample)
    segments.append(current)
    per_bucket = []
    for segment in segments:
        part = segment[len(segment) // 10:]
        if len(part) >= 10:
            slope = np.polyfit([s["pair"] for s in part], [s["rss_mib"] for s in part], 1)[0]
            per_bucket.append({"pairs": f"{part[0]['pair']}-{part[-1]['pair']}",
                               "rss_mib": [part[0]["rss_mib"], part[-1]["rss_mib"]],
                               "growth_kib_per_pair": round(float(slope) * 1024, 2)})
    summary = {"pairs": args.pairs, "done": report["summary"]["done"], "buckets": buckets,
               "batch_size": args.batch_size, "distinct_styles": args.styles,
               "cached_styles": CACHED_STYLES,
               "compiles_total": len(compiles), "compiles_by_function": dict(Counter(compiles).most_common()),
               "compiles_after_first_tenth": len(compiles) - settled[0]["compiles"],
               "rss_mib_at": {str(s["pair"]): s["rss_mib"] for s in samples[:: max(1, len(samples) // 10)]},
               "compiles_at": {str(s["pair"]): s["compiles"] for s in samples[:: max(1, len(samples) // 10)]},
               "live_arrays_at": {str(s["pair"]): s["live_arrays"] for s in samples[:: max(1, len(samples) // 10)]},
               "live_array_mib_end": samples[-1]["live_array_mib"],
               "rss_mib_first_tenth_end": float(rss[0]), "rss_mib_end": float(rss[-1]),
               "rss_mib_max_after_first_tenth": float(rss.max()),
               "rss_within_buckets": per_bucket,
               "seconds": samples[-1]["seconds"]}
    print(json.dumps(summary, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    path = out / f"soak-{stamp}.json"
    path.write_text(json.dumps({"machine": machine_info(), "args": vars(args), "summary": summary,
                                "samples": samples}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
