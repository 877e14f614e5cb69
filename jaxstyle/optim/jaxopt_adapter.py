"""The one place that touches jaxopt (unmaintained): its L-BFGS behind our optimizer interface.

jaxopt's solvers bind the objective at construction, so the solver is built inside
the traced step from the ``loss_fn`` closure; that costs nothing at run time.

Its zoom line search branches with ``lax.cond`` around evaluations; under ``vmap`` those
become selects over operands broadcast to the batch (the network's weights included): a
vmapped jaxopt step ran 5.3-5.6 forward and 4.3-4.6 backward passes per pair where one pair
alone runs 2.75 and 1.75, as grouped convolutions (benchmarks/README.md, evaluations). The
optimizer is therefore marked not vmappable: batches map it over their pairs one after the
other (:func:`jaxstyle.engine.batch.map_over_pairs`).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from jaxstyle.optim.base import LossFn, Optimizer


def jaxopt_lbfgs(*, memory: int) -> Optimizer:
    """jaxopt.LBFGS (zoom line search) stepping one iteration per call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jaxopt announces its deprecation on import
        import jaxopt

    def solver(loss_fn: LossFn):
        return jaxopt.LBFGS(fun=loss_fn, history_size=memory, maxiter=1 << 30)

    def init(x: jax.Array, loss_fn: LossFn):
        return solver(loss_fn).init_state(x)

    def step(x: jax.Array, state, loss_fn: LossFn):
        value = state.value  # jaxopt keeps the loss at the current iterate in its state
        x, state = solver(loss_fn).update(x, state)
        return x, state, value, jnp.array(True)

    return Optimizer(init=init, step=step, vmappable=False)
