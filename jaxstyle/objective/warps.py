"""Random smooth flows and the temporal term of feed-forward training, for video without flicker
(Ruder, Dosovitskiy & Brox, IJCV 2018, sec. 5; Huang et al., "Real-Time Neural Style Transfer for
Videos", CVPR 2017): the output of a warped input should equal the warped output. The flows are
made up, so still images suffice: no video, no optical flow.

Conventions as :mod:`jaxstyle.objective.temporal`: a flow [H, W, 2] moves pixel p = (x, y) to
p + f(p) (channel 0 horizontal, 1 vertical) and ``warp(image, f)(p) = image(p + f(p))`` (bilinear).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxstyle.objective.temporal import in_frame, warp

GRID = 4  # the coarse random field's nodes per side (its wavelength ~ the image's size / 2)


def random_flow(key: jax.Array, shape: tuple[int, int], *, max_shift: float) -> jax.Array:
    """A random smooth flow float32 [H, W, 2] for an image of ``shape`` (h, w): a random affine
    motion (translation, rotation, scale, shear) plus a coarse ``GRID`` x ``GRID`` random
    displacement field upsampled (cubic), scaled so that its largest displacement component is a
    random fraction in [1/4, 1] of ``max_shift`` times the longer side (zero for ``max_shift`` 0)."""
    h, w = shape
    size = float(max(h, w))
    k_linear, k_shift, k_grid, k_size = jax.random.split(key, 4)
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    centred = jnp.stack([(xs - (w - 1) / 2) / size, (ys - (h - 1) / 2) / size], axis=-1)  # in [-1/2, 1/2]
    linear = jax.random.uniform(k_linear, (2, 2), jnp.float32, -1.0, 1.0)
    shift = jax.random.uniform(k_shift, (2,), jnp.float32, -1.0, 1.0)
    coarse = jax.random.normal(k_grid, (GRID, GRID, 2), jnp.float32)
    flow = centred @ linear.T + 0.5 * shift + 0.5 * jax.image.resize(coarse, (h, w, 2), "cubic")
    limit = max_shift * size * jax.random.uniform(k_size, (), jnp.float32, 0.25, 1.0)
    peak = jnp.max(jnp.abs(flow))
    return flow * (limit / jnp.maximum(peak, 1e-6)) * (peak > 0)


def warped_input(key: jax.Array, image: jax.Array, *, max_shift: float, noise: float
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A made-up next frame of ``image`` [H, W, 3] in [0, 1]: (``warp(image, flow)`` plus Gaussian
    noise of std ``noise``, clipped to [0, 1]; the flow [H, W, 2] (:func:`random_flow`); valid
    [H, W] float32, 1 where p + f(p) lies inside the image)."""
    k_flow, k_noise = jax.random.split(key)
    flow = random_flow(k_flow, image.shape[:2], max_shift=max_shift)
    moved = warp(image, flow) + noise * jax.random.normal(k_noise, image.shape, jnp.float32)
    return jnp.clip(moved, 0.0, 1.0), flow, in_frame(flow).astype(jnp.float32)


def temporal_error(moved_output: jax.Array, output: jax.Array, flow: jax.Array, valid: jax.Array) -> jax.Array:
    """``mean over valid pixels and channels of (moved_output - warp(output, flow))^2``: output,
    moved_output [H, W, 3] (the network's output of an image and of its warped version), flow
    [H, W, 2], valid [H, W]; 0 when no pixel is valid."""
    diff = moved_output - warp(output, flow)
    count = jnp.sum(valid) * diff.shape[-1]
    return jnp.sum(valid[..., None] * diff * diff) / jnp.maximum(count, 1.0)


def temporal_term(apply: Callable[[jax.Array], jax.Array], key: jax.Array, images: jax.Array, *,
                  max_shift: float, noise: float) -> tuple[jax.Array, jax.Array]:
    """The temporal term's per-image errors [B] (:func:`temporal_error`) of the network ``apply``
    ([B, H, W, 3] -> [B, H, W, 3]) on ``images`` [B, H, W, 3], each with its own random flow from
    ``key``, and the network's outputs of ``images`` [B, H, W, 3]. The network runs once, on the
    images and their warped versions together. Gradients flow through both outputs."""
    b = images.shape[0]
    moved, flows, valid = jax.vmap(lambda k, x: warped_input(k, x, max_shift=max_shift, noise=noise))(
        jax.random.split(key, b), images)
    both = apply(jnp.concatenate([images, moved]))
    outputs, moved_outputs = both[:b], both[b:]
    return jax.vmap(temporal_error)(moved_outputs, outputs, flows, valid), outputs
