"""Frontiers of style methods at equal wall time, judged by :mod:`benchmarks.quality`.

    python -m benchmarks.quality sweep --pairs tubingen.jpg:starry_night.jpg,golden_gate.jpg:the_scream.jpg \\
        --methods gram --style-weights 1e-4,1e-3,1e-2 --seconds 40 --size 256 \\
        -o benchmarks/results/quality-<date>.json --figures benchmarks/figures

For every pair x method x style weight, ``jaxstyle.stylize`` runs (Python API, the cached VGG-19,
both images read as the CLI reads them at ``--size``) until ``--seconds`` of wall time have
passed, and the output is judged (style distance to the painting, content distance to the
photograph; definitions in :mod:`benchmarks.quality`). The points of one method over the style
weights trace its frontier (lower-left is better).

**Equal wall time.** A run is given a practically endless step budget and a callback every
``--check-every`` steps (one compiled chunk); the clock starts when ``stylize`` is called (style
targets, the start image and planning count) and the run is stopped at the first callback past
``--seconds``. The image judged is the last one reached within ``--seconds`` (so no run gets more
than the budget; the overshoot of at most one chunk is not used). **Compile time is excluded**:
before the timed runs of a pair and method, a warm-up run of 2 chunks compiles the loop, its
start and its evaluation (the loss weights are traced inputs, so the timed runs compile
nothing; each run's ``trace`` of (step, seconds) shows it). Everything runs one run at a time in
one process on the same machine, pair by pair, and within a pair weight by weight with the
methods in turn (a drift in the machine's load then hits every method alike); the load average
before and after is recorded.

**Methods** are names in :data:`METHODS`, each the extra :class:`jaxstyle.StyleConfig` fields of a
style loss; ``--methods`` also takes ad-hoc ones, ``name:field=value:field=value`` (values read
as Python literals, else strings), e.g. ``adam:optimizer='adam'``. The key ``weight_scale``
multiplies the swept style weights for that method (for a loss on another scale than Gram's).

Writes the JSON (machine, settings, judge, reference points, one record per run), a frontier
figure ``<stem>-frontier.png`` (one panel per pair) and a contact sheet ``<stem>-sheet.jpg``
(rows: the photograph, the painting, then method x weight; columns: pairs) into ``--figures``
(default: beside the JSON; benchmarks/results/*.png are git-ignored, benchmarks/figures/ is not).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks import quality
from benchmarks.machine import machine_info
from benchmarks.schedules import kc_timed_run
from benchmarks.step_time import SHARED

# One line per method: the StyleConfig fields that select it (the default's other fields are kept).
METHODS: dict[str, dict] = {
    "gram": {"style_loss": "gram"},
    "w2": {"style_loss": "w2"},
    "sliced": {"style_loss": "sliced"},
    # schedules (a 256 px run): KC's sqrt(2)-spaced coarse-to-fine from 128 px, and Adam
    "w2-c2f": {"style_loss": "w2", "scales": (128, 181), "scale_iterations": 40},
    "w2-adam": {"style_loss": "w2", "optimizer": "adam"},
    "w2-adam-c2f": {"style_loss": "w2", "optimizer": "adam", "scales": (128, 181), "scale_iterations": 100},
    "gram-c2f": {"style_loss": "gram", "scales": (128, 181), "scale_iterations": 40},
    # Crowson's whole schedule (benchmarks.schedules): Adam with moments carried across sqrt(2) scales, EMA output
    "w2-kc": {"style_loss": "w2", "schedule": "kc", "scale_iterations": 40},
    "gram-kc": {"style_loss": "gram", "schedule": "kc", "scale_iterations": 40},
}
ENDLESS = 1_000_000  # the step budget of a timed run: time stops it, never this


class _TimeUp(Exception):
    pass


def parse_methods(text: str) -> dict[str, dict]:
    """``"gram,adam:optimizer='adam'"`` -> {"gram": {}, "adam": {"optimizer": "adam"}}."""
    methods = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *fields = item.split(":")
        if not fields:
            if name not in METHODS:
                raise ValueError(f"expected a method in {sorted(METHODS)} or name:field=value, got {name!r}")
            methods[name] = dict(METHODS[name])
            continue
        options = dict(METHODS.get(name, {}))
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep or not key:
                raise ValueError(f"expected field=value in method {name!r}, got {field!r}")
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                options[key] = value
        methods[name] = options
    if not methods:
        raise ValueError(f"expected at least one method, got {text!r}")
    return methods


def resolve_pairs(text: str, folder: Path = SHARED) -> list[tuple[Path, Path]]:
    """``"a.jpg:b.jpg,..."`` -> [(content, style)], each a path as given or else in ``folder``."""
    def find(name: str) -> Path:
        for path in (Path(name), folder / name):
            if path.is_file():
                return path
        raise ValueError(f"expected an image file, got {name!r} (looked in . and {folder})")

    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        content, sep, style = item.rpartition(":")
        if not sep or not content:
            raise ValueError(f"expected content:style, got {item!r}")
        pairs.append((find(content), find(style)))
    return pairs


def style_config(method_options: dict, style_weight: float, iterations: int):
    from jaxstyle import StyleConfig

    options = {k: v for k, v in method_options.items() if k not in ("weight_scale", "schedule")}
    if method_options.get("schedule") == "kc":  # its own scales (benchmarks.schedules)
        options.pop("scale_iterations", None)
    weight = style_weight * float(method_options.get("weight_scale", 1.0))
    return StyleConfig(**{**options, "style_weight": weight, "iterations": iterations})


def timed_run(content: np.ndarray, style: np.ndarray, config, seconds: float, *, vgg, check_every: int) -> dict:
    """One run stopped by the clock (module docstring): the image of the last callback within
    ``seconds``, its step, time and loss, and the (step, seconds) of every callback."""
    from jaxstyle import stylize

    trace, kept = [], {}

    def callback(progress):
        elapsed = time.perf_counter() - start
        trace.append((progress.step, round(elapsed, 4)))
        if elapsed <= seconds or not kept:
            kept.update(progress=progress, seconds=elapsed)
        if elapsed >= seconds:
            raise _TimeUp

    start = time.perf_counter()
    try:
        stylize(content, style, vgg=vgg, config=config, callback=callback, callback_every=check_every)
    except _TimeUp:
        pass
    progress = kept["progress"]
    steps = [s for s, _ in trace]
    times = [t for _, t in trace]
    per_step = (times[-1] - times[0]) / (steps[-1] - steps[0]) if len(trace) > 1 else times[0] / steps[0]
    return {"image": progress.image(), "steps": progress.step, "seconds": round(kept["seconds"], 3),
            "loss": float(progress.loss), "over_budget": kept["seconds"] > seconds,
            "ms_per_step": round(1000 * per_step, 2), "trace": trace}


def references(judge, pair: tuple[Path, Path], shape: tuple[int, int]) -> list[dict]:
    """The photograph itself and the painting stretched to the photograph's shape, judged as outputs."""
    content, style = pair
    return [{"kind": kind, **_scored(judge, quality.to_image(source, shape), content, style)}
            for kind, source in (("photo", content), ("painting", style))]


