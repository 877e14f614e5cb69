r"""optax transformations as :class:`~jaxstyle.optim.base.Optimizer`\ s: Adam, and any
``GradientTransformation`` (with the extra arguments ``optax.lbfgs`` and its line searches take)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxstyle.optim.base import Optimizer


def adam(*, learning_rate: float) -> Optimizer:
    opt = optax.adam(learning_rate)

    def step(x, state, loss_fn):
        value, grad = jax.value_and_grad(loss_fn)(x)
        updates, state = opt.update(grad, state, x)
        return optax.apply_updates(x, updates), state, value, jnp.array(True)

    return Optimizer(init=lambda x, loss_fn: opt.init(x), step=step)


def from_optax(transformation: optax.GradientTransformation, *, name: str = "optax", vmappable: bool = True
               ) -> Optimizer:
    """Any optax transformation as an :class:`Optimizer`: one value-and-gradient per step, then
    ``update(grad, state, x, value=, grad=, value_fn=)`` (the extra arguments go to
    transformations that take them, such as ``optax.lbfgs`` and its line searches).

    A transformation with ``lax.cond`` around evaluations (``optax.lbfgs``'s zoom line search)
    gives correct results under ``vmap`` but pays for both branches in a batch; pass
    ``vmappable=False`` to have batches run its pairs one after the other instead.
    """
    extra = isinstance(transformation, optax.GradientTransformationExtraArgs)

    def step(x, state, loss_fn):
        value, grad = jax.value_and_grad(loss_fn)(x)
        kwargs = {"value": value, "grad": grad, "value_fn": loss_fn} if extra else {}
        updates, state = transformation.update(grad, state, x, **kwargs)
        return optax.apply_updates(x, updates), state, value, jnp.array(True)

    return Optimizer(init=lambda x, loss_fn: transformation.init(x), step=step, vmappable=vmappable, name=name)
