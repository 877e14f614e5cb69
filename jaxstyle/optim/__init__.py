"""Optimizers of the image: the :class:`Optimizer` protocol (``base``) and the compiled step loop
(``loop``), our L-BFGS (``lbfgs``), optax and jaxopt adapters, and what a user names (``factory``).
The names below are the public face; write your own as ``Optimizer(init, step)``."""

from jaxstyle.optim.base import LoopState, LossFn, Optimizer
from jaxstyle.optim.factory import make_optimizer, optimizer_from_factory
from jaxstyle.optim.jaxopt_adapter import jaxopt_lbfgs
from jaxstyle.optim.lbfgs import LbfgsState, lbfgs
from jaxstyle.optim.loop import init_loop, run_steps
from jaxstyle.optim.optax_adapter import adam, from_optax

__all__ = ["LbfgsState", "LoopState", "LossFn", "Optimizer", "adam", "from_optax", "init_loop", "jaxopt_lbfgs", "lbfgs",
           "make_optimizer", "optimizer_from_factory", "run_steps"]
