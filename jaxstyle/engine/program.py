"""The static part of a run: its objective, optimizer, evaluation strategy and chunk length.
Hashable, used as a jit static argument, so a second run with the same shapes and options
compiles nothing."""

from __future__ import annotations

import dataclasses

from jaxstyle.config import StyleConfig, is_integer
from jaxstyle.engine.evaluation import WholeImage
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.terms import Objective
from jaxstyle.optim import Optimizer, make_optimizer


@dataclasses.dataclass(frozen=True)
class Program:
    """objective: the static objective; optimizer, learning_rate, lbfgs_memory: what
    :func:`jaxstyle.optim.factory.make_optimizer` builds; chunk: steps per compiled chunk;
    evaluation: how value and gradient are computed (:mod:`jaxstyle.engine.evaluation`)."""

    objective: Objective
    optimizer: object
    learning_rate: float
    lbfgs_memory: int
    chunk: int
    evaluation: WholeImage = WholeImage()

    @classmethod
    def build(cls, config: StyleConfig, vgg: VGG19, callback_every: int, evaluation: WholeImage = WholeImage()
              ) -> Program:
        """The program of a run whose loop is compiled in chunks of ``callback_every`` steps."""
        if not is_integer(callback_every) or callback_every < 1:
            raise ValueError(f"expected callback_every to be an integer >= 1, got {callback_every!r}")
        longest_stage = max(config.iterations, config.scale_iterations if config.scales else 0, 1)
        return cls(Objective.build(config, vgg), config.optimizer, config.learning_rate, config.lbfgs_memory,
                   chunk=int(min(callback_every, longest_stage)), evaluation=evaluation)

    def make_optimizer(self) -> Optimizer:
        return make_optimizer(self.optimizer, learning_rate=self.learning_rate, memory=self.lbfgs_memory)

    def loss(self, params, targets: dict, weights: dict):
        """The scalar loss function of an iterate, as this program's evaluation computes it."""
        return self.evaluation.loss(params, targets, weights, self.objective)

    def terms(self, params, targets: dict, weights: dict):
        """The weighted terms of an iterate (content, style, tv, range, total), as this program's evaluation
        computes them."""
        return self.evaluation.terms(params, targets, weights, self.objective)
