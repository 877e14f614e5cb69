"""The step loop and every optimizer against scipy on small problems."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxstyle.optim import init_loop, make_optimizer, run_steps


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
