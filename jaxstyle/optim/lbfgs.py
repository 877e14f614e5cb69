"""Our L-BFGS: optax's direction, a backtracking line search unrolled into the step loop, one
evaluation per call and no ``lax.cond`` around an evaluation, so that batches vmap it at the cost
of one evaluation per member (see :mod:`.loop`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstyle.optim.base import Optimizer


class LbfgsState(NamedTuple):
    value: jax.Array  # loss at the accepted iterate x
    grad: jax.Array  # its gradient
    direction: jax.Array  # search direction from x (a descent direction)
    slope: jax.Array  # grad . direction (< 0)
    step_size: jax.Array  # the trial step size along direction
    trials: jax.Array  # int32, trials rejected in this line search
    history: optax.ScaleByLBFGSState  # the curvature pairs (optax's)
    fresh: jax.Array  # bool: x is not evaluated yet (the next call evaluates it and takes no step)


def lbfgs(*, memory: int, max_trials: int = 31, decrease_factor: float = 0.5, slope_rtol: float = 1e-4) -> Optimizer:
    """L-BFGS (Nocedal & Wright, Alg. 7.4/7.5) with a backtracking Armijo line search that tries
    step 1 first, one loss-and-gradient evaluation per call.

    The direction is optax's (:func:`optax.scale_by_lbfgs`: two-loop recursion over the last
    ``memory`` pairs, the first step scaled by ``min(1, 1/|g|)``); the line search is the one
    of ``optax.scale_by_backtracking_linesearch(decrease_factor=0.5, max_learning_rate=1)``,
    so a single run takes the same iterates as ``optax.lbfgs`` with that line search (tested),
    but unrolled into the step loop: each call evaluates the trial point ``x + t d`` once
    (value and gradient together), accepts it when ``f(x + t d) <= f(x) + slope_rtol t g.d``,
    else halves ``t`` and returns with ``done`` False. A non-finite trial is rejected like any
    other. After ``max_trials`` rejected trials the step gives up: ``x`` stays, the curvature
    history is cleared, and the next step starts again from the scaled steepest descent. A
    history that yields an ascent direction is cleared the same way.

    ``init`` evaluates nothing: the first call evaluates the starting point (``done`` False,
    the value returned is that point's loss) and computes the first direction from it.

    Nothing is conditional on data except through ``jnp.where``, so under ``vmap`` a call
    costs one evaluation per member and the members' line searches proceed independently.
    """
    precondition = optax.scale_by_lbfgs(memory_size=memory)

    def forget(history, drop, count):
        """``history`` with its curvature pairs dropped where ``drop``: their weights (rho) set
        to 0, so the two-loop recursion skips them; ``count`` restarts the step numbering."""
        return history._replace(count=jnp.where(drop, count, history.count).astype(history.count.dtype),
                                weights_memory=jnp.where(drop, 0.0, history.weights_memory))

    def direction(grad, history, x):
        d, history = precondition.update(grad, history, x)
        d = -d
        # An ascent (or zero, or non-finite) direction: restart from scaled steepest descent,
        # what optax's first step does (direction -g min(1, 1/|g|)).
        bad = ~(jnp.vdot(grad, d) < 0)
        d = jnp.where(bad, -grad * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(grad)), d)
        return d, jnp.vdot(grad, d), forget(history, bad, 1)

    def init(x, loss_fn):
        del loss_fn  # the first call of step evaluates x
        zeros = jnp.zeros_like(x)
        return LbfgsState(value=jnp.full((), jnp.inf, x.dtype), grad=zeros, direction=zeros,
                          slope=jnp.zeros((), x.dtype), step_size=jnp.zeros((), x.dtype),
                          trials=jnp.zeros((), jnp.int32), history=precondition.init(x),
                          fresh=jnp.ones((), bool))

    def step(x, state, loss_fn):
        trial = x + state.step_size * state.direction  # x itself when fresh (step size 0)
        value, grad = jax.value_and_grad(loss_fn)(trial)
        accepted = state.fresh | (value <= state.value + slope_rtol * state.step_size * state.slope)  # NaN: False
        give_up = ~accepted & (state.trials + 1 >= max_trials)
        done = (accepted | give_up) & ~state.fresh
        new_x = jnp.where(accepted, trial, x)
        # A point with a finite loss but a non-finite gradient is a dead end: its value is
        # reported as NaN on the next call, which stops the loop (last_finite keeps x).
        finite_grad = jnp.all(jnp.isfinite(grad))
        new_value = jnp.where(accepted, jnp.where(finite_grad, value, jnp.nan), state.value)
        new_grad = jnp.where(accepted, grad, state.grad)
        d, slope, history = direction(new_grad, forget(state.history, give_up, 0), new_x)
        renew = done | state.fresh  # a new line search starts from new_x
        keep = lambda new, old: jnp.where(renew, new, old)  # noqa: E731
        new_state = LbfgsState(value=new_value, grad=new_grad,
                               direction=keep(d, state.direction), slope=keep(slope, state.slope),
                               step_size=jnp.where(renew, jnp.ones_like(state.step_size),
                                                   decrease_factor * state.step_size),
                               trials=jnp.where(renew, 0, state.trials + 1),
                               history=jax.tree.map(keep, history, state.history),
                               fresh=jnp.zeros_like(state.fresh))
        # The loss at the iterate this call started from: when fresh, the one just evaluated.
        return new_x, new_state, jnp.where(state.fresh, value, state.value), done

    return Optimizer(init=init, step=step)
