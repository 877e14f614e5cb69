"""Step time of `stylize` without the live page, with it served but unwatched, and with a page watching.

    python -m benchmarks.preview --size 256 --steps 120 --every 10

The watcher is another process (as a browser is): it follows the event stream and downloads the
image at every new version, as the page does. Steps per second are taken over the chunks after the
first (compiling excluded); every configuration runs the same steps on the same pair. Writes JSON to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_info
from benchmarks.step_time import SHARED, random_vgg
from jaxstyle import StyleConfig, load_vgg19
from jaxstyle.engine.stylize import stylize
from jaxstyle.io import images as image_io
from jaxstyle.jobs import live as live_page

WATCHER = r"""
import json, sys, urllib.request
base, token = sys.argv[1].split("/?token=")
fetched = 0
with urllib.request.urlopen(f"{base}/events?token={token}", timeout=600) as stream:
    for line in stream:
        if line.startswith(b"data: "):
            state = json.loads(line[6:])
            if state["has_image"]:
                urllib.request.urlopen(f"{base}/image.png?token={token}&v={state['version']}", timeout=60).read()
                fetched += 1
            if state["status"] != "running":
                break
print(fetched)
"""


def run(content, style, vgg, config, every: int, mode: str) -> dict:
    times = []
    page = watcher = None
    if mode != "off":
        page = live_page.start("benchmark", config.total_iterations, config, "127.0.0.1", 0, lambda m: None)
    if mode == "watched":
        watcher = subprocess.Popen([sys.executable, "-c", WATCHER, page.server.url], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)

    def callback(progress):
        times.append((time.perf_counter(), progress.step))
        if page is not None:
            page.progressed(progress, progress.image, Path("/nonexistent/out.png"))

    stylize(content, style, vgg=vgg, config=config, callback=callback, callback_every=every,
            track_terms=page is not None, steer=None if page is None else lambda step: page.steer(step, print))
    fetched = None
    if page is not None:
        page.close("done")
    if watcher is not None:
        fetched = int(watcher.communicate(timeout=60)[0].strip() or 0)
    (t0, s0), (t1, s1) = times[0], times[-1]
    return {"mode": mode, "steps_per_second": (s1 - s0) / (t1 - t0), "images_fetched": fetched}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--random-weights", action="store_true")
    args = parser.parse_args(argv)
    content = image_io.load_image(SHARED / "tubingen.jpg", max_size=args.size)
    style = image_io.load_image(SHARED / "starry_night.jpg", max_size=args.size)
    vgg = random_vgg() if args.random_weights else load_vgg19()
    config = StyleConfig(iterations=args.steps)
    stylize(content, style, vgg=vgg, config=config, callback_every=args.every)  # compile everything once
    rows = []
    for _ in range(args.repeats):
        for mode in ("off", "served", "watched"):
            rows.append(run(content, style, vgg, config, args.every, mode))
            print(json.dumps(rows[-1]), flush=True)
    summary = {mode: float(np.median([r["steps_per_second"] for r in rows if r["mode"] == mode]))
               for mode in ("off", "served", "watched")}
    out = {"benchmark": "preview", "machine": machine_info(), "size": args.size, "steps": args.steps,
           "every": args.every, "rows": rows, "median_steps_per_second": summary,
           "watched_vs_off": summary["watched"] / summary["off"], "served_vs_off": summary["served"] / summary["off"]}
    path = Path(__file__).parent / "results" / f"preview-{time.strftime('%Y-%m-%dT%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary), f"watched/off {out['watched_vs_off']:.3f}", f"wrote {path}")


if __name__ == "__main__":
    main()
