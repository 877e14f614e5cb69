"""The one place that touches jaxopt (unmaintained): its L-BFGS behind our optimizer interface.

jaxopt's solvers bind the objective at construction, so the solver is built inside
the traced step from the ``loss_fn`` closure; that costs nothing at run time.
"""

from __future__ import annotations

import warnings

import jax

from jaxstyle.optimize import LossFn, Optimizer


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
        return x, state, value

    return Optimizer(init=init, step=step)
