"""The style-transfer objective as a plain optimisation problem, for studying optimizers.

    problem = jaxstyle.style_problem(content, style, config=StyleConfig())
    value = problem.loss(problem.x0)              # the exact scalar stylize minimises
    grad = jax.grad(problem.loss)(problem.x0)     # pure: jit, vmap, grad all apply
    picture = problem.image(x)                    # what the iterate x stands for

``loss`` is the function :func:`jaxstyle.stylize` hands its optimizer (Gatys et al. 2016,
eq. 7, plus total variation and the penalty that keeps the image in [0, 1]; see
:mod:`jaxstyle.engine.stylize`), with the content and style targets computed once here. Several
styles (blended or split by a content mask), style masks and colour modes work as in
``stylize``; coarse-to-fine ``scales`` are several problems in a row, so they are refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxstyle.config import StyleConfig
from jaxstyle.engine.program import Program
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.inputs import check_stage_sizes, grey_init, initial_image, prepare_pair, restore_colors
from jaxstyle.objective.targets import stage_targets
from jaxstyle.objective.terms import loss_weights


@dataclasses.dataclass(frozen=True)
class StyleProblem:
    """x0: float32 [H, W, 3], the start image (``config.init``). loss(x) -> scalar float32, the
    objective at an iterate x [H, W, 3]. terms(x) -> {content, style, tv, range, total}, the
    weighted terms. image(x) -> float32 numpy [H, W, 3] in [0, 1]: x clipped, with the content's
    colours restored under ``preserve_colors="luminance"``. ``config`` is the configuration the
    problem was built with (its optimizer and iterations play no part)."""

    x0: jax.Array
    loss: Callable[[jax.Array], jax.Array]
    terms: Callable[[jax.Array], dict]
    image: Callable[[jax.Array], np.ndarray]
    config: StyleConfig


def _terms(params, targets, weights, program, x):
    return program.terms(params, targets, weights)(x)


def _loss(params, targets, weights, program, x):
    return program.loss(params, targets, weights)(x)


def style_problem(content: ArrayLike, style: ArrayLike | list[ArrayLike], *, vgg: VGG19,
                  config: StyleConfig = StyleConfig(), init_image: ArrayLike | None = None,
                  content_mask: ArrayLike | None = None,
                  style_masks: list[ArrayLike | None] | None = None) -> StyleProblem:
    """The objective :func:`jaxstyle.stylize` minimises for this pair, as a :class:`StyleProblem`.

    Arguments as for ``stylize``: content float32 [H, W, 3] RGB in [0, 1]; style one such image
    (any size) or a list of them.
    """
    if config.scales:
        raise ValueError(f"expected a single-scale config for a problem, got scales {config.scales}: "
                         "each coarse-to-fine stage is a problem of its own")
    pair = prepare_pair(content, style, config, content_mask=content_mask, style_masks=style_masks)
    h, w = pair.original.shape[:2]
    check_stage_sizes(h, w, [s.shape for s in pair.styles], config)
    init_image = grey_init(init_image, config)
    program = Program.build(config, vgg, 1)
    params = program.objective.params(vgg)
    targets = stage_targets(params, pair, program.objective, (h, w), 1.0)
    weights = loss_weights(config)
    x0 = initial_image(jnp.asarray(pair.content), config, init_image, style=jnp.asarray(pair.styles[0]))

    def image(x: ArrayLike) -> np.ndarray:
        return restore_colors(np.asarray(jnp.clip(jnp.asarray(x), 0.0, 1.0)), pair.original, config.preserve_colors)

    return StyleProblem(x0=x0, loss=partial(_loss, params, targets, weights, program),
                        terms=partial(_terms, params, targets, weights, program), image=image, config=config)
