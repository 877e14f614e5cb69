"""Spatial control with masks (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017,
"Controlling Perceptual Factors in Neural Style Transfer"): each region of the
output takes its style from its own style image.

A content mask is one grey image in the content's frame whose grey level picks the
style: with R styles, white is style 1, black is style R, and R evenly spaced grey
levels lie between (two styles: white -> the first, black -> the second). Pixels
between two levels belong to both, in proportion, so antialiased edges blend and the
region masks sum to 1 everywhere. A style mask (one per style image, optional)
picks the part of that style image whose statistics the region should take (white:
use, black: ignore). Masks follow the network down: at each layer they are
average-pooled exactly as the features are.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.model.vgg import pool2x2, poolings_before


def region_masks(grey: np.ndarray, regions: int) -> np.ndarray:
    """[H, W] grey levels in [0, 1] -> [regions, H, W] soft masks summing to 1 (see module doc)."""
    if regions < 2:
        raise ValueError(f"expected a content mask to split the image between at least 2 styles, got {regions}")
    grey = np.clip(np.asarray(grey, np.float64), 0.0, 1.0)
    levels = 1.0 - np.arange(regions) / (regions - 1)  # style 1 is white
    masks = np.maximum(0.0, 1.0 - np.abs(grey[None] - levels[:, None, None]) * (regions - 1))
    return (masks / masks.sum(0, keepdims=True)).astype(np.float32)


def layer_masks(masks: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
    """[R, H, W] masks at the input -> {layer: [R, h, w]} at each layer's resolution (average-pooled)."""
    current = jnp.moveaxis(jnp.asarray(masks, jnp.float32), 0, -1)[None]  # [1, H, W, R]
    by_depth = {0: current}
    for depth in range(1, max(poolings_before(n) for n in layers) + 1):
        current = pool2x2(current, "avg")
        by_depth[depth] = current
    return {n: jnp.moveaxis(by_depth[poolings_before(n)][0], -1, 0) for n in layers}
