"""A batch never does more work per pair than one pair alone (issue: batched L-BFGS cost 2-2.6x a loop).

Evaluations are counted at run time by a probe on the loss (forward and backward passes,
including those computed and thrown away by selects), and the compiled batched program is
searched for grouped convolutions (the weights copied once per pair, which is what made
optax's L-BFGS slow under vmap: its line search's ``lax.cond`` broadcast the network).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.evaluations import EvaluationCounter, grouped_convolutions
from jaxstyle import StyleConfig
from jaxstyle.engine.batch import map_over_pairs
from jaxstyle.model.vgg import conv3x3
from jaxstyle.optim import init_loop, lbfgs, make_optimizer, run_steps
from tests.helpers import smooth_image

OPTIMIZERS = ["lbfgs", "jaxopt-lbfgs", "adam"]
STEPS = 12


def conv_problem(seed: int):
    """A small non-convex loss of an image [8, 8, 3] through a fixed 3x3 convolution (closed
    over, like the VGG weights), with a quartic term that makes the line search backtrack."""
    kernel = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 3, 4)), jnp.float32) * 0.3
    rng = np.random.default_rng(seed)
    target = jnp.asarray(rng.uniform(-0.8, 0.8, (8, 8, 4)), jnp.float32)
    x0 = jnp.asarray(rng.uniform(-1, 1, (8, 8, 3)) * (1 + seed), jnp.float32)

    def loss(kernel, target, x):
        y = jnp.tanh(conv3x3(x[None], kernel)[0])
        return jnp.sum((y - target) ** 2) + 0.05 * jnp.sum(x ** 4)

    return kernel, target, x0, loss


def counted_runs(name: str, seeds):
    """Per-pair (forward, backward) evaluations per step: each pair alone, and the batch."""
    opt = make_optimizer(name, learning_rate=0.05, memory=5)
    counter = EvaluationCounter()
    problems = [conv_problem(s) for s in seeds]
    kernel, loss = problems[0][0], problems[0][3]

    def start(target, x0):
        return init_loop(opt, counter.wrap(lambda x: loss(kernel, target, x)), x0)

    def run(state, target):
        return run_steps(opt, counter.wrap(lambda x: loss(kernel, target, x)), state, jnp.int32(STEPS),
                         max_steps=STEPS)

    def per_step(fn, *args, pairs):
        counter.counts.clear()
        out = jax.block_until_ready(fn(*args))
        return (counter.counts["forward"] / pairs / STEPS, counter.counts["backward"] / pairs / STEPS), out

    alone = []
    for _, target, x0, _ in problems:
        counts, (state, _) = per_step(jax.jit(run), jax.jit(start)(target, x0), target, pairs=1)
        assert int(state.steps) == STEPS
        alone.append(counts)
    targets = jnp.stack([p[1] for p in problems])
    state = jax.jit(map_over_pairs(start, opt))(targets, jnp.stack([p[2] for p in problems]))
    batched_run = jax.jit(map_over_pairs(run, opt))
    batched, (state, losses) = per_step(batched_run, state, targets, pairs=len(seeds))
    assert np.asarray(state.steps).tolist() == [STEPS] * len(seeds)
    return alone, batched, batched_run.lower(state, targets).compile().as_text()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_identical_pairs_cost_what_one_pair_costs(name):
    alone, batched, hlo = counted_runs(name, [1, 1, 1])
    assert batched == pytest.approx(alone[0])
    assert grouped_convolutions(hlo) == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_mixed_pairs_never_cost_more_than_the_costliest_pair(name):
    alone, batched, hlo = counted_runs(name, [0, 1, 2])
    worst = np.max(alone, axis=0)
    assert batched[0] <= worst[0] + 1e-9 and batched[1] <= worst[1] + 1e-9, (alone, batched)
    if name == "lbfgs":  # the pairs' line searches differ here, so the test has teeth
        assert len(set(alone)) > 1
    assert grouped_convolutions(hlo) == 0


def test_old_vmapped_optax_lbfgs_is_caught():
    """The measurement itself: optax's L-BFGS under vmap shows the extra backward passes and
    the grouped convolutions that this file guards against."""
    opt = optax.lbfgs(memory_size=5, linesearch=optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=30, decrease_factor=0.5, max_learning_rate=1.0, store_grad=True))
    counter = EvaluationCounter()
    kernel, _, _, loss = conv_problem(0)
    problems = [conv_problem(s) for s in (1, 1)]

    def run(target, x):
        fn = counter.wrap(lambda x: loss(kernel, target, x))
        value, grad = jax.value_and_grad(fn)(x)
        state = optax.tree_utils.tree_set(opt.init(x), value=value, grad=grad)

        def body(_, carry):
            x, state = carry
            value, grad = optax.tree_utils.tree_get(state, "value"), optax.tree_utils.tree_get(state, "grad")
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fn)
            return optax.apply_updates(x, updates), state

        return jax.lax.fori_loop(0, STEPS, body, (x, state))[0]

    batched = jax.jit(jax.vmap(run))
    args = (jnp.stack([p[1] for p in problems]), jnp.stack([p[2] for p in problems]))
    assert grouped_convolutions(batched.lower(*args).compile().as_text()) > 0
    jax.block_until_ready(jax.jit(run)(*[a[0] for a in args]))
    single = dict(counter.counts)
    counter.counts.clear()
    jax.block_until_ready(batched(*args))
    assert counter.counts["backward"] / 2 > single["backward"]  # grads of rejected trials, via select


def test_real_batched_program_has_no_grouped_convolutions(random_vgg):
    from jaxstyle.engine.batch import batched_advance, batched_start
    from jaxstyle.engine.program import Program
    from jaxstyle.objective.targets import compute_targets
    from jaxstyle.objective.terms import loss_weights

    for name in OPTIMIZERS:
        config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), optimizer=name)
        program = Program.build(config, random_vgg, 3)
        c = jnp.asarray(smooth_image(16, 16, 0))
        targets = compute_targets(random_vgg.params, c, c, objective=program.objective)
        stack = lambda a: jnp.stack([a, a])  # noqa: E731
        targets, weights = jax.tree.map(stack, targets), jax.tree.map(stack, loss_weights(config))
        state = batched_start(random_vgg.params, stack(c), targets, weights, program, False)
        hlo = batched_advance.lower(random_vgg.params, state, targets, weights, jnp.int32(3), program,
                                     False).compile().as_text()
        assert grouped_convolutions(hlo) == 0, name


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize("problem", ["rosenbrock", "conv"])
def test_lbfgs_takes_optax_lbfgs_iterates(problem):
    """Same direction (optax's scale_by_lbfgs) and the same backtracking line search, unrolled:
    the iterates equal optax.lbfgs's, step for step."""
    with jax.enable_x64(True):
        if problem == "rosenbrock":
            fn, x0 = rosenbrock, jnp.asarray([-1.2, 1.0, -0.5, 0.8, 0.3])
        else:
            kernel, target, x0, loss = conv_problem(2)
            fn, x0 = (lambda x: loss(kernel.astype(jnp.float64), target.astype(jnp.float64), x)), x0.astype(
                jnp.float64)
        reference = optax.lbfgs(memory_size=5, linesearch=optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=30, decrease_factor=0.5, increase_factor=math.inf, max_learning_rate=1.0))
        ours = lbfgs(memory=5)

        @jax.jit
        def both(x0):
            def ref_step(carry, _):
                x, state = carry
                value, grad = jax.value_and_grad(fn)(x)
                updates, state = reference.update(grad, state, x, value=value, grad=grad, value_fn=fn)
                x = optax.apply_updates(x, updates)
                return (x, state), x

            _, ref_xs = jax.lax.scan(ref_step, (x0, reference.init(x0)), length=25)
            state = init_loop(ours, fn, x0)
            xs = []
            for _ in range(25):
                state, _ = run_steps(ours, fn, state, jnp.int32(1), max_steps=1)
                xs.append(state.x)
            return ref_xs, jnp.stack(xs)

        ref_xs, xs = both(x0)
        np.testing.assert_allclose(xs, ref_xs, rtol=1e-9, atol=1e-12)
        assert float(fn(xs[-1])) < 0.1 * float(fn(x0))


def test_lbfgs_gives_up_after_max_trials_and_stays():
    """Every trial point is non-finite: each step rejects max_trials trials (one evaluation
    each), then gives up in place; the loop goes on (the loss at x is finite) and counts it.
    The start is evaluated once, by the loop's first call (init evaluates nothing)."""
    x0 = jnp.asarray([0.5, -1.0, 2.0])
    counter = EvaluationCounter()
    fn = counter.wrap(lambda x: jnp.where(jnp.all(x == x0), jnp.sum(x ** 2), jnp.nan))
    opt = lbfgs(memory=3, max_trials=7)
    state = init_loop(opt, fn, x0)
    assert counter.counts["forward"] == 0
    state, losses = jax.jit(lambda s: run_steps(opt, fn, s, jnp.int32(2), max_steps=2))(state)
    assert int(state.steps) == 2 and not bool(state.nonfinite)
    np.testing.assert_array_equal(state.x, x0)
    np.testing.assert_allclose(losses, [5.25, 5.25])
    assert counter.counts["forward"] == 1 + 2 * 7
