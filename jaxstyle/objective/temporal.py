"""Temporal consistency for video: Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos"
(GCPR 2016; IJCV 2018), as pure JAX functions of images and optical flows.

Conventions. A flow ``f_ab`` [H, W, 2] maps each pixel p = (x, y) of frame a to p + f_ab(p) in
frame b; channel 0 is the horizontal (x, column) displacement, channel 1 the vertical (y, row)
one, as OpenCV and Middlebury ``.flo`` files store it. :func:`warp` brings an image of frame b onto
frame a's grid with ``f_ab`` (backward warping, bilinear): ``warp(x_b, f_ab)(p) = x_b(p + f_ab(p))``.
So the previous output is warped onto frame i with the flow from i to i-1 (Ruder's backward flow).

Reliability (the paper's weights c, from the forward-backward consistency check of the reference
code's ``consistencyChecker``): with ``w_hat = f_ab`` and ``w_tilde(p) = f_ba(p + f_ab(p))``, a pixel
of frame a is unreliable (0) where its match falls out of frame b, where it is disoccluded,
``|w_tilde + w_hat|^2 > 0.01 (|w_tilde|^2 + |w_hat|^2) + 0.5``, and on motion boundaries,
``|grad u|^2 + |grad v|^2 > 0.01 |w_hat|^2 + 0.002`` (central differences); 1 elsewhere; then
smoothed by the reference's small Gaussian, so the weights are soft at the edges of what is excluded.

The short-term term is ``(1/D) sum c (x - warp(x_prev))^2`` (D = H W 3, images in [0, 1]); the
long-term one sums it over the earlier frames i - j, j in J, each with the weights of the pixels no
closer frame already covers: ``c_long_j = max(c_j - sum_{k in J, k < j} c_k, 0)`` (closest first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DISOCCLUSION_RELATIVE = 0.01
DISOCCLUSION_ABSOLUTE = 0.5
MOTION_BOUNDARY_RELATIVE = 0.01
MOTION_BOUNDARY_ABSOLUTE = 0.002


def sample_points(flow: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The points p + f(p) that ``flow`` [H, W, 2] maps each pixel to: (x [H, W], y [H, W])."""
    h, w = flow.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    return xs + flow[..., 0], ys + flow[..., 1]


def in_frame(flow: jax.Array) -> jax.Array:
    """[H, W] bool: where p + f(p) lies inside the frame (pixel centres 0 .. W-1, 0 .. H-1)."""
    h, w = flow.shape[:2]
    x, y = sample_points(flow)
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


