"""Resampling of images and masks in JAX, for coarse-to-fine stages and style sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Lanczos resize of [H, W, C] in [0, 1] to ``shape`` (antialiased when shrinking), clipped to [0, 1]."""
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    return jnp.clip(jax.image.resize(image, (*shape, image.shape[-1]), "lanczos3"), 0.0, 1.0)


def resize_mask(mask: ArrayLike, shape: tuple[int, int]) -> jax.Array:
    """Resize a mask [H, W] in [0, 1] to ``shape`` with a filter that cannot overshoot (linear,
    antialiased when shrinking: non-negative weights), so a hard edge between two grey levels
    gets only values between them. Lanczos would ring there, and with three or more styles the
    overshoot lands on another style's grey (a band of it along every edge)."""
    mask = jnp.asarray(mask, jnp.float32)
    if tuple(mask.shape) == tuple(shape):
        return mask
    return jnp.clip(jax.image.resize(mask, tuple(shape), "linear", antialias=True), 0.0, 1.0)


def scaled(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(h, w) of ``shape`` scaled by ``factor``, at least 1 px each."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))
