"""Katherine Crowson's schedule (crowsonkb/style-transfer-pytorch), rebuilt on jaxstyle's objective
as a reference for :mod:`benchmarks.quality_sweep`: the schedule issue 30 asks ours to beat.

What it does, as ``style_transfer.py`` does it (its defaults in brackets):

* coarse-to-fine scales spaced by sqrt(2) from ``min_scale`` [128 px] up to the output size, the
  style image resized with each scale (``factor`` of the output size, as stylize's stages do);
* Adam on the pixels [lr 0.02, betas (0.9, 0.99)] whose first and second moments are carried to
  the next scale, resized as the image is (bilinear here; KC interpolates them too);
* the output is a bias-corrected exponential moving average of the iterate [decay 0.99], restarted
  at every scale; the next scale starts from the average, upsampled.

The objective at each scale is exactly ``jaxstyle.style_problem``'s (the same loss stylize
minimises, whatever ``style_loss``), so only the schedule differs from a ``stylize`` run.
Time is kept as :func:`benchmarks.quality_sweep.timed_run` keeps it: the clock starts at the call,
coarse scales run ``scale_iterations`` steps, the last one runs until ``seconds`` have passed
(checked every ``check_every`` steps), and the image judged is the average at the last check
within the budget. Compilation is excluded by a warm-up call with the same shapes (the chunk
function is jitted on its arguments, so a second run compiles nothing).
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

KC = {"lr": 0.02, "b1": 0.9, "b2": 0.99, "decay": 0.99, "min_scale": 128}
OPTIMIZER = optax.adam(KC["lr"], b1=KC["b1"], b2=KC["b2"])  # one object: jit's static argument, compiled once


def kc_scales(size: int, min_scale: int = KC["min_scale"]) -> list[int]:
    """Longest sides of KC's stages: min_scale * sqrt(2)^k below ``size``, then ``size``."""
    count = max(0, math.ceil(math.log2(size / min_scale) * 2))
    scales = sorted({round(min_scale * 2 ** (k / 2)) for k in range(count)} - {size})
    return [s for s in scales if s < size] + [size]


@partial(jax.jit, static_argnames=("loss", "program", "optimizer", "steps"))
def _chunk(loss_args, state, *, loss, program, optimizer, steps):
    """``steps`` Adam steps and EMA updates: state = (x, opt_state, average, t)."""
    grad = jax.grad(lambda x: loss(*loss_args, program, x))

    def body(_, s):
        x, opt, avg, t = s
        updates, opt = optimizer.update(grad(x), opt, x)
        x = optax.apply_updates(x, updates)
        return x, opt, KC["decay"] * avg + (1 - KC["decay"]) * x, t + 1

    return jax.lax.fori_loop(0, steps, body, state)


def _averaged(state) -> jax.Array:
    x, _, avg, t = state
    return jnp.where(t > 0, avg / (1 - KC["decay"] ** jnp.maximum(t, 1)), x)


def _resized(tree, shape):
    return jax.tree.map(lambda a: jax.image.resize(a, (*shape, a.shape[-1]), "linear")
                        if getattr(a, "ndim", 0) == 3 else a, tree)


def kc_timed_run(content: np.ndarray, style: np.ndarray, config, seconds: float, *, vgg, scale_iterations: int,
                 check_every: int = 5, last_iterations: int | None = None) -> dict:
    """One run of KC's schedule stopped by the clock (or after ``last_iterations`` steps of the last
    scale: a warm-up that compiles every scale); the dict of ``quality_sweep.timed_run``."""
    from jaxstyle import style_problem
    from jaxstyle.io.images import resize_to

    h, w = content.shape[:2]
    optimizer = OPTIMIZER
    trace, kept, steps_done = [], {}, 0
    start = time.perf_counter()
    scales = kc_scales(max(h, w))
    state = None
    for index, scale in enumerate(scales):
        last = index == len(scales) - 1
        shape = (max(1, round(h * scale / max(h, w))), max(1, round(w * scale / max(h, w))))
        factor = shape[0] / h
        style_shape = (max(1, round(style.shape[0] * factor)), max(1, round(style.shape[1] * factor)))
        problem = style_problem(resize_to(content, *shape), resize_to(style, *style_shape), vgg=vgg,
                                config=dataclasses.replace(config, scales=(), iterations=1))
        loss = problem.loss
        if state is None:
            x = problem.x0
            state = (x, optimizer.init(x), jnp.zeros_like(x), jnp.int32(0))
        else:  # the average upsampled, Adam's moments resized with it, a fresh average
            x = _resized(_averaged(state), shape)
            state = (x, _resized(state[1], shape), jnp.zeros_like(x), jnp.int32(0))
        # style_problem's loss is partial(f, params, targets, weights, program): the arrays traced, the program static
        run = partial(_chunk, loss.args[:3], loss=loss.func, program=loss.args[3], optimizer=optimizer,
                      steps=check_every)
        budget = scale_iterations if not last else last_iterations
        done = 0
        while budget is None or done < budget:
            state = run(state)
            done += check_every
            steps_done += check_every
            average = _averaged(state)
            average.block_until_ready()
            elapsed = time.perf_counter() - start
            trace.append((steps_done, round(elapsed, 4)))
            if last and (elapsed <= seconds or not kept):
                kept.update(image=problem.image(average), seconds=elapsed, steps=steps_done,
                            loss=float(loss(average)))
            if elapsed >= seconds:
                break
        if time.perf_counter() - start >= seconds and not last:
            kept.update(image=np.asarray(jax.image.resize(problem.image(_averaged(state)), (h, w, 3), "linear")),
                        seconds=time.perf_counter() - start, steps=steps_done, loss=float("nan"))
            break
    per_step = (trace[-1][1] - trace[0][1]) / max(1, trace[-1][0] - trace[0][0]) if len(trace) > 1 else 0.0
    return {"image": kept["image"], "steps": kept["steps"], "seconds": round(kept["seconds"], 3),
            "loss": kept["loss"], "over_budget": kept["seconds"] > seconds, "ms_per_step": round(1000 * per_step, 2),
            "trace": trace, "scales": scales}
