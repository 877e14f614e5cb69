"""The optimizer protocol: an :class:`Optimizer` is a pair of pure functions, as in optax.

``init(x, loss_fn)`` returns a state pytree and ``step(x, state, loss_fn)`` returns ``(x, state,
value, done)``: the new iterate, the new state, the loss at the iterate the step started from, and
whether an optimisation step finished (a line-search trial that was rejected is a call with
``done`` False). :mod:`.loop` runs any of them in one compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

LossFn = Callable[[jax.Array], jax.Array]


class Optimizer(NamedTuple):
    """init(x, loss_fn) -> state; step(x, state, loss_fn) -> (x, state, value, done).

    ``vmappable``: the step may run under ``jax.vmap`` at the cost of one member per member;
    when False (an optimizer with conds around evaluations), batches map it over their
    pairs one after the other inside the compiled program instead.
    """

    init: Callable[[jax.Array, LossFn], Any]
    step: Callable[[jax.Array, Any, LossFn], tuple[jax.Array, Any, jax.Array, jax.Array]]
    vmappable: bool = True
    name: str = "custom"


class LoopState(NamedTuple):
    x: jax.Array  # current iterate
    opt_state: Any
    last_finite: jax.Array  # newest iterate whose loss was finite
    steps: jax.Array  # int32, steps taken
    nonfinite: jax.Array  # bool, a non-finite loss was met (the loop stopped)
