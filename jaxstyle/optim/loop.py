"""One compiled step loop for every optimizer (optax Adam, our batched L-BFGS, jaxopt L-BFGS).

An :class:`Optimizer` is a pair of pure functions, as in optax: ``init(x, loss_fn)``
returns a state pytree and ``step(x, state, loss_fn)`` returns ``(x, state, value,
done)``: the new iterate, the new state, the loss at the iterate the step started from,
and whether an optimisation step finished (a line-search trial that was rejected is a
call with ``done`` False). ``init`` may leave the first evaluation to ``step``: our
L-BFGS's first call evaluates the starting point and returns ``done`` False, so that
evaluation is compiled with the loop instead of in a program of its own (a cold run
compiles the network's value-and-gradient once, not twice). :func:`run_steps` calls
``step`` inside one ``lax.while_loop`` until ``num_steps`` steps are done; a non-finite
loss freezes the loop and is reported in the state (runtime failure is data, not an
exception).

Batches (:mod:`jaxstyle.engine.batch`) ``vmap`` the whole loop. Under ``vmap`` every ``lax.cond``
whose predicate differs between members becomes a ``select``: both branches run, and JAX
first broadcasts every operand of the cond to the batch, so a cond that closes over the
network makes B copies of its weights and grouped convolutions (measured: 2-2.6x the
work per pair with optax's L-BFGS, see ``benchmarks/README.md``). :func:`jaxstyle.optim.lbfgs.lbfgs` is
therefore written without a cond around an evaluation: each call evaluates the loss and
gradient once, at one line-search trial point, so a batch costs one evaluation per member
per call and no member waits on another's line search longer than the loop's end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.optim.base import LoopState, LossFn, Optimizer


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

    Each turn of the loop is one call of ``optimizer.step``; a step that needs several calls
    (line-search trials) counts once, when it is done. Returns the state and the losses
    float32 [max_steps] (loss before each step; NaN past the steps run). The loop stops at
    the first non-finite loss: ``nonfinite`` is then set and ``last_finite`` holds the newest
    iterate whose loss was finite (``x`` and ``opt_state`` are not to be used further).
    """

    def body(carry):
        i, state, losses = carry
        x, opt_state, value, done = optimizer.step(state.x, state.opt_state, loss_fn)
        finite = jnp.isfinite(value)
        counted = done & finite
        state = LoopState(x=x, opt_state=opt_state,
                          last_finite=jnp.where(finite, state.x, state.last_finite),
                          steps=state.steps + counted.astype(jnp.int32), nonfinite=~finite)
        losses = losses.at[i].set(jnp.where(done | ~finite, value.astype(jnp.float32), losses[i]))
        return i + counted.astype(jnp.int32), state, losses

    def keep_going(carry):
        i, state, _ = carry
        return (i < jnp.minimum(num_steps, max_steps)) & ~state.nonfinite

    losses = jnp.full((max_steps,), jnp.nan, jnp.float32)
    _, state, losses = jax.lax.while_loop(keep_going, body, (jnp.int32(0), state, losses))
    return state, losses
