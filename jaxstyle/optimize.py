"""One compiled step loop for every optimizer (optax Adam, optax L-BFGS, jaxopt L-BFGS).

An :class:`Optimizer` is a pair of pure functions, as in optax: ``init(x, loss_fn)``
returns a state pytree and ``step(x, state, loss_fn)`` returns the new iterate, the
new state and the loss at the *old* iterate. :func:`run_steps` runs up to
``max_steps`` of them inside one ``lax.fori_loop``; a non-finite loss freezes the
loop and is reported in the state (runtime failure is data, not an exception).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

LossFn = Callable[[jax.Array], jax.Array]


class Optimizer(NamedTuple):
    init: Callable[[jax.Array, LossFn], Any]
    step: Callable[[jax.Array, Any, LossFn], tuple[jax.Array, Any, jax.Array]]


class LoopState(NamedTuple):
    x: jax.Array  # current iterate
    opt_state: Any
    last_finite: jax.Array  # newest iterate whose loss was finite
    steps: jax.Array  # int32, steps taken
    nonfinite: jax.Array  # bool, a non-finite loss was met (the loop stopped)


def adam(*, learning_rate: float) -> Optimizer:
    opt = optax.adam(learning_rate)

    def step(x, state, loss_fn):
        value, grad = jax.value_and_grad(loss_fn)(x)
        updates, state = opt.update(grad, state, x)
        return optax.apply_updates(x, updates), state, value

    return Optimizer(init=lambda x, loss_fn: opt.init(x), step=step)


def lbfgs(*, memory: int) -> Optimizer:
    """optax L-BFGS with a backtracking (Armijo) line search that tries step 1 first.

    The value and gradient at the accepted point are kept in the state and reused, so a step
    whose first trial is accepted costs one function-and-gradient evaluation. optax's zoom
    line search gives the same iterates here, but its ``lax.cond``s become selects under
    ``vmap`` (every branch evaluated), which made batched runs ~4x slower per pair.
    """
    opt = optax.lbfgs(memory_size=memory, linesearch=optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=30, decrease_factor=0.5, increase_factor=math.inf, max_learning_rate=1.0,
        store_grad=True))

    def init(x, loss_fn):
        value, grad = jax.value_and_grad(loss_fn)(x)
        return otu.tree_set(opt.init(x), value=value, grad=grad)

    def step(x, state, loss_fn):
        value, grad = otu.tree_get(state, "value"), otu.tree_get(state, "grad")
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss_fn)
        return optax.apply_updates(x, updates), state, value

    return Optimizer(init=init, step=step)


def make_optimizer(name: str, *, learning_rate: float, memory: int) -> Optimizer:
    if name == "adam":
        return adam(learning_rate=learning_rate)
    if name == "lbfgs":
        return lbfgs(memory=memory)
    if name == "jaxopt-lbfgs":
        from jaxstyle.jaxopt_adapter import jaxopt_lbfgs

        return jaxopt_lbfgs(memory=memory)
    raise ValueError(f"expected optimizer 'lbfgs', 'jaxopt-lbfgs' or 'adam', got {name!r}")


def init_loop(optimizer: Optimizer, loss_fn: LossFn, x0: jax.Array) -> LoopState:
    """The loop state before the first step.

    The optimizer state is cast to the exact types that a step returns (optax's L-BFGS
    initialises some counters weakly typed): otherwise the second chunk of steps would
    see new input types and compile the loop a second time.
    """
    opt_state = optimizer.init(x0, loss_fn)
    stepped = jax.eval_shape(lambda: optimizer.step(x0, opt_state, loss_fn)[1])
    opt_state = jax.tree.map(lambda v, s: jnp.asarray(v).astype(s.dtype), opt_state, stepped)
    return LoopState(x=x0, opt_state=opt_state, last_finite=x0,
                     steps=jnp.zeros((), jnp.int32), nonfinite=jnp.zeros((), bool))


def run_steps(optimizer: Optimizer, loss_fn: LossFn, state: LoopState, num_steps: jax.Array,
              *, max_steps: int) -> tuple[LoopState, jax.Array]:
    """Run ``num_steps`` (traced, <= max_steps) steps in one ``lax.while_loop``.

    Returns the state and the losses float32 [max_steps] (loss before each step; NaN past
    the steps run). The loop stops at the first non-finite loss: ``nonfinite`` is then set
    and ``last_finite`` holds the newest iterate whose loss was finite (``x`` and
    ``opt_state`` are not to be used further).
    """

    def body(carry):
        i, state, losses = carry
        x, opt_state, value = optimizer.step(state.x, state.opt_state, loss_fn)
        finite = jnp.isfinite(value)
        state = LoopState(x=x, opt_state=opt_state,
                          last_finite=jnp.where(finite, state.x, state.last_finite),
                          steps=state.steps + finite.astype(jnp.int32), nonfinite=~finite)
        return i + 1, state, losses.at[i].set(value.astype(jnp.float32))

    def keep_going(carry):
        i, state, _ = carry
        return (i < jnp.minimum(num_steps, max_steps)) & ~state.nonfinite

    losses = jnp.full((max_steps,), jnp.nan, jnp.float32)
    _, state, losses = jax.lax.while_loop(keep_going, body, (jnp.int32(0), state, losses))
    return state, losses
