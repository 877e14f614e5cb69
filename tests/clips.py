"""Tiny clips made with PyAV for the tests: a moving square over grey quadrants, a sine tone."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

av = __import__("pytest").importorskip("av")

FPS = Fraction(24)
RATE = 48000


def pattern(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """uint8 [h, w, 3]: four grey quadrants (asymmetric under every rotation and flip) and a white
    square moving right by 3 px a frame."""
    image = np.empty((h, w, 3), np.uint8)
    image[: h // 2, : w // 2], image[: h // 2, w // 2:] = 40, 100
    image[h // 2:, : w // 2], image[h // 2:, w // 2:] = 160, 220
    image[4:12, 2 + 3 * i: 10 + 3 * i] = 255
    return image


def tone(t: np.ndarray) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def make_clip(path, n=12, h=48, w=64, *, codec="libx264", pix_fmt="yuv420p", fps=FPS, audio=tone, rotation=None,
              hflip=False, frame=None, container_options=None):
    """Write a clip of ``n`` frames of ``frame(i)`` (default :func:`pattern`, rgb24) and, if ``audio``, an
    AAC track of ``audio(t)`` as long as the video."""
    frame = frame or (lambda i: av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24"))
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps, options={"crf": "1"} if codec == "libx264" else {})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation, hflip=hflip)
        a = c.add_stream("aac", rate=RATE, layout="mono") if audio else None
        for i in range(n):
            f = frame(i)
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        if a is not None:
            x = audio(np.arange(round(n / fps * RATE)) / RATE)
            for k in range(0, len(x), 1024):
                af = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = RATE, k
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def decoded_audio(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