def _scored(judge, image, content, style) -> dict:
    result = quality.score(judge, image, content, style)
    return {k: result[k] for k in ("style_distance", "content_distance", "style_by_depth", "content_by_depth",
                                   "frechet_by_depth") if k in result}


def sweep(pairs: list[tuple[Path, Path]], methods: dict[str, dict], weights: list[float], *, seconds: float,
          size: int, check_every: int = 5, vgg=None, judge=None, log=print) -> tuple[dict, dict]:
    """Run and judge every pair x method x weight; returns (the JSON record, {(pair, method, weight):
    image}). ``vgg``: default the cached VGG-19; ``judge``: default :class:`benchmarks.quality.Judge`
    (anything with ``features(image)`` and ``info()``)."""
    from jaxstyle import load_image, load_vgg19, stylize

    vgg = load_vgg19() if vgg is None else vgg
    judge = quality.Judge() if judge is None else judge
    record = {"benchmark": "quality", "load_average_before": os.getloadavg(), "references": [], "runs": []}
    images = {}
    for content_path, style_path in pairs:
        pair = f"{content_path.stem}:{style_path.stem}"
        content, style = load_image(content_path, max_size=size), load_image(style_path, max_size=size)
        for ref in references(judge, (content_path, style_path), content.shape[:2]):
            record["references"].append({"pair": pair, **ref})
        images[(pair, "photo", None)] = content
        images[(pair, "painting", None)] = quality.to_image(style_path, content.shape[:2])
        warm = {}
        for method, options in methods.items():  # compile every method's programs before any clock runs
            start = time.perf_counter()
            if options.get("schedule") == "kc":
                kc_timed_run(content, style, style_config(options, weights[0], 1), 1e9, vgg=vgg,
                             scale_iterations=check_every, check_every=check_every, last_iterations=check_every)
            else:
                stylize(content, style, vgg=vgg, config=style_config(options, weights[0], 2 * check_every),
                        callback_every=check_every)
            warm[method] = time.perf_counter() - start
        for weight in weights:  # methods in turn within each weight: a drift in the machine's load hits all alike
            for method, options in methods.items():
                if options.get("schedule") == "kc":
                    run = kc_timed_run(content, style, style_config(options, weight, 1), seconds, vgg=vgg,
                                       scale_iterations=options["scale_iterations"], check_every=check_every)
                else:
                    run = timed_run(content, style, style_config(options, weight, ENDLESS), seconds, vgg=vgg,
                                    check_every=check_every)
                image = run.pop("image")
                images[(pair, method, weight)] = image
                entry = {"pair": pair, "method": method, "style_weight": weight, "size": list(image.shape[:2]),
                         **run, "warmup_seconds": round(warm[method], 2),
                         **_scored(judge, image, content_path, style_path)}
                record["runs"].append(entry)
                log(f"{pair} {method} {weight:g}: {entry['steps']} steps in {entry['seconds']:.1f} s, "
                    f"style {entry['style_distance']:.4f}, content {entry['content_distance']:.4f}")
    record["load_average_after"] = os.getloadavg()
    return record, images


