"""Single-scale against coarse-to-fine: loss of the full-size image against wall time.

    python -m benchmarks.coarse_to_fine --size 512 --iterations 300 \
        --schedules "none;256,362:100" --max-final 300

Each schedule is ``COARSE_SCALES:STEPS_PER_COARSE_STAGE`` (``none`` = single scale). The
full-size stage is traced every ``--check-every`` steps: (seconds since the run started,
loss at the full size); compile time is included, as a user would see it. The first
schedule's last traced loss is the target; for every schedule the report gives the time at
which its full-size loss first reached it (traced losses are those before each step).
Writes benchmarks/results/coarse_to_fine-*.json and the output images (PNG) to look at.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from benchmarks.machine import machine_info
from benchmarks.step_time import SHARED
from jaxstyle import StyleConfig, load_vgg19, stylize
from jaxstyle.io import images as image_io


def parse_schedule(text: str) -> tuple[tuple[int, ...], int]:
    if text == "none":
        return (), 0
    scales, _, steps = text.partition(":")
    return tuple(int(s) for s in scales.split(",")), int(steps)


def run_schedule(vgg, content, style, config: StyleConfig, check_every: int) -> dict:
    trace = []
    start = time.perf_counter()

    def on_progress(progress):
        if progress.step > config.total_iterations - config.iterations:  # the full-size stage
            trace.append((progress.step, time.perf_counter() - start, progress.loss))

    result = stylize(content, style, config=config, vgg=vgg, callback=on_progress, callback_every=check_every)
    return {"scales": list(config.scales), "scale_iterations": config.scale_iterations,
            "iterations": config.iterations, "wall_seconds": time.perf_counter() - start,
            "final_loss": result.losses["total"], "trace": trace, "image": result.image}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=300, help="full-size steps of the first schedule")
    parser.add_argument("--max-final", type=int, default=300, help="full-size steps of the other schedules")
    parser.add_argument("--schedules", default="none;256,362:100")
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = load_vgg19()
    content = image_io.load_image(SHARED / "tubingen.jpg", max_size=args.size)
    style = image_io.load_image(SHARED / "starry_night.jpg", max_size=args.size)
    info = machine_info()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"{info['platform']}-{info['date'][:19].replace(':', '')}"
    rows = []
    for index, text in enumerate(args.schedules.split(";")):
        scales, steps = parse_schedule(text)
        config = StyleConfig(scales=scales, scale_iterations=steps, precision=args.precision,
                             iterations=args.iterations if index == 0 else args.max_final)
        row = run_schedule(vgg, content, style, config, args.check_every)
        image_io.save_image(out / f"coarse_to_fine-{stamp}-{text.replace(',', '_').replace(':', '-')}.png",
                            row.pop("image"))
        target = (rows[0] if rows else row)["trace"][-1][2]  # the first schedule's last traced loss
        reached = next(((s, t) for s, t, v in row["trace"] if v <= target), None)
        row.update(schedule=text, target_loss=target, reached_target_at_step=reached and reached[0],
                   reached_target_seconds=reached and reached[1])
        rows.append(row)
        print(f"{text:>18s}: {row['wall_seconds']:7.1f} s, final loss {row['final_loss']:.6g}; "
              f"target {target:.6g} reached " + (f"at step {reached[0]} after {reached[1]:.1f} s" if reached
                                                  else "never"), flush=True)
    name = f"coarse_to_fine-{stamp}.json"
    (out / name).write_text(json.dumps({"machine": info, "size": args.size, "precision": args.precision,
                                        "config": dataclasses.asdict(StyleConfig()), "results": rows}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
