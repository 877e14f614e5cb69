"""A video through a feed-forward model: every frame stylized, in batches, into a new video with
the input's frame times and audio (:mod:`jaxstyle.io.video`).

The frames are decoded at the working size (longer side ``size``, both sides even; ``None``: the
video's own size, an odd side cropped by one pixel), stylized ``batch`` at a time with the next
batch decoded while the device works on one, and encoded (H.264) as they come, each at its input
frame's time (a variable rate stays as it was), with the input's audio (copied when its codec
suits the container, else AAC). The output is written under a temporary name and renamed once
whole: an interrupted or failed video leaves nothing behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import jax
import numpy as np

from jaxstyle.io import video as video_io


def apply_video(source: Path, output: Path, forward: Callable[[np.ndarray], jax.Array], *, size: int | None,
                batch: Callable[[tuple[int, int]], int], crf: int = video_io.DEFAULT_CRF,
                on_total: Callable[[int], None] = lambda frames: None,
                on_frames: Callable[[int], None] = lambda frames: None) -> int:
    """Stylize the video ``source`` into ``output`` (.mp4, .mov or .mkv); returns the frames written.

    forward(frames uint8/float [n, h, w, 3]) -> the stylized frames [n, h, w, 3] in [0, 1] (dispatched,
    not waited for); batch((h, w)): frames per forward at that size. on_total(frames) once the frames
    are counted; on_frames(n) after each batch. One-line ValueErrors name the file (not a video, a
    truncated or corrupt one: nothing is written)."""
    info = video_io.probe(source)
    if info.fps is None:
        raise ValueError(f"{source}: states no frame rate")
    on_total(info.frames)
    frames = (frame for _, frame in video_io.read_frames(source, size))
    return video_io.write_video(output, _stylized(frames, forward, batch, on_frames), info.fps,
                                timestamps=info.timestamps, end_s=info.end_s,
                                audio_from=source if info.has_audio else None, crf=crf)


def _stylized(frames: Iterator[np.ndarray], forward, batch, on_frames) -> Iterator[np.ndarray]:
    """The stylized frames in order; batch k + 1 is decoded and dispatched before batch k is waited for."""
    first = next(frames, None)
    if first is None:
        return
    size = batch(first.shape[:2])
    pending = None
    for chunk in _chunks(itertools.chain([first], frames), size):
        handle = forward(np.stack(chunk))
        if pending is not None:
            yield from _settled(pending, on_frames)
        pending = handle
    yield from _settled(pending, on_frames)


def _settled(handle: jax.Array, on_frames) -> Iterator[np.ndarray]:
    out = np.asarray(handle)
    on_frames(len(out))
    yield from out


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
