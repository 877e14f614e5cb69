"""An optimizer from what a user names: ``"lbfgs"``, ``"jaxopt-lbfgs"``, ``"adam"``, an optax
``GradientTransformation``, an :class:`~jaxstyle.optim.base.Optimizer`, or ``package.module:factory``."""

from __future__ import annotations

import importlib

import optax

from jaxstyle.optim.base import Optimizer
from jaxstyle.optim.jaxopt_adapter import jaxopt_lbfgs
from jaxstyle.optim.lbfgs import lbfgs
from jaxstyle.optim.optax_adapter import adam, from_optax


def make_optimizer(spec, *, learning_rate: float | None = None, memory: int = 10) -> Optimizer:
    """An :class:`Optimizer` from a name (``"lbfgs"``, ``"jaxopt-lbfgs"``, ``"adam"``), an
    optax ``GradientTransformation`` or an :class:`Optimizer` (returned as it is)."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, optax.GradientTransformation):
        return from_optax(spec)
    if spec == "adam":
        return adam(learning_rate=learning_rate)._replace(name="adam")
    if spec == "lbfgs":
        return lbfgs(memory=memory)._replace(name="lbfgs")
    if spec == "jaxopt-lbfgs":
        return jaxopt_lbfgs(memory=memory)._replace(name="jaxopt-lbfgs")
    raise ValueError(f"expected optimizer 'lbfgs', 'jaxopt-lbfgs', 'adam', an optax GradientTransformation or "
                     f"a jaxstyle.Optimizer, got {spec!r}")


def optimizer_from_factory(spec: str) -> Optimizer:
    """``"package.module:factory"`` -> ``factory()`` (an optax transformation or an
    :class:`Optimizer`) as an Optimizer named ``spec``; ValueError naming what is wrong."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected an optimizer name or package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"optimizer {spec}: cannot import {module_name} ({exc})") from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"optimizer {spec}: {module_name} has no {attribute}")
    made = factory if isinstance(factory, (Optimizer, optax.GradientTransformation)) else factory()
    if isinstance(made, Optimizer):
        return made._replace(name=spec)
    if isinstance(made, optax.GradientTransformation):
        return from_optax(made, name=spec)
    raise ValueError(f"optimizer {spec}: expected it to return an optax GradientTransformation or a "
                     f"jaxstyle.Optimizer, got {type(made).__name__}")
