"""The objective of Gatys, Ecker & Bethge ("Image Style Transfer Using Convolutional Neural
Networks", CVPR 2016, eq. 7) as pure terms of an iterate, plus total variation and a range
penalty, and its static part (:class:`Objective`: layers, pooling, preprocessing, precision,
convolutions), which is hashable and used as a jit static argument.

Valid pixel range: the optimisation variable ``x`` is unconstrained, the network sees
``clip(x, 0, 1)``, and a penalty ``RANGE_PENALTY * sum((x - clip(x))^2)`` pulls pixels that
overshoot back (their loss gradient is zero out there). The image that is scored and returned
is always ``clip(x, 0, 1)``. Unlike clipping after each step, this keeps L-BFGS's curvature
pairs and line-search values consistent with the function it minimises.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxstyle.config import StyleConfig
from jaxstyle.model.convolutions import winograd_layers
from jaxstyle.model.vgg import VGG19, Preprocessing, VGG19Features, preprocess, with_winograd_kernels
from jaxstyle.objective.losses import normalized_gradient, total_variation, weighted_content_loss, weighted_style_loss
from jaxstyle.objective.style_losses import weighted_statistic_loss
from jaxstyle.objective.temporal import temporal_loss

RANGE_PENALTY = 1e3


@dataclasses.dataclass(frozen=True)
class Objective:
    """The static (compile-time) part of the objective; hashable."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str
    prep: Preprocessing
    precision: str = "float32"
    remat: bool = False
    normalize_gradients: bool = False
    winograd_layers: tuple[str, ...] = ()
    style_loss: str = "gram"  # "gram", "w2" or "sliced" (StyleConfig.style_loss)

    @classmethod
    def build(cls, config: StyleConfig, vgg: VGG19) -> Objective:
        """The objective of ``config`` on ``vgg``, with the convolutions ``config.conv`` picks for this backend."""
        return cls(config.content_layers, config.style_layers, vgg.pooling, vgg.preprocessing,
                   precision=config.precision, remat=config.remat, normalize_gradients=config.normalize_gradients,
                   winograd_layers=winograd_layers(config.conv, config.all_layers, jax.default_backend(),
                                                   config.precision),
                   style_loss=config.style_loss)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))

    def params(self, vgg: VGG19) -> dict:
        """The network's parameters as this objective's layers need them (with the Winograd
        kernels of ``winograd_layers``, transformed here, once per run)."""
        return with_winograd_kernels(vgg.params, self.winograd_layers) if self.winograd_layers else vgg.params


def features(params, image: jax.Array, objective: Objective, layers: tuple[str, ...]) -> dict:
    """Features of one image [H, W, 3] in [0, 1]: {layer: [h, w, C]}."""
    net = VGG19Features(layers=layers, pooling=objective.pooling, dtype=jnp.dtype(objective.precision),
                        remat=objective.remat, winograd_layers=objective.winograd_layers)
    feats = net.apply({"params": params}, preprocess(image, objective.prep)[None])
    return {k: v[0] for k, v in feats.items()}


def loss_weights(config: StyleConfig) -> dict:
    """The traced weights of the terms: scalars and per-layer vectors, float32."""
    return {"content_weight": jnp.float32(config.content_weight),
            "style_weight": jnp.float32(config.style_weight),
            "tv_weight": jnp.float32(config.tv_weight),
            "content_layer_weights": jnp.asarray(config.content_layer_weights, jnp.float32),
            "style_layer_weights": jnp.asarray(config.style_layer_weights, jnp.float32)}


def loss_terms(params, x: jax.Array, targets: dict, weights: dict, objective: Objective) -> dict:
    """Weighted objective terms at the iterate ``x`` [H, W, 3] (see module docstring):
    {content, style, tv, range, total}, float32 scalars. ``targets``: {content: {layer: [h, w, C]},
    style: {layer: [C, C]} (or [R, C, C] with ``masks`` {layer: [R, h, w]}: one Gram per region)}.
    A video frame's targets also hold ``temporal``: {warped: [J, H, W, 3], weights: [J, H, W]}
    (:mod:`jaxstyle.objective.temporal`), weighted by ``weights["temporal_weight"]``: the term
    ``temporal`` is then in the result too."""
    image = jnp.clip(x, 0.0, 1.0)
    feats = features(params, image, objective, objective.layers)
    content_feats = style_feats = feats
    if objective.normalize_gradients:  # each layer's gradient scaled to L1 norm = its weight
        scales = weights["content_weight"] * weights["content_layer_weights"]
        content_feats = {n: normalized_gradient(feats[n], scales[i]) for i, n in enumerate(objective.content_layers)}
        scales = weights["style_weight"] * weights["style_layer_weights"]
        style_feats = {n: normalized_gradient(feats[n], scales[i]) for i, n in enumerate(objective.style_layers)}
    content = weighted_content_loss(content_feats, targets["content"], objective.content_layers,
                                    weights["content_layer_weights"])
    if objective.style_loss == "gram":
        style = weighted_style_loss(style_feats, targets["style"], objective.style_layers,
                                    weights["style_layer_weights"], masks=targets.get("masks"))
    else:  # targets["style"] as objective.targets makes them for this loss (objective.style_losses)
        style = weighted_statistic_loss(objective.style_loss, style_feats, targets["style"], objective.style_layers,
                                        weights["style_layer_weights"], masks=targets.get("masks"))
    return with_total({"content": weights["content_weight"] * content, "style": weights["style_weight"] * style,
                       **pixel_terms(x, targets, weights, image)})


def pixel_terms(x: jax.Array, targets: dict, weights: dict, image: jax.Array | None = None) -> dict:
    """The weighted terms of the iterate ``x`` that need no network, sums over pixels and their
    neighbours: tv, range, and temporal for a video frame. ``image``: ``clip(x, 0, 1)`` when the
    caller has it (one clip, so its gradient is taken once)."""
    image = jnp.clip(x, 0.0, 1.0) if image is None else image
    outside = x - image
    terms = {"tv": weights["tv_weight"] * total_variation(image),
             "range": RANGE_PENALTY * jnp.sum(outside * outside)}
    if "temporal" in targets:
        terms["temporal"] = weights["temporal_weight"] * temporal_loss(image, targets["temporal"]["warped"],
                                                                        targets["temporal"]["weights"])
    return terms


def with_total(terms: dict) -> dict:
    """``terms`` and their sum as ``total``."""
    return {**terms, "total": sum(terms.values())}