def _label(weight) -> str:
    return "" if weight is None else f"{weight:.0e}".replace("e-0", "e-").replace("e+0", "e")


def frontier_figure(record: dict, path: Path) -> None:
    """Style distance against content distance, one panel per pair, a line per method (its points
    in order of style weight, labelled), the photograph and the painting as reference points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(r["pair"] for r in record["runs"]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        runs = [r for r in record["runs"] if r["pair"] == pair]
        for method in dict.fromkeys(r["method"] for r in runs):
            points = sorted((r for r in runs if r["method"] == method), key=lambda r: r["style_weight"])
            xs, ys = [r["content_distance"] for r in points], [r["style_distance"] for r in points]
            (line,) = ax.plot(xs, ys, "o-", label=method)
            for r, x, y in zip(points, xs, ys):
                ax.annotate(_label(r["style_weight"]), (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=line.get_color())
        for ref in (r for r in record["references"] if r["pair"] == pair):
            marker = "*" if ref["kind"] == "photo" else "X"
            ax.plot(ref["content_distance"], ref["style_distance"], marker, color="grey", markersize=10,
                    label=ref["kind"])
        ax.set_title(pair.replace(":", " × "), fontsize=10)
        ax.set_xlabel("content distance (to the photograph)")
        ax.set_ylabel("style distance (to the painting)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    settings = record.get("settings", {})
    fig.suptitle(f"EfficientNet-Lite0 judge, {settings.get('seconds', '?')} s per run at "
                 f"{settings.get('size', '?')} px (lower-left is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(images: dict, path: Path, *, cell: int = 256) -> None:
    """Rows: photograph, painting, then method x weight; columns: pairs. Each image fitted into a
    ``cell``-px square; a row as tall as its tallest picture."""
    pairs = list(dict.fromkeys(key[0] for key in images))
    rows = list(dict.fromkeys(key[1:] for key in images))
    pictures = {}
    for key, image in images.items():
        picture = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
        picture.thumbnail((cell, cell), Image.LANCZOS)
        pictures[key] = picture
    heights = [max(p.height for k, p in pictures.items() if k[1:] == row) for row in rows]
    font = ImageFont.load_default(size=14)
    left, top, pad = 90, 24, 4
    sheet = Image.new("RGB", (left + len(pairs) * (cell + pad), top + sum(heights) + pad * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, pair in enumerate(pairs):
        draw.text((left + j * (cell + pad) + 4, 4), pair.replace(":", " x "), fill="black", font=font)
    y = top
    for (method, weight), height in zip(rows, heights):
        draw.text((4, y + height // 2 - 16), method, fill="black", font=font)
        draw.text((4, y + height // 2 + 2), _label(weight), fill="black", font=font)
        for j, pair in enumerate(pairs):
            picture = pictures.get((pair, method, weight))
            if picture is not None:
                x = left + j * (cell + pad) + (cell - picture.width) // 2
                sheet.paste(picture, (x, y + (height - picture.height) // 2))
        y += height + pad
    sheet.save(path, quality=90)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="tubingen.jpg:starry_night.jpg,golden_gate.jpg:the_scream.jpg",
                        help=f"content:style,... (paths, or names in {SHARED})")
    parser.add_argument("--methods", default="gram", help=f"comma-separated: {sorted(METHODS)} or name:field=value")
    parser.add_argument("--style-weights", default="1e-4,1e-3,1e-2")
    parser.add_argument("--seconds", type=float, default=40.0, help="wall time of each run (compile excluded)")
    parser.add_argument("--size", type=int, default=256, help="longer side of the outputs (and of the judging)")
    parser.add_argument("--check-every", type=int, default=5, help="steps per compiled chunk: the clock's grain")
    parser.add_argument("-o", "--output", default=None, help="JSON path (default benchmarks/results/quality-*.json)")
    parser.add_argument("--figures", default=None, help="folder of the figure and contact sheet (default: the JSON's)")
    args = parser.parse_args(argv)
    methods, pairs = parse_methods(args.methods), resolve_pairs(args.pairs)
    weights = [float(w) for w in args.style_weights.split(",") if w.strip()]
    if not weights or args.seconds <= 0 or args.size < 32 or args.check_every < 1:
        raise ValueError(f"expected style weights, seconds > 0, size >= 32 and check-every >= 1, got "
                         f"{weights}, {args.seconds}, {args.size}, {args.check_every}")
    judge = quality.Judge()
    record, images = sweep(pairs, methods, weights, seconds=args.seconds, size=args.size,
                           check_every=args.check_every, judge=judge)
    machine = machine_info()
    record = {"benchmark": "quality", "machine": machine, "judge": judge.info(),
              "settings": {"pairs": [f"{c.name}:{s.name}" for c, s in pairs], "methods": methods,
                           "style_weights": weights, "seconds": args.seconds, "size": args.size,
                           "check_every": args.check_every, "compile": "excluded (a warm-up run per pair and method)",
                           "clock": "from the stylize call; last image within the budget"},
              **{k: v for k, v in record.items() if k != "benchmark"}}
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    out = Path(args.output or Path(__file__).parent / "results" / f"quality-{machine['platform']}-{stamp}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    figures = Path(args.figures) if args.figures else out.parent
    figures.mkdir(parents=True, exist_ok=True)
    frontier_figure(record, figures / f"{out.stem}-frontier.png")
    contact_sheet(images, figures / f"{out.stem}-sheet.jpg", cell=max(args.size, 64))
    print(f"wrote {out}, {figures / (out.stem + '-frontier.png')}, {figures / (out.stem + '-sheet.jpg')}")
    return record
