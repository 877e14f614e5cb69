"""The step loop and every optimizer against scipy on small problems; L-BFGS's curvature pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from jaxstyle.optimize import CURVATURE_RTOL, init_loop, lbfgs, lbfgs_history_update, make_optimizer, run_steps


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def quadratic_problem(dim=6, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim))
    h = a @ a.T + dim * np.eye(dim)
    b = rng.standard_normal(dim)
    return (lambda x: 0.5 * x @ jnp.asarray(h, x.dtype) @ x - jnp.asarray(b, x.dtype) @ x), h, b


def run(name, loss_fn, x0, steps, **kwargs):
    opt = make_optimizer(name, learning_rate=kwargs.get("learning_rate", 0.05), memory=10)

    @jax.jit
    def go(x0):
        state = init_loop(opt, loss_fn, x0)
        return run_steps(opt, loss_fn, state, jnp.int32(steps), max_steps=steps)

    return go(x0)


@pytest.mark.parametrize("name,steps", [("lbfgs", 100), ("jaxopt-lbfgs", 100), ("adam", 3000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quadratic_matches_scipy(name, steps, dtype):
    with jax.enable_x64(dtype == np.float64):
        loss_fn, h, b = quadratic_problem()
        expected = scipy.optimize.minimize(lambda x: 0.5 * x @ h @ x - b @ x, np.zeros(6),
                                           jac=lambda x: h @ x - b, method="L-BFGS-B").x
        state, losses = run(name, loss_fn, jnp.zeros(6, dtype), steps)
        assert state.x.dtype == dtype
        np.testing.assert_allclose(state.x, expected, atol=2e-3 if name == "adam" else 1e-4)
        assert not bool(state.nonfinite) and int(state.steps) == steps
        finite = np.asarray(losses)
        assert finite[-1] <= finite[0]


@pytest.mark.parametrize("name", ["lbfgs", "jaxopt-lbfgs"])
def test_rosenbrock_matches_scipy(name):
    with jax.enable_x64(True):
        x0 = np.array([-1.2, 1.0, -0.5, 0.8])
        expected = scipy.optimize.minimize(lambda x: float(rosenbrock(jnp.asarray(x))), x0,
                                           jac=lambda x: np.asarray(jax.grad(rosenbrock)(jnp.asarray(x))),
                                           method="BFGS", options={"gtol": 1e-10})
        state, losses = run(name, rosenbrock, jnp.asarray(x0), 200)
        np.testing.assert_allclose(state.x, expected.x, atol=1e-5)
        assert float(rosenbrock(state.x)) <= expected.fun + 1e-8


def test_nonfinite_loss_stops_and_keeps_last_finite_iterate():
    # Finite while x < 2, NaN beyond: Adam minimising -x walks right until the loss breaks.
    def loss_fn(x):
        return jnp.where(x[0] < 2.0, -x[0], jnp.nan)

    state, losses = run("adam", loss_fn, jnp.zeros(1), 500, learning_rate=0.5)
    assert bool(state.nonfinite)
    assert 0.0 < float(state.last_finite[0]) < 2.0
    losses = np.asarray(losses)
    stopped = int(state.steps)
    assert np.isfinite(losses[:stopped]).all() and np.isnan(losses[stopped])
    assert np.isnan(losses[stopped + 1:]).all()  # nothing ran after the failure


@pytest.mark.parametrize("name", ["lbfgs", "jaxopt-lbfgs", "adam"])
def test_nonfinite_from_the_start(name):
    # (The L-BFGS line searches step back from NaN regions, so inject NaN at x0 itself.)
    state, losses = run(name, lambda x: jnp.sum(x) * jnp.inf * 0.0, jnp.ones(3), 10)
    assert bool(state.nonfinite) and int(state.steps) == 0
    np.testing.assert_array_equal(state.last_finite, np.ones(3))
    assert np.isnan(np.asarray(losses)).all()


def test_partial_chunk_runs_exactly_num_steps():
    loss_fn, _, _ = quadratic_problem()
    opt = make_optimizer("adam", learning_rate=0.05, memory=10)
    state = init_loop(opt, loss_fn, jnp.zeros(6))
    state, losses = run_steps(opt, loss_fn, state, jnp.int32(3), max_steps=8)
    assert int(state.steps) == 3
    assert np.isfinite(np.asarray(losses[:3])).all() and np.isnan(np.asarray(losses[3:])).all()


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="expected optimizer"):
        make_optimizer("sgd", learning_rate=1.0, memory=3)


def double_well_problem(dim=8, seed=0):
    """A non-convex loss: a double well (x0^2 - 1)^2 in x0, a convex quadratic in the rest and a
    coupling. It starts near x0 = 0, where the curvature along x0 is negative (f'' = -4), so the
    Armijo search accepts steps across the hump whose pairs have sᵀy < 0 (at the third step)."""
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.uniform(0.5, 3.0, dim - 1))

    def fn(x):
        return (x[0] ** 2 - 1.0) ** 2 + 0.5 * jnp.sum(h * x[1:] ** 2) + 0.3 * x[0] * jnp.sum(x[1:])

    x0 = jnp.asarray(np.concatenate([[rng.uniform(0.0, 0.1)], rng.uniform(-1, 1, dim - 1)]))
    return fn, x0


def lbfgs_trajectory(fn, x0, steps, memory=5):
    """The loop state after each of ``steps`` L-BFGS steps (one compiled step per call) and the
    losses before each step."""
    opt = lbfgs(memory=memory)
    step = jax.jit(lambda state: run_steps(opt, fn, state, jnp.int32(1), max_steps=1))
    state, states, losses = init_loop(opt, fn, x0), [], []
    for _ in range(steps):
        state, loss = step(state)
        states.append(state)
        losses.append(float(loss[0]))
    return states, np.asarray(losses)


def test_lbfgs_skips_pairs_without_positive_curvature():
    """Armijo backtracking accepts a step whose pair has sᵀy <= 0 on a non-convex loss: that pair
    is not stored (every stored pair has sᵀy > CURVATURE_RTOL |s| |y| and is a real step of the
    run), and the run still decreases the loss to a stationary point, finite throughout. Before
    the fix the pair was stored with a negative weight 1/sᵀy and kept for several steps."""
    with jax.enable_x64(True):
        fn, x0 = double_well_problem()
        states, losses = lbfgs_trajectory(fn, x0, 25)
        xs = np.stack([np.asarray(x0)] + [np.asarray(s.x) for s in states])
        grads = np.stack([np.asarray(jax.grad(fn)(x0))] + [np.asarray(s.opt_state.grad) for s in states])
        pairs = list(zip(np.diff(xs, axis=0), np.diff(grads, axis=0), strict=True))  # pair k: point k -> k + 1
        # optax's update stores every pair once the history has started (count > 0; the first
        # call, which evaluates x0, starts it), the unpatched rule too: one of them has sᵀy <= 0.
        counts = [1] + [int(s.opt_state.history.count) for s in states[:-1]]
        assert any(count > 0 and s @ s > 0 and s @ y <= 0 for (s, y), count in zip(pairs, counts, strict=True))
        for state in states:
            history = state.opt_state.history
            for s, y, rho in zip(np.asarray(history.diff_params_memory), np.asarray(history.diff_updates_memory),
                                 np.asarray(history.weights_memory), strict=True):
                if rho == 0:
                    continue  # an empty slot
                assert rho > 0 and s @ y > CURVATURE_RTOL * np.linalg.norm(s) * np.linalg.norm(y)
                np.testing.assert_allclose(rho * (s @ y), 1.0, rtol=1e-12)
                assert any(np.allclose(s, ps, rtol=0, atol=1e-15) and np.allclose(y, py, rtol=0, atol=1e-15)
                           for ps, py in pairs), "a stored pair that is not a step of the run"
        assert np.isfinite(losses).all() and np.isfinite(xs).all()
        assert (np.diff(losses) <= 0).all()  # Armijo: every accepted step decreases the loss
        assert losses[-1] < losses[0] - 4.0  # 3.9 down to -0.29, the bottom of a well
        assert np.linalg.norm(grads[-1]) < 1e-6


def test_lbfgs_with_skipped_pairs_runs_under_vmap():
    """The skipping rule is jnp.where only: under jax.vmap of the whole loop, a batch of two starts
    (the double well's, which skips a pair at its third step, and one in the well) takes each
    start's own iterates, history included."""
    with jax.enable_x64(True):
        fn, x0 = double_well_problem()
        starts = [x0, x0.at[0].set(0.8)]
        opt = lbfgs(memory=5)

        def go(x0):
            return run_steps(opt, fn, init_loop(opt, fn, x0), jnp.int32(15), max_steps=15)

        batched = jax.jit(jax.vmap(go))(jnp.stack(starts))
        for i, start in enumerate(starts):
            alone = jax.jit(go)(start)
            for member, reference in zip(jax.tree.leaves(batched), jax.tree.leaves(alone), strict=True):
                np.testing.assert_allclose(member[i], reference, rtol=1e-12, atol=1e-14)
        assert np.asarray(batched[0].steps).tolist() == [15, 15]


def reference_lbfgs_direction(pairs, grad):
    """-H grad by Nocedal & Wright's two-loop recursion (Alg. 7.4) in numpy, over ``pairs``
    (oldest first), with H0 = gamma I, gamma = sᵀy / yᵀy of the newest pair, or min(1, 1/|g|)
    without one (optax's first step)."""
    q, alphas = grad.copy(), []
    for s, y in reversed(pairs):
        alphas.append((s @ q) / (s @ y))
        q = q - alphas[-1] * y
    gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else min(
        1.0, 1.0 / np.linalg.norm(grad))
    r = gamma * q
    for (s, y), alpha in zip(pairs, reversed(alphas), strict=True):
        r = r + (alpha - (y @ r) / (s @ y)) * s
    return -r


def test_lbfgs_history_update_skips_without_moving_the_ring():
    """A skipped pair leaves the history as it was (pairs, weights, count; only the point from
    which the next pair is measured moves), and the direction is the two-loop over the last
    ``memory`` kept pairs, oldest to newest, with H0 from the newest kept pair: checked against
    numpy over a sequence that skips its very first pair (no kept pair yet: first-step scaling)
    and, after the ring has wrapped, two more."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        dim, memory = 5, 3
        a = rng.standard_normal((dim, dim))
        hessian = a @ a.T + np.eye(dim)
        xs = np.cumsum(rng.standard_normal((12, dim)), axis=0)
        grads = xs @ hessian
        for k in (1, 7, 9):  # a gradient that falls along the step: sᵀy < 0
            grads[k] = grads[k - 1] - 0.5 * (xs[k] - xs[k - 1])
        update = jax.jit(lbfgs_history_update)
        history = optax.scale_by_lbfgs(memory_size=memory).init(jnp.zeros(dim))
        kept, skipped = [], []
        for k, (x, g) in enumerate(zip(xs, grads, strict=True)):
            d, new = update(jnp.asarray(g), history, jnp.asarray(x))
            if k > 0:
                s, y = xs[k] - xs[k - 1], g - grads[k - 1]
                if s @ y > CURVATURE_RTOL * np.linalg.norm(s) * np.linalg.norm(y):
                    kept.append((s, y))
                else:
                    skipped.append(k)
                    for field in ("count", "diff_params_memory", "diff_updates_memory", "weights_memory"):
                        np.testing.assert_array_equal(getattr(new, field), getattr(history, field))
            np.testing.assert_array_equal(new.params, x)
            np.testing.assert_array_equal(new.updates, g)
            assert int(new.count) == 1 + len(kept)
            np.testing.assert_allclose(-np.asarray(d), reference_lbfgs_direction(kept[-memory:], g), rtol=1e-10)
            history = new
        assert {1, 7, 9} <= set(skipped) and len(kept) > memory


def test_lbfgs_history_update_is_optax_update_when_pairs_are_kept():
    """On a convex quadratic every pair is kept, and the update is optax.scale_by_lbfgs's, bit for
    bit (same arithmetic): the direction and every field of the history."""
    with jax.enable_x64(True):
        loss_fn, _, _ = quadratic_problem(dim=6, seed=2)
        optax_update = jax.jit(optax.scale_by_lbfgs(memory_size=3).update)
        update = jax.jit(lbfgs_history_update)
        ours = theirs = optax.scale_by_lbfgs(memory_size=3).init(jnp.zeros(6))
        x = jnp.ones(6)
        for _ in range(8):
            g = jax.grad(loss_fn)(x)
            d, ours = update(g, ours, x)
            expected, theirs = optax_update(g, theirs, x)
            np.testing.assert_array_equal(d, expected)
            for mine, reference in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
                np.testing.assert_array_equal(mine, reference)
            x = x - 0.5 * d
