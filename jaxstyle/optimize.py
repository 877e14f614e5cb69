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

Batches (:mod:`jaxstyle.batch`) ``vmap`` the whole loop. Under ``vmap`` every ``lax.cond``
whose predicate differs between members becomes a ``select``: both branches run, and JAX
first broadcasts every operand of the cond to the batch, so a cond that closes over the
network makes B copies of its weights and grouped convolutions (measured: 2-2.6x the
work per pair with optax's L-BFGS, see ``benchmarks/README.md``). :func:`lbfgs` is
therefore written without a cond around an evaluation: each call evaluates the loss and
gradient once, at one line-search trial point, so a batch costs one evaluation per member
per call and no member waits on another's line search longer than the loop's end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

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


def adam(*, learning_rate: float) -> Optimizer:
    opt = optax.adam(learning_rate)

    def step(x, state, loss_fn):
        value, grad = jax.value_and_grad(loss_fn)(x)
        updates, state = opt.update(grad, state, x)
        return optax.apply_updates(x, updates), state, value, jnp.array(True)

    return Optimizer(init=lambda x, loss_fn: opt.init(x), step=step)


class LbfgsState(NamedTuple):
    value: jax.Array  # loss at the accepted iterate x
    grad: jax.Array  # its gradient
    direction: jax.Array  # search direction from x (a descent direction)
    slope: jax.Array  # grad . direction (< 0)
    step_size: jax.Array  # the trial step size along direction
    trials: jax.Array  # int32, trials rejected in this line search
    history: optax.ScaleByLBFGSState  # the accepted curvature pairs (optax's layout, see lbfgs_history_update)
    fresh: jax.Array  # bool: x is not evaluated yet (the next call evaluates it and takes no step)


CURVATURE_RTOL = 1e-8
"""Default ``curvature_rtol`` of :func:`lbfgs`: a pair (s, y) is kept when sᵀy > 1e-8 |s| |y|.

The test is on the cosine of the angle between s and y, so it does not depend on the scale
of the loss or of the image (an absolute floor, such as PyTorch's sᵀy > 1e-10, would drop
the pairs near convergence: sᵀy falls to 1e-18 in float64 on the double well of the tests).
1e-8 is the relative threshold Nocedal & Wright give for skipping SR1 updates (§6.2). On a convex
quadratic with condition number k the cosine is at least 2 sqrt(k) / (k + 1), above 1e-8
for every k below 4e16, so a convex loss has no pair skipped (short of rounding noise in
the gradients near convergence) and takes optax.lbfgs's iterates. It is well above the
rounding of sᵀy in float64 (~1e-16 |s| |y|), so a pair whose curvature is zero up to rounding
is dropped rather than weighted by a 1/sᵀy of arbitrary size and sign; in float32 that
rounding (~1e-7 |s| |y|) is larger, and the rule amounts to sᵀy > 0 as computed.
"""


def _two_loop(grad, history, identity_scale, oldest):
    """H grad by the two-loop recursion (Nocedal & Wright, Alg. 7.4) over the ring ``history``
    read from slot ``oldest`` (the oldest pair) round to the newest, with H0 = identity_scale I.

    The arithmetic of optax's ``_precondition_by_lbfgs`` (private, so repeated here), op for op,
    so that a history whose pairs are all kept yields optax's direction bit for bit."""
    rhos = history.weights_memory
    indices = (oldest + jnp.arange(rhos.shape[0])) % rhos.shape[0]

    def right_product(vec, idx):
        dwi, dui = history.diff_params_memory[idx], history.diff_updates_memory[idx]
        alpha = rhos[idx] * optax.tree.real(optax.tree.vdot(dwi, vec))
        return optax.tree.cast_like(optax.tree.add_scale(vec, -alpha, dui), vec), alpha

    vec, alphas = jax.lax.scan(right_product, grad, indices, reverse=True)
    vec = optax.tree.scale(identity_scale, vec)

    def left_product(vec, idx_alpha):
        idx, alpha = idx_alpha
        dwi, dui = history.diff_params_memory[idx], history.diff_updates_memory[idx]
        beta = rhos[idx] * optax.tree.real(optax.tree.vdot(dui, vec))
        return optax.tree.cast_like(optax.tree.add_scale(vec, alpha - beta, dwi), vec), beta

    vec, _ = jax.lax.scan(left_product, vec, (indices, alphas))
    return vec


def lbfgs_history_update(grad: jax.Array, history: optax.ScaleByLBFGSState, x: jax.Array,
                         *, curvature_rtol: float = CURVATURE_RTOL) -> tuple[jax.Array, optax.ScaleByLBFGSState]:
    """``optax.scale_by_lbfgs().update(grad, history, x)`` that keeps a curvature pair only when
    it has positive curvature: returns (H grad, the new history).

    The pair is s = x - history.params, y = grad - history.updates (the step just taken and its
    change of gradient). A backtracking (Armijo) line search does not enforce the curvature
    condition, so on a non-convex loss sᵀy can be <= 0; such a pair, stored, makes the
    inverse-Hessian approximation indefinite for the next ``memory`` steps (and its weight
    1/sᵀy is negative or huge). A pair is kept when sᵀy > curvature_rtol |s| |y|
    (:data:`CURVATURE_RTOL`); otherwise it is skipped, which leaves the history as if the step
    had not produced a pair: the stored pairs, their weights and ``count`` are unchanged, and
    only ``params``/``updates`` move to (x, grad), from which the next pair is measured.

    ``count`` is optax's: 0 before the first point (no pair is formed; H0 = min(1, 1/|g|) I,
    optax's first step), else 1 + the pairs kept since, the newest kept pair in slot
    (count - 2) % memory and the next one written to slot (count - 1) % memory. It counts
    kept pairs, not steps, so that a skip leaves no gap in the ring: the two-loop reads
    exactly the last ``memory`` kept pairs in order. H0 = gamma I with gamma = sᵀy / yᵀy of
    the newest kept pair: the pair just kept, or on a skip the one in slot (count - 2), or,
    when no pair has been kept yet (count 1), optax's first-step scaling again.

    When every pair is kept this is optax's update, value for value (same arithmetic), so
    convex problems take optax.lbfgs's iterates. Pure jnp (``jnp.where``, no branch on data):
    it runs under jit and vmap.
    """
    memory = history.weights_memory.shape[0]
    started = history.count > 0
    # optax's expressions, in optax's order (the pair masked to zeros at count 0), so that a
    # kept pair compiles to the same arithmetic as optax's update.
    s = optax.tree.sub(x, history.params)
    y = optax.tree.sub(grad, history.updates)
    sy = optax.tree.real(optax.tree.vdot(y, s))
    weight = jnp.where(sy == 0.0, 0.0, 1.0 / sy)
    keep = started & (sy > curvature_rtol * optax.tree.norm(s) * optax.tree.norm(y))  # NaN: False
    s, y, weight = jax.tree.map(lambda v: jnp.where(started, v, jnp.zeros_like(v)), (s, y, weight))
    # Slot (count - 1) gets the kept pair, or zeros at count 0 (as in optax), or on a skip
    # its own contents back (the ring does not move).
    slot = (history.count - 1) % memory
    memories = (history.diff_params_memory, history.diff_updates_memory, history.weights_memory)
    diff_params_memory, diff_updates_memory, weights_memory = jax.tree.map(
        lambda memory_, new: memory_.at[slot].set(jnp.where(keep | ~started, new, memory_[slot])),
        memories, (s, y, weight))
    count = jnp.where(keep | ~started, optax.safe_increment(history.count), history.count)

    # H0 = gamma I: gamma from the pair just kept (optax's), min(1, 1/|g|) at count 0 (optax's
    # first step); on a skip from the newest kept pair, slot (count - 2), if there is one.
    numerator = optax.tree.real(optax.tree.vdot(y, s))
    denominator = optax.tree.norm(y, squared=True)
    identity_scale = jnp.where(denominator > 0.0, numerator / denominator, 1.0)
    capped_inv_norm = jnp.minimum(1.0, 1.0 / optax.tree.norm(jax.lax.stop_gradient(grad)))
    identity_scale = jnp.where(started, identity_scale, capped_inv_norm)
    last = (history.count - 2) % memory
    last_s, last_y = history.diff_params_memory[last], history.diff_updates_memory[last]
    last_yy = optax.tree.norm(last_y, squared=True)
    last_scale = jnp.where(last_yy > 0.0, optax.tree.real(optax.tree.vdot(last_y, last_s)) / last_yy, 1.0)
    last_scale = jnp.where(history.count >= 2, last_scale, capped_inv_norm)
    identity_scale = jnp.where(keep | ~started, identity_scale, last_scale)

    history = optax.ScaleByLBFGSState(count=count, params=x, updates=grad, diff_params_memory=diff_params_memory,
                                      diff_updates_memory=diff_updates_memory, weights_memory=weights_memory)
    # The oldest kept pair follows the newest round the ring: slot (count - 1) % memory, as in optax.
    return _two_loop(grad, history, identity_scale, (count - 1) % memory), history


def lbfgs(*, memory: int, max_trials: int = 31, decrease_factor: float = 0.5, slope_rtol: float = 1e-4,
          curvature_rtol: float = CURVATURE_RTOL) -> Optimizer:
    """L-BFGS (Nocedal & Wright, Alg. 7.4/7.5) with a backtracking Armijo line search that tries
    step 1 first, one loss-and-gradient evaluation per call.

    The direction is optax's (:func:`optax.scale_by_lbfgs`: two-loop recursion over the last
    ``memory`` pairs, the first step scaled by ``min(1, 1/|g|)``), except that a curvature pair
    with sᵀy <= curvature_rtol |s| |y| is not stored (:func:`lbfgs_history_update`: Armijo
    backtracking does not ensure sᵀy > 0, and on a non-convex loss such a pair would make the
    approximation indefinite for ``memory`` steps). The line search is the one of
    ``optax.scale_by_backtracking_linesearch(decrease_factor=0.5, max_learning_rate=1)``, so
    while every pair is kept (on a convex loss, short of rounding noise) a run takes the same
    iterates as ``optax.lbfgs`` with that line search (tested), but unrolled into the step
    loop: each call evaluates the trial point ``x + t d`` once
    (value and gradient together), accepts it when ``f(x + t d) <= f(x) + slope_rtol t g.d``,
    else halves ``t`` and returns with ``done`` False. A non-finite trial is rejected like any
    other. After ``max_trials`` rejected trials the step gives up: ``x`` stays, the curvature
    history is cleared, and the next step starts again from the scaled steepest descent. A
    history that yields an ascent direction is cleared the same way.

    ``init`` evaluates nothing: the first call evaluates the starting point (``done`` False,
    the value returned is that point's loss) and computes the first direction from it.

    Nothing is conditional on data except through ``jnp.where``, so under ``vmap`` a call
    costs one evaluation per member and the members' line searches proceed independently.
    """
    precondition = optax.scale_by_lbfgs(memory_size=memory)  # its init only: updates skip bad pairs

    def forget(history, drop, count):
        """``history`` with its curvature pairs dropped where ``drop``: their weights (rho) set
        to 0, so the two-loop recursion skips them; ``count`` restarts the ring (0: as at the first
        point; 1: the pairs so far cleared, the next pair kept goes to slot 0)."""
        return history._replace(count=jnp.where(drop, count, history.count).astype(history.count.dtype),
                                weights_memory=jnp.where(drop, 0.0, history.weights_memory))

    def direction(grad, history, x):
        d, history = lbfgs_history_update(grad, history, x, curvature_rtol=curvature_rtol)
        d = -d
        # An ascent (or zero, or non-finite) direction: restart from scaled steepest descent,
        # what optax's first step does (direction -g min(1, 1/|g|)).
        bad = ~(jnp.vdot(grad, d) < 0)
        d = jnp.where(bad, -grad * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(grad)), d)
        return d, jnp.vdot(grad, d), forget(history, bad, 1)

    def init(x, loss_fn):
        del loss_fn  # the first call of step evaluates x
        zeros = jnp.zeros_like(x)
        return LbfgsState(value=jnp.full((), jnp.inf, x.dtype), grad=zeros, direction=zeros,
                          slope=jnp.zeros((), x.dtype), step_size=jnp.zeros((), x.dtype),
                          trials=jnp.zeros((), jnp.int32), history=precondition.init(x),
                          fresh=jnp.ones((), bool))

    def step(x, state, loss_fn):
        trial = x + state.step_size * state.direction  # x itself when fresh (step size 0)
        value, grad = jax.value_and_grad(loss_fn)(trial)
        accepted = state.fresh | (value <= state.value + slope_rtol * state.step_size * state.slope)  # NaN: False
        give_up = ~accepted & (state.trials + 1 >= max_trials)
        done = (accepted | give_up) & ~state.fresh
        new_x = jnp.where(accepted, trial, x)
        # A point with a finite loss but a non-finite gradient is a dead end: its value is
        # reported as NaN on the next call, which stops the loop (last_finite keeps x).
        finite_grad = jnp.all(jnp.isfinite(grad))
        new_value = jnp.where(accepted, jnp.where(finite_grad, value, jnp.nan), state.value)
        new_grad = jnp.where(accepted, grad, state.grad)
        d, slope, history = direction(new_grad, forget(state.history, give_up, 0), new_x)
        renew = done | state.fresh  # a new line search starts from new_x
        keep = lambda new, old: jnp.where(renew, new, old)  # noqa: E731
        new_state = LbfgsState(value=new_value, grad=new_grad,
                               direction=keep(d, state.direction), slope=keep(slope, state.slope),
                               step_size=jnp.where(renew, jnp.ones_like(state.step_size),
                                                   decrease_factor * state.step_size),
                               trials=jnp.where(renew, 0, state.trials + 1),
                               history=jax.tree.map(keep, history, state.history),
                               fresh=jnp.zeros_like(state.fresh))
        # The loss at the iterate this call started from: when fresh, the one just evaluated.
        return new_x, new_state, jnp.where(state.fresh, value, state.value), done

    return Optimizer(init=init, step=step)


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
        from jaxstyle.jaxopt_adapter import jaxopt_lbfgs

        return jaxopt_lbfgs(memory=memory)._replace(name="jaxopt-lbfgs")
    raise ValueError(f"expected optimizer 'lbfgs', 'jaxopt-lbfgs', 'adam', an optax GradientTransformation or "
                     f"a jaxstyle.optimize.Optimizer, got {spec!r}")


def optimizer_from_factory(spec: str) -> Optimizer:
    """``"package.module:factory"`` -> ``factory()`` (an optax transformation or an
    :class:`Optimizer`) as an Optimizer named ``spec``; ValueError naming what is wrong."""
    import importlib

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
                     f"jaxstyle.optimize.Optimizer, got {type(made).__name__}")


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