@jax.jit
def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
    """``image`` [H, W, C] of frame b brought onto frame a's grid by the flow ``f_ab`` [H, W, 2]:
    bilinear interpolation at p + f_ab(p); points outside take the nearest border pixel (they are
    unreliable, weight 0, in every use here)."""
    h, w = image.shape[:2]
    x, y = sample_points(flow.astype(jnp.float32))
    x = jnp.clip(x, 0.0, w - 1.0)
    y = jnp.clip(y, 0.0, h - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
    x1 = jnp.minimum(x0 + 1, w - 1)
    y1 = jnp.minimum(y0 + 1, h - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(image.dtype)


def _gradient_magnitude(flow: jax.Array) -> jax.Array:
    """|grad u|^2 + |grad v|^2 [H, W] by central differences, mirrored at the borders (the
    reference's ``CDerivative(3)`` with symmetric boundaries)."""
    padded = jnp.pad(flow, ((1, 1), (1, 1), (0, 0)), mode="symmetric")
    dx = 0.5 * (padded[1:-1, 2:] - padded[1:-1, :-2])
    dy = 0.5 * (padded[2:, 1:-1] - padded[:-2, 1:-1])
    return jnp.sum(dx * dx + dy * dy, axis=-1)


# the reference's 5-tap Gaussian, sigma 0.8 (NumPy: nothing may touch a JAX device at import,
# before a multi-host run's jax.distributed.initialize)
_SMOOTHING = np.exp(-0.5 * (np.arange(-2.0, 3.0) / 0.8) ** 2)
_SMOOTHING = (_SMOOTHING / _SMOOTHING.sum()).astype(np.float32)


def _smooth(values: jax.Array) -> jax.Array:
    """A separable 5-tap Gaussian (sigma 0.8), the borders mirrored."""
    padded = jnp.pad(values, 2, mode="symmetric")
    rows = sum(_SMOOTHING[k] * padded[:, k: k + values.shape[1]] for k in range(5))
    return sum(_SMOOTHING[k] * rows[k: k + values.shape[0]] for k in range(5))


@jax.jit
def reliability(flow_ab: jax.Array, flow_ba: jax.Array) -> jax.Array:
    """Ruder's weights c [H, W] in [0, 1] for frame a, from the flows a->b and b->a (see the
    module docstring), as the reference's ``consistencyChecker`` makes them: 0 out of frame and on
    motion boundaries, -1 on disocclusions (so that the smoothing widens them), 1 elsewhere, then
    a 5-tap Gaussian (sigma 0.8) and a clip to [0, 1]: soft at the edges of what is excluded. (Unlike
    the reference, a pixel the check excludes stays 0: the smoothing does not spread weight into
    it, where the warped value is wrong.)"""
    flow_ab = flow_ab.astype(jnp.float32)
    back = warp(flow_ba.astype(jnp.float32), flow_ab)  # w_tilde(p) = f_ba(p + f_ab(p))
    round_trip = jnp.sum((back + flow_ab) ** 2, -1)
    size = jnp.sum(back * back, -1) + jnp.sum(flow_ab * flow_ab, -1)
    disoccluded = round_trip >= DISOCCLUSION_RELATIVE * size + DISOCCLUSION_ABSOLUTE
    boundary = _gradient_magnitude(flow_ab) > (MOTION_BOUNDARY_RELATIVE * jnp.sum(flow_ab * flow_ab, -1)
                                              + MOTION_BOUNDARY_ABSOLUTE)
    inside = in_frame(flow_ab)
    raw = jnp.where(~inside, 0.0, jnp.where(disoccluded, -1.0, jnp.where(boundary, 0.0, 1.0)))
    return jnp.clip(_smooth(raw), 0.0, 1.0) * (raw > 0)  # smoothing widens what is excluded, never fills it


def long_term_weights(masks: jax.Array) -> jax.Array:
    """Closest-first weights [J, H, W] from the masks [J, H, W] of frames i - j, j in J ascending:
    ``max(c_j - sum_{k < j} c_k, 0)`` (Ruder et al., eq. 8): each pixel counts once, towards the
    closest earlier frame in which it is reliable."""
    before = jnp.cumsum(masks, axis=0) - masks
    return jnp.maximum(masks - before, 0.0)


def temporal_loss(image: jax.Array, warped: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_j (1/D) sum c_j (image - warped_j)^2``: image [H, W, 3], warped [J, H, W, 3] (earlier
    outputs warped onto this frame), weights [J, H, W] (zero where a frame does not count)."""
    diff = image[None].astype(jnp.float32) - warped.astype(jnp.float32)
    return jnp.sum(weights[..., None] * diff * diff) / image.size


def warped_start(content: jax.Array, warped: jax.Array, mask: jax.Array) -> jax.Array:
    """A later frame's start: the previous output warped onto it where reliable, the frame's
    content where not (disocclusions, borders): ``c warped + (1 - c) content``."""
    return mask[..., None] * warped + (1.0 - mask[..., None]) * content


def pass_start(current: jax.Array, warped: jax.Array, mask: jax.Array, blend: float | jax.Array) -> jax.Array:
    """Ruder's multi-pass start of a frame: ``delta c warp(neighbour) + (1 - delta c) current``,
    with ``current`` the frame's result of the previous pass (``blend`` is delta)."""
    weight = blend * mask[..., None]
    return weight * warped + (1.0 - weight) * current


@jax.jit
def warping_error(later: jax.Array, earlier: jax.Array, flow: jax.Array, mask: jax.Array) -> jax.Array:
    """The warping error of Lai et al. (ECCV 2018) between two frames: ``sum M |O_a -
    warp(O_b, f_ab)|^2 / sum M`` with a the ``earlier`` frame, b the ``later``, ``flow`` f_ab and
    ``mask`` M the non-occlusion mask of frame a (both from the input frames); 0 when M is empty."""
    diff = earlier.astype(jnp.float32) - warp(later.astype(jnp.float32), flow)
    total = jnp.sum(mask)
    return jnp.where(total > 0, jnp.sum(mask[..., None] * diff * diff) / jnp.maximum(total, 1.0), 0.0)
