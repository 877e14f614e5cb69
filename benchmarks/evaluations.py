"""How much work one step of the compiled loop executes, alone and in a batch.

    python -m benchmarks.evaluations --size 64 --batch 4 --steps 20
    python -m benchmarks.evaluations --random-weights ...

For each optimizer it runs the style-transfer loop exactly as ``stylize`` (one pair at a
time) and ``stylize_batch`` (all pairs in one program, the way :mod:`jaxstyle.engine.batch` maps
the optimizer) run it, with a probe on the loss that counts, at run time, every forward
evaluation and every gradient (backward pass) the program executes, including work
done and thrown away in branches that ``vmap`` turned into selects. It also walks the
batched program for convolutions whose kernel carries the batch axis (``feature_group_count
> 1``): those are the network's weights copied once per pair.

Counts are per pair and per step. Pairs: identical ones (a batch of one pair repeated) and
mixed ones (the shared photographs and paintings). Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import machine_info


class EvaluationCounter:
    """Counts, at run time, the forward and backward evaluations a compiled loss executes.

    ``counter.wrap(loss_fn)`` is ``loss_fn`` with a probe on its input: every forward pass
    and every backward pass through it calls back to the host with the number of members it
    computed (B under ``vmap``, where one call covers the whole batch; 1 under ``lax.map``).
    ``counter.counts`` then holds member-evaluations: divide by the number of pairs.
    """

    def __init__(self):
        self.counts = collections.Counter()

    def _record(self, kind: str):
        return lambda probe: self.counts.update({kind: int(np.size(probe))})

    def wrap(self, loss_fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
        forward, backward = self._record("forward"), self._record("backward")

        @jax.custom_vjp
        def probe(x):
            jax.debug.callback(forward, jnp.ravel(x)[:1])
            return x

        def probe_fwd(x):
            jax.debug.callback(forward, jnp.ravel(x)[:1])
            return x, None

        def probe_bwd(_, g):
            jax.debug.callback(backward, jnp.ravel(g)[:1])
            return (g,)

        probe.defvjp(probe_fwd, probe_bwd)
        return lambda x: loss_fn(probe(x))


def grouped_convolutions(compiled_hlo: str) -> int:
    """Convolutions in compiled HLO text with a feature or batch group count above 1.

    Under ``vmap`` a convolution whose kernel carries the batch axis is lowered to a grouped
    convolution (the batch folded into the channels, the kernel copied B times). The
    compiled program is read rather than the jaxpr because XLA removes dead convolutions
    (the kernel gradients of the custom VJP) that the jaxpr still holds. On GPUs the
    convolutions are cuDNN custom calls carrying the same group attributes.
    """
    count = 0
    for line in compiled_hlo.splitlines():
        if " convolution(" in line or "__cudnn$conv" in line:  # XLA:GPU lowers convolutions to cuDNN calls
            groups = re.findall(r"(?:feature|batch)_group_count=(\d+)", line)
            count += any(int(g) > 1 for g in groups)
    return count


def _problem(vgg, contents, styles, optimizer: str):
    from jaxstyle.config import StyleConfig
    from jaxstyle.engine.program import Program
    from jaxstyle.objective.targets import compute_targets
    from jaxstyle.objective.terms import loss_weights

    config = StyleConfig(optimizer=optimizer)
    program = Program.build(config, vgg, 1 << 20)
    weights = loss_weights(config)
    params = program.objective.params(vgg)
    targets = [compute_targets(params, jnp.asarray(c), jnp.asarray(s), objective=program.objective)
               for c, s in zip(contents, styles)]
    return program, weights, targets


def measure(vgg, contents, styles, optimizer: str, steps: int) -> dict:
    """Forward/backward evaluations per pair-step, single and batched, and grouped convolutions."""
    from jaxstyle.engine.batch import map_over_pairs
    from jaxstyle.objective.terms import loss_terms
    from jaxstyle.optim.loop import init_loop, run_steps

    program, weights, targets = _problem(vgg, contents, styles, optimizer)
    opt = program.make_optimizer()
    counter = EvaluationCounter()
    params = program.objective.params(vgg)

    def loss(targets, weights):
        return counter.wrap(lambda x: loss_terms(params, x, targets, weights, program.objective)["total"])

    def start(x0, targets, weights):
        return init_loop(opt, loss(targets, weights), x0)

    def run(state, targets, weights):
        return run_steps(opt, loss(targets, weights), state, jnp.int32(steps), max_steps=steps)

    def count(fn, args, pairs):  # member-evaluations per pair and step of one warm run
        jax.block_until_ready(fn(*args))
        counter.counts.clear()
        out = jax.block_until_ready(fn(*args))
        return {k: v / pairs / steps for k, v in counter.counts.items()}, out

    single, single_start = jax.jit(run), jax.jit(start)
    per_pair = []
    for c, t in zip(contents, targets):
        state = single_start(jnp.asarray(c), t, weights)
        counts, (state, _) = count(single, (state, t, weights), 1)
        per_pair.append(counts | {"steps": int(state.steps)})
    n = len(contents)
    stack = lambda *a: jnp.stack(a)  # noqa: E731
    targets = jax.tree.map(stack, *targets)
    weights = jax.tree.map(lambda a: jnp.stack([a] * n), weights)
    state = jax.jit(map_over_pairs(start, opt))(jnp.asarray(np.stack(contents)), targets, weights)
    batched = jax.jit(map_over_pairs(run, opt))
    batch, _ = count(batched, (state, targets, weights), n)
    grouped = grouped_convolutions(batched.lower(state, targets, weights).compile().as_text())
    return {"single_per_pair": per_pair, "batched_per_pair": batch, "batched_grouped_convolutions": grouped}


def main(argv=None) -> None:
    from benchmarks.batch_throughput import mixed_pairs
    from benchmarks.step_time import random_vgg
    from jaxstyle import load_vgg19

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--optimizers", default="lbfgs,jaxopt-lbfgs,adam")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    vgg = random_vgg() if args.random_weights else load_vgg19()
    contents, styles = mixed_pairs(args.size, args.batch)
    info = machine_info()
    rows = []
    for optimizer in args.optimizers.split(","):
        for kind, (cs, ss) in {"identical": ([contents[0]] * args.batch, [styles[0]] * args.batch),
                               "mixed": (contents, styles)}.items():
            result = measure(vgg, cs, ss, optimizer, args.steps)
            single = {key: [p.get(key, 0.0) for p in result["single_per_pair"]] for key in ("forward", "backward")}
            row = {"optimizer": optimizer, "pairs": kind, "batch": args.batch, **result,
                   **{f"single_{key}_mean": float(np.mean(v)) for key, v in single.items()},
                   **{f"single_{key}_max": float(np.max(v)) for key, v in single.items()}}
            rows.append(row)
            b = result["batched_per_pair"]
            print(f"{optimizer:13s} {kind:9s} per pair-step: single fwd {row['single_forward_mean']:.2f} "
                  f"(max {row['single_forward_max']:.2f}) bwd {row['single_backward_mean']:.2f} "
                  f"(max {row['single_backward_max']:.2f}) | batch of {args.batch}: fwd {b.get('forward', 0):.2f} "
                  f"bwd {b.get('backward', 0):.2f}, grouped convolutions {result['batched_grouped_convolutions']}",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"evaluations-{info['platform']}-{info['date'][:19].replace(':', '')}.json"
    (out / name).write_text(json.dumps({"machine": info, "size": args.size, "steps": args.steps,
                                        "batch": args.batch, "results": rows}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
