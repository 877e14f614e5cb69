"""Scene cuts: exposure changes (a brightness step, auto-exposure, a flash, fades down to black) stay
one shot; a cut to another picture still cuts. Photo-like 8-bit frames panned 2 px a frame, with the
exact flow of the pan and with DIS's."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.config import VideoConfig
from jaxstyle.engine import scenes
from jaxstyle.flow import to_uint8
from tests.helpers import smooth_image

H, W, STEP = 72, 96, 2
THRESHOLD = VideoConfig().cut_threshold


def pan(seed: int, frames: int = 10) -> list[np.ndarray]:
    """A mid-tone scene (0.15 .. 0.9) panned ``STEP`` px a frame."""
    big = 0.15 + 0.75 * smooth_image(H, W + STEP * frames, seed)
    return [big[:, STEP * i: STEP * i + W] for i in range(frames)]


def eight_bit(frames) -> list[np.ndarray]:
    """Frames as a decoder gives them: clipped to [0, 1], 8 bits a channel."""
    return [to_uint8(np.clip(f, 0.0, 1.0)).astype(np.float32) / 255 for f in frames]


def exact_flow(a: int, b: int) -> np.ndarray:
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = STEP * (a - b)
    return flow


def shares(frames, method: str) -> list[float]:
    """The matched share of each frame but the first in the one before it."""
    frames = eight_bit(frames)
    if method == "dis":
        pytest.importorskip("cv2")
        from jaxstyle.flow import DISFlow

        dis = DISFlow()
        flow = lambda a, b: dis(frames[a], frames[b])  # noqa: E731
    else:
        flow = exact_flow
    return [float(scenes.matched_share(jnp.asarray(frames[i]), jnp.asarray(frames[i - 1]),
                                       jnp.asarray(flow(i, i - 1)), jnp.asarray(flow(i - 1, i))))
            for i in range(1, len(frames))]


ONE_SHOT = {
    "brightness step +0.12": lambda f: [f[0], f[1], f[2] + 0.12, f[3] + 0.12],
    "fade x0.75 a frame": lambda f: [f[i] * 0.75 ** i for i in range(7)],
    "flash x1.6 + 0.15 (a third clipped)": lambda f: [f[0], f[1], f[2] * 1.6 + 0.15, f[3], f[4]],
    "auto-exposure x1.35": lambda f: [f[0], f[1], f[2] * 1.35, f[3] * 1.35],
    "auto-exposure x0.6": lambda f: [f[0], f[1], f[2] * 0.6, f[3] * 0.6],
    "fade x0.5 a frame to black": lambda f: [f[i] * 0.5 ** i for i in range(9)] + [f[9] * 0],
}


@pytest.mark.parametrize("method", ["exact", "dis"])
@pytest.mark.parametrize("case", ONE_SHOT)
def test_exposure_changes_are_not_cuts(case, method):
    got = shares(ONE_SHOT[case](pan(3)), method)
    assert min(got) >= THRESHOLD, got


@pytest.mark.parametrize("method", ["exact", "dis"])
def test_a_cut_to_another_picture_is_a_cut(method):
    f, g = pan(3), pan(5)
    got = shares([f[0], f[1], g[2], g[3]], method)
    assert got[1] < THRESHOLD and min(got[0], got[2]) > 0.9, got
    black = [f[0] * 0, f[1] * 0]
    still, to_picture = shares([*black, f[2]], method)
    assert still >= THRESHOLD and to_picture < 0.05  # from black to a picture
    assert shares([f[0], f[1] * 0], method)[0] < THRESHOLD  # from a picture to black at once
    zero = np.zeros((H, W, 2), np.float32)  # a flow method that finds no motion, consistently, across the cut
    a, b = (jnp.asarray(x) for x in eight_bit([g[2], f[1]]))
    assert float(scenes.matched_share(a, b, jnp.asarray(zero), jnp.asarray(zero))) < THRESHOLD


def test_matching_is_invariant_to_a_gain_and_an_offset_and_bounded_by_clipping():
    a = jnp.asarray(pan(3)[0])
    ones = jnp.ones((H, W))
    for gain, offset in [(1.0, 0.0), (0.3, 0.0), (1.0, 0.1), (0.8, 0.15), (1.05, -0.1)]:
        assert bool(jnp.all(scenes.matched(a, gain * a + offset, ones))), (gain, offset)
    assert float(jnp.mean(scenes.matched(a, 1.0 - a, ones))) < THRESHOLD  # a negative: the structure differs
    bright = jnp.clip(1.6 * a + 0.15, 0.0, 1.0)
    assert 0.2 < float(jnp.mean(bright >= 1.0)) < 0.6
    assert bool(jnp.all(scenes.matched(bright, a, ones))) and bool(jnp.all(scenes.matched(a, bright, ones)))
    # a highlight clipped at 1 bounds the other frame from below: where that frame is darker, no match
    wrong = jnp.where(bright >= 1.0, 0.2, bright)
    assert not bool(jnp.any(scenes.matched(jnp.where(bright >= 1.0, 1.0, a), wrong, ones)[bright[..., 0] >= 1.0]))
    normalised = scenes.normalised(a, jnp.ones((H, W, 3)))
    np.testing.assert_allclose(jnp.mean(normalised, (0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(normalised ** 2)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(scenes.normalised(jnp.full((4, 4, 3), 0.3), jnp.ones((4, 4, 3))), 0.0, atol=1e-6)
