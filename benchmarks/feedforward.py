"""Feed-forward stylization (``jaxstyle train`` / ``apply``) against optimisation (``stylize``).

    python -m benchmarks.feedforward training --devices 1,2,4 --size 128 --batch 8 --steps 6
    python -m benchmarks.feedforward inference --sizes 256,512,1024 [--model M.jaxstyle]
    python -m benchmarks.feedforward quality --model M.jaxstyle --style painting.jpg --photos a.jpg,b.jpg

Writes ``benchmarks/results/feedforward-<part>-<date>.json`` (machine info included; ``-o``).

* **training**: images/s of :func:`jaxstyle.engine.training.train_step` (the step ``jaxstyle train``
  runs) against the device count, each count in a fresh process (``XLA_FLAGS`` fake CPU devices
  here; real ones on a GPU host), the global batch fixed, compile excluded (the first step), real
  VGG-19 weights, the default objective. Fake CPU devices share this machine's cores, so on a CPU
  the figure shows that sharding costs nothing, not a speed-up.
* **inference**: images/s of the network (``apply``'s function, width 32, 5 residual blocks: the
  CLI's defaults; weights from ``--model`` or random, the speed is the same) at each size, batch
  1, against ``stylize`` with 300 L-BFGS steps at the same size on the same device: ``stylize``'s
  time = its targets and start (measured) + 300 x its measured seconds per step (a run of
  ``--stylize-steps`` steps after a compiling run; 300 steps at 1024 px would take half an hour
  on a CPU). The ratio is per image.
* **quality**: for each held-out photo, the objective ``stylize`` minimises (the model's own
  configuration, :func:`jaxstyle.style_problem`'s ``terms``) of the photo itself, of the
  network's output and of ``stylize``'s 300-step result; and the independent judge's style
  distance (:mod:`benchmarks.quality`, EfficientNet-Lite0) of each, with the share of
  ``stylize``'s move toward the painting that the network makes:
  ``(d(photo) - d(network)) / (d(photo) - d(stylize))`` (the issue asks for at least 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_info

RESULTS = Path(__file__).parent / "results"
STYLIZE_STEPS = 300


def _training_child(size: int, batch: int, steps: int) -> dict:
    """In the child process: images/s of train_step on every device it sees."""
    import jax

    from jaxstyle import StyleConfig, load_vgg19
    from jaxstyle.engine import training as T
    from jaxstyle.model.transformer import TransformerNet
    from jaxstyle.objective.resample import resize

    config = StyleConfig()
    vgg = load_vgg19()
    setup = T.TrainingSetup.build(config, vgg, TransformerNet())
    params = setup.objective.params(vgg)
    rng = np.random.default_rng(0)
    style = rng.random((size, size, 3), dtype=np.float32)
    targets = T.style_targets_for_training(params, [style], setup, size)
    optimizer = T.make_optimizer()
    mesh = T.training_mesh()
    state = T.init_train_state(jax.random.key(0), setup, optimizer, size)
    images = np.stack([np.asarray(resize(rng.random((size // 4, size // 4, 3), dtype=np.float32), (size, size)))
                       for _ in range(batch)])
    index = np.zeros(batch, np.int32)
    key = jax.random.key(1)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        state, metrics = T.train_step(state, params, targets, T.training_weights(config), images, index, key,
                                      setup=setup, optimizer=optimizer, mesh=mesh)
        float(metrics["loss"])
        times.append(time.perf_counter() - start)
    per_step = float(np.median(times[1:]))
    return {"devices": len(jax.devices()), "device_kind": jax.devices()[0].device_kind, "batch": batch,
            "size": size, "steps": steps, "compile_and_first_step_s": round(times[0], 2),
            "seconds_per_step": round(per_step, 4), "images_per_second": round(batch / per_step, 3)}


def training(devices: list[int], size: int, batch: int, steps: int) -> list[dict]:
    rows = []
    for count in devices:
        env = dict(os.environ)
        if "cpu" in os.environ.get("JAX_PLATFORMS", "cpu"):
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
            env["JAX_PLATFORMS"] = "cpu"
        code = ("import json; from benchmarks.feedforward import _training_child; "
                f"print('RESULT', json.dumps(_training_child({size}, {batch}, {steps})))")
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              cwd=Path(__file__).parent.parent)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            said = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and not ln.startswith(" ")
                    and not ln.startswith(("For simplicity", "-----"))]
            rows.append({"devices": count, "error": said[-1:]})
        else:
            rows.append(json.loads(line[7:]))
        print(rows[-1], flush=True)
    return rows


def _network(model: str | None):
    import jax

    from jaxstyle.model.transformer import TransformerNet, init_network

    if model:
        from jaxstyle.jobs.feedforward_model import load_model

        loaded = load_model(model)
        return loaded, loaded.metadata
    net = TransformerNet()
    params = init_network(jax.random.key(0), net, 64)
    from jaxstyle.engine.training import apply_network

    return (lambda x: apply_network(params, net, x, np.ones((x.shape[0], 1), np.float32))), {"random": True}


def inference(sizes: list[int], model: str | None, stylize_steps: int, repeats: int = 5) -> list[dict]:
    from jaxstyle import StyleConfig, load_image, load_vgg19, stylize

    vgg = load_vgg19()
    apply, _ = _network(model)
    shared = Path(__file__).parent.parent.parent / "shared" / "images"
    rows = []
    for size in sizes:
        content = load_image(shared / "tubingen.jpg", max_size=size)
        style = load_image(shared / "starry_night.jpg", max_size=size)
        batch = content[None]
        np.asarray(apply(batch))  # compile
        start = time.perf_counter()
        for _ in range(repeats):
            out = np.asarray(apply(batch))
        net_s = (time.perf_counter() - start) / repeats
        config = StyleConfig(iterations=stylize_steps)
        stylize(content, style, vgg=vgg, config=config, callback_every=stylize_steps)  # compile
        marks = []
        start = time.perf_counter()

        def mark(progress, marks=marks, start=start):
            marks.append((progress.step, time.perf_counter() - start))

        stylize(content, style, vgg=vgg, config=config, callback_every=1, callback=mark)
        per_step = (marks[-1][1] - marks[0][1]) / max(1, marks[-1][0] - marks[0][0])
        setup_s = marks[0][1] - per_step * marks[0][0]
        stylize_s = setup_s + STYLIZE_STEPS * per_step
        rows.append({"size": list(out.shape[1:3]), "network_s_per_image": round(net_s, 4),
                     "network_images_per_second": round(1 / net_s, 2), "stylize_steps_measured": stylize_steps,
                     "stylize_s_per_step": round(per_step, 4), "stylize_setup_s": round(setup_s, 3),
                     f"stylize_{STYLIZE_STEPS}_steps_s": round(stylize_s, 2), "speedup": round(stylize_s / net_s, 1)})
        print(rows[-1], flush=True)
    return rows


def quality(model: str, style_path: str, photos: list[str], size: int, figures: Path | None) -> list[dict]:
    from PIL import Image

    from benchmarks import quality as judge_module
    from jaxstyle import StyleConfig, load_image, load_vgg19, style_problem, stylize

    vgg = load_vgg19()
    loaded, metadata = _network(model)
    objective = metadata.get("objective", {})
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in objective.items()
              if k in StyleConfig.__dataclass_fields__}
    config = StyleConfig(**{**fields, "iterations": STYLIZE_STEPS})
    judge = judge_module.Judge()
    style = load_image(style_path, max_size=size)
    rows, strip = [], []
    for path in photos:
        photo = load_image(path, max_size=size)
        start = time.perf_counter()
        net_out = np.asarray(loaded(photo[None]))[0]
        net_s = time.perf_counter() - start
        start = time.perf_counter()
        optimised = stylize(photo, style, vgg=vgg, config=config).image
        stylize_s = time.perf_counter() - start
        problem = style_problem(photo, style, vgg=vgg, config=config)
        row = {"photo": Path(path).name, "size": list(photo.shape[:2]), "network_s": round(net_s, 3),
               "stylize_s": round(stylize_s, 1)}
        distances = {}
        for name, image in (("photo", photo), ("network", net_out), ("stylize", optimised)):
            terms = {k: float(v) for k, v in problem.terms(image).items()}
            judged = judge_module.score(judge, image, photo, style_path)
            distances[name] = judged["style_distance"]
            row[name] = {"objective": terms, "judge_style_distance": judged["style_distance"],
                         "judge_content_distance": judged["content_distance"]}
        moved = distances["photo"] - distances["stylize"]
        row["network_share_of_stylize_move"] = round((distances["photo"] - distances["network"]) / moved, 3)
        rows.append(row)
        strip.append((photo, net_out, optimised))
        print(Path(path).name, row["network_share_of_stylize_move"], flush=True)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        cell = 256
        sheet = Image.new("RGB", (3 * (cell + 4), len(strip) * (cell + 4)), "white")
        for i, images in enumerate(strip):
            for j, image in enumerate(images):
                picture = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
                picture.thumbnail((cell, cell))
                sheet.paste(picture, (j * (cell + 4), i * (cell + 4)))
        sheet.save(figures / f"feedforward-{Path(model).stem}-sheet.jpg", quality=90)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feedforward", description=__doc__.split("\n\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    t = parts.add_parser("training", help="training images/s against the device count")
    t.add_argument("--devices", default="1,2,4")
    t.add_argument("--size", type=int, default=128)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--steps", type=int, default=6)
    i = parts.add_parser("inference", help="network images/s against stylize at 300 steps")
    i.add_argument("--sizes", default="256,512,1024")
    i.add_argument("--model", default=None)
    i.add_argument("--stylize-steps", type=int, default=10)
    q = parts.add_parser("quality", help="objective and judge: photo, network, stylize at 300 steps")
    q.add_argument("--model", required=True)
    q.add_argument("--style", required=True)
    q.add_argument("--photos", required=True)
    q.add_argument("--size", type=int, default=256)
    q.add_argument("--figures", default=str(Path(__file__).parent / "figures"))
    for p in (t, i, q):
        p.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)
    if args.part == "training":
        rows = training([int(d) for d in args.devices.split(",")], args.size, args.batch, args.steps)
    elif args.part == "inference":
        rows = inference([int(s) for s in args.sizes.split(",")], args.model, args.stylize_steps)
    else:
        rows = quality(args.model, args.style, args.photos.split(","), args.size, Path(args.figures))
    record = {"benchmark": f"feedforward-{args.part}", "machine": machine_info(), "settings": vars(args),
              "results": rows}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S")
    out = Path(args.output) if args.output else RESULTS / f"feedforward-{args.part}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
