"""The style term for ``style_loss="w2"`` and ``"sliced"`` (``"gram"`` stays in
:mod:`jaxstyle.objective.losses`, unchanged): each style layer's loss, weighted by the style layer
weights, scaled by a constant so that the default ``style_weight`` (1e-3, tuned for Gram) pulls as
hard as it does for Gram.

Targets (:mod:`jaxstyle.objective.targets` builds them), per style layer:

* ``w2``: a :class:`~jaxstyle.objective.statistics.W2Target` (mean [C], covariance with ridge, its
  square root, ridge) from the styles' moments blended linearly (mean and raw second moment,
  Crowson's style-transfer-pytorch); under a content mask one per region, leading axis R.
* ``sliced``: ``{"sorted": [N, K], "projections": [C, K]}``, N the iterate's pixel count at that
  layer (so that every pair of a batch has the same shapes), K = C fixed unit directions drawn
  from ``SLICED_SEED`` folded with the layer's index; several styles give the quantiles of the
  weighted mixture of their pixels; under a content mask ``sorted`` is [R, N, K].

Normalisation: ``W2_SCALE`` and ``SLICED_SCALE`` multiply each layer's loss, so that the default
weights (content 1, style 1e-3, layer weights 1/5) mean what they mean for Gram: a clearly stylized
picture that still shows the photograph. Measured on tubingen.jpg x starry_night.jpg at 256 px
with the Caffe VGG-19 (``jaxstyle weights``), 100 L-BFGS steps from the photograph:

* Matching the style term's gradient norm at the photograph (Gram's: 1.7e6) would give 1.1e5 and
  1.5e5; W2's picture then kept barely a trace of the photograph (their pull falls off slower
  than Gram's as the image nears the style).
* Matching it at Gram's default picture, where Gram's style gradient balances the content's
  (|grad| 4.4e4 vs 4.7e4; unscaled W2 2.6, sliced 0.78), gives 1.7e4 and 5.7e4. Sliced at 5.7e4
  looks right (relu4_2 content term 2.6e5, Gram's picture 3.8e5). W2 at 1.7e4 had Gram's content
  term (3.6e5) but by eye the Starry Night swallowed the left half of the town; at 6e3 (content
  term 1.9e5) it is about as stylized as Gram's picture after 100 steps.
* At equal wall time (benchmarks/quality_sweep.py, 4 pairs, 40 s at 256 px, 2026-12-06) W2 at
  6e3 was less stylized than Gram at the same weight (fewer steps in the time: W2's step costs
  1.5x Gram's); the W2 weight whose judged content distance equals Gram's default's was 1.25-2.2x
  the default on the four pairs. W2 uses 1e4 (1.67x): the default weight then gives about Gram's
  default content distance, where W2's frontier is below Gram's (lower style distance).

Both losses are distances between distributions (no dependence on the image size), per channel
(``W2^2 / C``; sliced: unit directions, mean over pixels and directions), like Gram's
``mean((G - A)^2)``, so one constant holds at every size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxstyle.objective.sliced import masked_sliced_style_loss, random_projections, sliced_style_loss
from jaxstyle.objective.statistics import masked_w2_style_loss, w2_style_loss

W2_SCALE = 1.0e4
SLICED_SCALE = 5.7e4
SLICED_SEED = 0  # the directions are part of the objective: fixed, the same for every run and pair
BLOCKS_REFUSED = {
    "sliced": "the sliced loss sorts every pixel at once (not a sum over blocks); use --block-size off with a "
              "smaller --size, or --style-loss gram",
}


def require_whole(style_loss: str, what: str = "block-by-block evaluation") -> None:
    """ValueError in one line naming the fix unless ``style_loss`` can be evaluated by blocks."""
    if style_loss in BLOCKS_REFUSED:
        raise ValueError(f"--style-loss {style_loss} refuses {what}: {BLOCKS_REFUSED[style_loss]}")


def layer_projections(layer_index: int, channels: int) -> jax.Array:
    """The sliced loss's fixed directions [C, C] for the ``layer_index``-th style layer."""
    return random_projections(jax.random.fold_in(jax.random.key(SLICED_SEED), layer_index), channels)


def statistic_layer_loss(style_loss: str, features: ArrayLike, target, masks: ArrayLike | None = None) -> jax.Array:
    """One layer's scaled ``w2`` or ``sliced`` loss of features [h, w, C] against ``target`` (see the
    module doc); with region ``masks`` [R, h, w] the regions' losses weighted by their shares."""
    if style_loss == "w2":
        loss = w2_style_loss(features, target) if masks is None else masked_w2_style_loss(features, masks, target)
        return W2_SCALE * loss
    if style_loss == "sliced":
        if masks is None:
            loss = sliced_style_loss(features, target["sorted"], target["projections"])
        else:
            loss = masked_sliced_style_loss(features, masks, target["sorted"], target["projections"])
        return SLICED_SCALE * loss
    raise ValueError(f"expected style_loss one of w2, sliced here, got {style_loss!r}")


def weighted_statistic_loss(style_loss: str, features: Mapping[str, jax.Array], targets: Mapping, layers: Sequence[str],
                            layer_weights: ArrayLike, masks: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """``sum_l w_l * scale * loss_l`` over ``layers`` (as losses.weighted_style_loss for Gram)."""
    weights = jnp.asarray(layer_weights, jnp.float32)
    return sum(weights[i] * statistic_layer_loss(style_loss, features[n], targets[n],
                                                 None if masks is None else masks[n])
               for i, n in enumerate(layers))
