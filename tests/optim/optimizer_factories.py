"""Optimizer factories named on the command line in tests (``tests.optim.optimizer_factories:clipped_adam``)."""

import optax

from jaxstyle.optim import Optimizer, adam


def clipped_adam():
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.002))


def own_optimizer() -> Optimizer:
    return adam(learning_rate=0.002)


def not_an_optimizer():
    return 42
