"""The temporal terms of Ruder et al.: warping, reliability masks, the loss and its gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import ndimage

from jaxstyle.objective.temporal import (
    long_term_weights,
    pass_start,
    reliability,
    temporal_loss,
    warp,
    warped_start,
    warping_error,
)
from tests.helpers import smooth_image


def constant_flow(h, w, dx, dy):
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_warp_by_whole_pixels_is_a_shift():
    image = smooth_image(20, 30, 0)
    out = np.asarray(warp(jnp.asarray(image), jnp.asarray(constant_flow(20, 30, 3, -2))))
    # out(y, x) = image(y - 2, x + 3) wherever that is inside
    np.testing.assert_allclose(out[2:, :-3], image[:-2, 3:], atol=1e-6)


def test_warp_matches_a_float64_bilinear_reference():
    rng = np.random.default_rng(0)
    image = smooth_image(24, 32, 1)
    flow = rng.uniform(-5, 5, (24, 32, 2)).astype(np.float32)
    out = np.asarray(warp(jnp.asarray(image), jnp.asarray(flow)))
    ys, xs = np.mgrid[0:24, 0:32].astype(np.float64)
    coords = [np.clip(ys + flow[..., 1], 0, 23), np.clip(xs + flow[..., 0], 0, 31)]
    ref = np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), coords, order=1) for c in range(3)], -1)
    np.testing.assert_allclose(out, ref, atol=2e-6)


def test_warp_reproduces_a_linear_ramp_at_subpixel_flow():
    ys, xs = np.mgrid[0:16, 0:16].astype(np.float32)
    ramp = np.stack([0.01 * xs + 0.02 * ys] * 3, -1)
    out = np.asarray(warp(jnp.asarray(ramp), jnp.asarray(constant_flow(16, 16, 0.3, 0.7))))
    expected = 0.01 * (xs + 0.3) + 0.02 * (ys + 0.7)
    np.testing.assert_allclose(out[:-1, :-1, 0], expected[:-1, :-1], atol=1e-6)


def test_reliability_of_a_translation_is_one_inside_and_zero_where_it_leaves_the_frame():
    h, w = 24, 32
    c = np.asarray(reliability(jnp.asarray(constant_flow(h, w, 4, 0)), jnp.asarray(constant_flow(h, w, -4, 0))))
    assert np.all(c[:, :w - 6] == 1.0)
    assert np.all(c[:, w - 2:] == 0.0)  # p + 4 is outside (columns 28 on; the smoothing reaches 2 px in)
    assert np.all(c[:, w - 4:] < 0.5)


def moving_square_flows(h=32, w=48, x0=10, size=10, step=4):
    """Frame 0: a square at columns x0..x0+size; frame 1: moved ``step`` right. Returns the
    flows 1 -> 0 (backward) and 0 -> 1 (forward) a perfect flow method gives."""
    backward = np.zeros((h, w, 2), np.float32)
    forward = np.zeros((h, w, 2), np.float32)
    rows = slice(8, 8 + size)
    backward[rows, x0 + step: x0 + step + size, 0] = -step
    forward[rows, x0: x0 + size, 0] = step
    return backward, forward


def test_reliability_marks_the_disoccluded_strip_and_the_motion_boundaries():
    backward, forward = moving_square_flows()
    c = np.asarray(reliability(jnp.asarray(backward), jnp.asarray(forward)))
    # frame 1's pixels at columns 10..13 were behind the square in frame 0: disoccluded
    assert c[10:16, 10:14].max() == 0.0
    assert np.all(c[11:15, 17:21] == 1.0)  # inside the square, 3 px from its edges: matched
    assert np.all(c[:, 30:] == 1.0) and np.all(c[22:, :] == 1.0)  # static background far from it
    assert c[12, 24] < 1.0 and c[12, 9] < 1.0  # the square's moving edges: motion boundaries (smoothed)


def test_long_term_weights_count_each_pixel_towards_the_closest_reliable_frame():
    masks = jnp.asarray(np.array([[[1, 0, 0, 1]], [[1, 1, 0, 0]], [[1, 1, 1, 0]]], np.float32))
    out = np.asarray(long_term_weights(masks))
    np.testing.assert_array_equal(out, [[[1, 0, 0, 1]], [[0, 1, 0, 0]], [[0, 0, 1, 0]]])


def test_temporal_loss_value_and_gradient():
    rng = np.random.default_rng(1)
    image = jnp.asarray(rng.uniform(0, 1, (8, 10, 3)), jnp.float32)
    warped = jnp.asarray(rng.uniform(0, 1, (2, 8, 10, 3)), jnp.float32)
    weights = jnp.asarray(rng.uniform(0, 1, (2, 8, 10)), jnp.float32)
    expected = np.sum(np.asarray(weights)[..., None] * (np.asarray(image)[None] - np.asarray(warped)) ** 2) / image.size
    np.testing.assert_allclose(float(temporal_loss(image, warped, weights)), expected, rtol=1e-5)
    check_grads(lambda x: temporal_loss(x, warped, weights), (image,), order=2, modes=["rev", "fwd"], eps=1e-2,
                atol=1e-3, rtol=1e-3)
    # and through the warp: the gradient with respect to the earlier output, by finite differences
    flow = jnp.asarray(rng.uniform(-2, 2, (8, 10, 2)), jnp.float32)
    previous = jnp.asarray(rng.uniform(0, 1, (8, 10, 3)), jnp.float32)
    check_grads(lambda p: temporal_loss(image, warp(p, flow)[None], weights[:1]), (previous,), order=1,
                modes=["rev"], eps=1e-2, atol=1e-3, rtol=1e-3)


def test_starts_take_the_warped_output_where_reliable():
    content, warped = jnp.zeros((4, 4, 3)), jnp.ones((4, 4, 3))
    mask = jnp.asarray(np.array([[1, 0, 0.5, 1]] * 4, np.float32))
    np.testing.assert_allclose(np.asarray(warped_start(content, warped, mask))[0, :, 0], [1, 0, 0.5, 1])
    np.testing.assert_allclose(np.asarray(pass_start(content, warped, mask, 0.5))[0, :, 0], [0.5, 0, 0.25, 0.5])


def test_warping_error_is_zero_for_a_sequence_that_follows_the_flow():
    h, w = 24, 32
    a = smooth_image(h, w, 2)
    b = np.zeros_like(a)
    b[:, 2:] = a[:, :-2]  # b is a moved 2 px right: b(x) = a(x - 2), so a(p) = b(p + 2)
    forward = jnp.asarray(constant_flow(h, w, 2, 0))  # a -> b
    mask = reliability(forward, jnp.asarray(constant_flow(h, w, -2, 0)))
    assert float(warping_error(jnp.asarray(b), jnp.asarray(a), forward, mask)) < 1e-10
    noisy = b + np.random.default_rng(0).normal(0, 0.05, b.shape).astype(np.float32)
    assert float(warping_error(jnp.asarray(noisy), jnp.asarray(a), forward, mask)) > 1e-3


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1)])
def test_warp_and_masks_on_degenerate_frames(shape):
    image = jnp.ones(shape + (3,))
    flow = jnp.zeros(shape + (2,))
    np.testing.assert_allclose(np.asarray(warp(image, flow)), 1.0)
    assert jnp.all(jnp.isfinite(reliability(flow, flow)))


def test_warp_is_jittable_under_vmap():
    images = jnp.stack([jnp.asarray(smooth_image(8, 8, s)) for s in range(3)])
    flows = jnp.zeros((3, 8, 8, 2))
    np.testing.assert_allclose(np.asarray(jax.vmap(warp)(images, flows)), np.asarray(images), atol=1e-6)
