"""Optical flow between video frames, in-process: OpenCV's DIS (Kroeger et al., "Fast Optical Flow
using Dense Inverse Search", ECCV 2016), no external binaries.

A flow function takes two frames (uint8 [H, W, 3] RGB) a and b and returns the flow f_ab float32
[H, W, 2] that maps each pixel p of a to p + f_ab(p) in b (x displacement first), the convention
of :mod:`jaxstyle.objective.temporal`. Any function with that signature plugs in (a learned
model, another library); :func:`resize_flow` adapts a flow computed at another size (e.g. read
from a Middlebury ``.flo`` file made by another tool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

FlowFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
PRESETS = ("ultrafast", "fast", "medium")


def require_opencv():
    """The ``cv2`` module, or a one-line hint to install the video extra."""
    try:
        import cv2
    except ImportError:
        raise ValueError("video needs PyAV and OpenCV: pip install 'jaxstyle[video]'") from None
    return cv2


class DISFlow:
    """OpenCV's DIS optical flow with one of its presets (``medium`` by default: variational
    refinement on, the most accurate of the three). Callable as a :data:`FlowFunction`; safe to
    call from several threads (each thread gets its own OpenCV object)."""

    def __init__(self, preset: str = "medium"):
        if preset not in PRESETS:
            raise ValueError(f"expected a DIS preset in {', '.join(PRESETS)}, got {preset!r}")
        self.preset = preset
        self._local = threading.local()

    def _dis(self):
        dis = getattr(self._local, "dis", None)
        if dis is None:
            cv2 = require_opencv()
            dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{self.preset.upper()}"))
            self._local.dis = dis
        return dis

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cv2 = require_opencv()
        grey_a = cv2.cvtColor(to_uint8(a), cv2.COLOR_RGB2GRAY)
        grey_b = cv2.cvtColor(to_uint8(b), cv2.COLOR_RGB2GRAY)
        return np.asarray(self._dis().calc(grey_a, grey_b, None), np.float32)

    def __repr__(self) -> str:
        return f"DISFlow({self.preset!r})"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An RGB frame as uint8 (float images are taken in [0, 1])."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8))


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """A flow [h, w, 2] at another frame size: resampled (bilinear) and its vectors scaled by the
    size ratio of each axis."""
    flow = np.asarray(flow, np.float32)
    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow
    cv2 = require_opencv()
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    return out.astype(np.float32)
