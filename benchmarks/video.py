"""Video modes compared on a real clip: temporal consistency, style, content and time per frame.

    python -m benchmarks.video --frames 12 --size 256 --iterations 40
    python -m benchmarks.video --modes independent,default --frames 48      # fewer modes, longer clip
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.video --modes parallel

Modes (each the engine's :func:`jaxstyle.engine.video.stylize_video` on the same frames, flows and
style; ``--iterations`` steps per later frame or pass, twice that for a fresh start):

* ``independent``: every frame stylized alone from its content (the parallel mode's first pass only);
* ``warped``: sequential, each frame started from the previous output warped, no temporal loss;
* ``default``: sequential with the short-term temporal loss (what ``jaxstyle video`` does);
* ``longterm``: sequential with the long-term loss over frames 1, 2 and 4 back;
* ``multipass``: Ruder's multi-pass algorithm (``--passes``, alternating directions);
* ``parallel``: Jacobi passes, every frame of a pass at once over all devices.

``--model M`` (a ``jaxstyle train`` model) adds ``network``: the model on each frame alone, one
forward pass each (the objective's terms then come from :func:`jaxstyle.style_problem` per frame).

For each: the warping error of Lai et al. (2018; the output's later frame warped onto the earlier
with the input's flow, over the input's unoccluded pixels; the input's own as the floor), the mean
style and content loss of the output frames, and seconds per frame (flows excluded: they are
computed once, before, and shared). Writes JSON to benchmarks/results/ and a contact sheet (rows:
modes, columns: frames) to benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.machine import machine_info
from benchmarks.step_time import SHARED, random_vgg
from jaxstyle import StyleConfig, load_vgg19
from jaxstyle.config import VideoConfig
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.engine.video import memoized_flows, stylize_video
from jaxstyle.flow import DISFlow
from jaxstyle.io import images as image_io
from jaxstyle.io import video as video_io
from jaxstyle.jobs.video import temporal_error

CLIP = SHARED.parent / "videos" / "bigbuckbunny.mp4"
MODES = ("independent", "warped", "default", "longterm", "multipass", "parallel")


def video_config(mode: str, args) -> VideoConfig:
    common = {"temporal_weight": args.temporal_weight}
    return {"independent": VideoConfig(mode="parallel", passes=1),
            "warped": VideoConfig(temporal_weight=0.0),
            "default": VideoConfig(**common),
            "longterm": VideoConfig(relative_frames=(1, 2, 4), **common),
            "multipass": VideoConfig(passes=args.passes, **common),
            "parallel": VideoConfig(mode="parallel", passes=args.parallel_passes, **common)}[mode]


def network_mode(model_path: str, frames, style, vgg, config: StyleConfig, flows) -> tuple[dict, list]:
    """A feed-forward model on each frame alone: its warping error, its outputs' objective terms
    (the video's configuration, as the other modes are scored) and seconds per frame."""
    from jaxstyle import load_model, style_problem

    model = load_model(model_path)
    np.asarray(model(frames[0][None]))  # compile
    begin = time.perf_counter()
    out = [np.asarray(model(frame[None]))[0] for frame in frames]
    seconds = time.perf_counter() - begin
    terms = [style_problem(frame, style, vgg=vgg, config=config).terms(o) for frame, o in zip(frames, out)]
    return {"model": model_path, "warping_error": temporal_error(out, flows),
            "style_loss": float(np.mean([float(t["style"]) for t in terms])),
            "content_loss": float(np.mean([float(t["content"]) for t in terms])),
            "seconds_per_frame": seconds / len(frames), "seconds": seconds}, out


def contact_sheet(rows: dict[str, list[np.ndarray]], columns: list[int], path: Path) -> None:
    h, w = next(iter(rows.values()))[0].shape[:2]
    label = 90
    sheet = Image.new("RGB", (label + w * len(columns), h * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, frames) in enumerate(rows.items()):
        draw.text((4, r * h + h // 2 - 6), name, fill="black")
        for c, i in enumerate(columns):
            sheet.paste(Image.fromarray(image_io.to_uint8(frames[i])), (label + c * w, r * h))
    sheet.save(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--style", type=Path, default=SHARED / "starry_night.jpg")
    parser.add_argument("--start", type=int, default=0, help="first frame of the clip")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--temporal-weight", type=float, default=VideoConfig.temporal_weight)
    parser.add_argument("--passes", type=int, default=3, help="multipass: passes")
    parser.add_argument("--parallel-passes", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--model", default=None, help="a feed-forward model: adds the mode `network`")
    parser.add_argument("--random-weights", action="store_true", help="no real weights needed (timing only)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    frames = [frame for _, frame in video_io.read_frames(args.clip, args.size, start=args.start,
                                                           end=args.start + args.frames)]
    style = image_io.load_image(args.style, max_size=args.size)
    vgg = random_vgg() if args.random_weights else load_vgg19()
    started = time.perf_counter()
    flows = memoized_flows(frames, DISFlow())
    for i in range(1, len(frames)):
        for j in (1, 2, 4):
            if i - j >= 0:
                flows(i, i - j), flows(i - j, i)
    flow_seconds = time.perf_counter() - started
    config = StyleConfig(iterations=args.iterations)
    results, rows = {}, {}
    floor = temporal_error(frames, flows)
    for mode in args.modes.split(","):
        video = video_config(mode, args)
        mesh = batch_mesh() if video.mode == "parallel" else None
        begin = time.perf_counter()
        result = stylize_video(frames, style, vgg=vgg, flow=flows, config=config, video=video, mesh=mesh)
        seconds = time.perf_counter() - begin
        out = result.frames(len(frames))
        last = [r for r in result.records if r.pass_index == result.passes - 1]
        results[mode] = {
            "video": repr(video), "warping_error": temporal_error(out, flows),
            "style_loss": float(np.mean([r.losses["style"] for r in last])),
            "content_loss": float(np.mean([r.losses["content"] for r in last])),
            "seconds_per_frame": seconds / len(frames), "seconds": seconds, "cuts": result.cuts,
            "steps": int(sum(r.steps for r in result.records))}
        rows[mode] = out
        print(mode, json.dumps(results[mode]), flush=True)
    if args.model:
        results["network"], rows["network"] = network_mode(args.model, frames, style, vgg, config, flows)
        print("network", json.dumps(results["network"]), flush=True)
    base = results.get("independent")
    if base:
        for r in results.values():
            r["warping_error_vs_independent"] = r["warping_error"] / base["warping_error"]
            r["style_loss_vs_independent"] = r["style_loss"] / base["style_loss"]
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    kind = jax.devices()[0].platform
    out = {"benchmark": "video", "machine": machine_info(), "clip": str(args.clip), "start": args.start,
           "frames": len(frames), "size": list(frames[0].shape[:2]), "iterations": args.iterations,
           "style": str(args.style), "input_warping_error": floor, "flow_seconds": flow_seconds,
           "real_weights": not args.random_weights, "devices": len(jax.local_devices()), "modes": results}
    name = f"video-{kind}{len(jax.local_devices())}{'-' + args.tag if args.tag else ''}-{stamp}"
    path = Path(__file__).parent / "results" / f"{name}.json"
    path.write_text(json.dumps(out, indent=1))
    figures = Path(__file__).parent / "figures"
    figures.mkdir(exist_ok=True)
    columns = sorted({0, len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1})
    contact_sheet(rows, columns, figures / f"{name}.png")
    print(f"input warping error {floor:.6f}; wrote {path}")


if __name__ == "__main__":
    main()
