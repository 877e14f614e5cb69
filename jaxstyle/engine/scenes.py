"""Scene cuts: where a video frame stops matching the frame before it, as pure JAX functions of two
frames and the flows between them.

A pixel of frame a is matched in frame b when its flow match is reliable (Ruder's weights c,
:func:`jaxstyle.objective.temporal.reliability`) and frame b, warped onto frame a, agrees with it
there, either

* as it is: mean absolute RGB difference below ``COLOUR_TOLERANCE`` (images in [0, 1]), or
* once each frame's exposure is factored out: each frame's colours minus their mean (per channel)
  and divided by their standard deviation (one for the three channels, at least ``CONTRAST_FLOOR``),
  both over the reliable pixels that neither frame clips; mean absolute difference below
  ``STRUCTURE_TOLERANCE`` deviations, a channel clipped in one frame counting only past its bound.

The second makes the match invariant to a gain and an offset per frame, so that an auto-exposure
step, a flash, a brightness step or a fade stays one shot (the temporal term is kept exactly where
such changes would flicker), while a hard cut, whose structure differs, still cuts. Either check
matches a pixel, so no frame that the colour check alone kept in its shot is cut. What no frame
shows cannot be matched: a flash that blows out most of a frame leaves the flow nothing to follow
there (on a test scene 80% clipped, DIS found 7% of its pixels reliable) and still cuts.

Two flat frames (both deviations below the floor: black, the depth of a fade) give the flow nothing
to follow either; they are matched pixel by pixel in place, by colour. So a fade to black stays one
shot down to black, a fade through black into another shot is one shot (nothing in the frames says
where it changes), and a cut from black to a picture, or from a picture to black, still cuts.

Measured on a photograph panned 2 px a frame (160x120, 8-bit, DIS flow), the share matched by the
colour check alone -> by both (``VideoConfig.cut_threshold`` is 0.3): a +0.12 brightness step
0.00 -> 0.98; a x0.75 fade step 0.41 -> 0.83; a x1.6 + 0.15 flash 0.00 -> 0.82, and back 0.00 ->
0.79; x1.3 and x0.7 exposure steps 0.34 -> 0.91, 0.33 -> 0.86; a hard cut 0.00 -> 0.00 (0.16 -> 0.18
where the flow method finds a consistent zero flow across it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.objective.temporal import reliability, warp

COLOUR_TOLERANCE = 0.1  # mean absolute RGB difference (in [0, 1]) under which a pixel matches as it is
STRUCTURE_TOLERANCE = 0.3  # ... and the same in standard deviations of each frame, exposure factored out
CONTRAST_FLOOR = 0.02  # least standard deviation a frame is divided by (~5 levels of 8-bit): no noise blown up
CLIPPED = 1.5 / 255  # a channel this close to 0 or 1 is clipped (8-bit levels 0, 1 and 254, 255)


def normalised(image: jax.Array, weights: jax.Array) -> jax.Array:
    """``image`` [H, W, 3] with its exposure factored out: minus its mean per channel and divided by
    its standard deviation (one for the three channels, at least ``CONTRAST_FLOOR``), both weighted
    by ``weights`` [H, W, 3] (>= 0; all zero: the mean of nothing is 0, the deviation the floor)."""
    image = image.astype(jnp.float32)
    mean = jnp.sum(weights * image, (0, 1)) / jnp.maximum(jnp.sum(weights, (0, 1)), 1e-6)
    centred = image - mean
    deviation = jnp.sqrt(jnp.sum(weights * centred * centred) / jnp.maximum(jnp.sum(weights), 1e-6))
    return centred / jnp.maximum(deviation, CONTRAST_FLOOR)


def matched(frame_a: jax.Array, warped_b: jax.Array, weights: jax.Array) -> jax.Array:
    """[H, W] bool: where frame a [H, W, 3] agrees with frame b warped onto it (``warped_b``), as it is
    or under a gain and offset per frame (the module docstring); ``weights`` [H, W]: the reliability
    of frame a's matches. Each frame's exposure is measured over the reliable channels that neither
    frame clips; a channel clipped in one frame only bounds its value there (a highlight clipped at 1
    agrees with any value of the other frame at or above it, a shadow crushed to 0 with any below)."""
    a, b = frame_a.astype(jnp.float32), warped_b.astype(jnp.float32)
    as_is = jnp.mean(jnp.abs(a - b), axis=-1) < COLOUR_TOLERANCE
    low_a, high_a, low_b, high_b = a <= CLIPPED, a >= 1 - CLIPPED, b <= CLIPPED, b >= 1 - CLIPPED
    clear = ~(low_a | high_a | low_b | high_b)
    difference = normalised(a, weights[..., None] * clear) - normalised(b, weights[..., None] * clear)
    residual = jnp.where(difference > 0, difference * ~(low_a | high_b), -difference * ~(high_a | low_b))
    return as_is | (jnp.mean(residual, axis=-1) < STRUCTURE_TOLERANCE)


def deviation(image: jax.Array) -> jax.Array:
    """The standard deviation of a frame [H, W, 3] about its mean colour (one for the three channels)."""
    image = image.astype(jnp.float32)
    return jnp.sqrt(jnp.mean((image - jnp.mean(image, (0, 1))) ** 2))


@jax.jit
def matched_share(frame_a: jax.Array, frame_b: jax.Array, flow_ab: jax.Array, flow_ba: jax.Array) -> jax.Array:
    """The share of frame a's pixels (float32 [H, W, 3] in [0, 1]) with a reliable match in frame b
    that agrees with it (:func:`matched`): ``mean(c * matched)``; flows [H, W, 2] a->b and b->a.
    Two flat frames (deviation below ``CONTRAST_FLOOR`` both: black, the depth of a fade) give the flow
    nothing to follow: their share is that of the pixels whose colours match as they are, in place."""
    weights = reliability(flow_ab, flow_ba)
    share = jnp.mean(weights * matched(frame_a, warp(frame_b, flow_ab), weights))
    flat = jnp.mean(jnp.mean(jnp.abs(frame_a - frame_b), axis=-1) < COLOUR_TOLERANCE)
    return jnp.where(jnp.maximum(deviation(frame_a), deviation(frame_b)) < CONTRAST_FLOOR, flat, share)
