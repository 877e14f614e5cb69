"""Decoding a video stream: every frame in presentation order with its time, the display matrix
(rotation, mirroring) and any pixel format to RGB; :func:`read_frames` for videos and frame folders.

Frames are counted as they decode, never from packets (a field-coded H.264 frame is two) or from a
duration times a rate (a variable rate, frames a muxer dropped): :func:`jaxstyle.io.video.probe` and
:func:`read_frames` walk a stream the same way and so agree on every container. A truncated file is
told by a decoding failure, by fewer packets than an MP4/MOV header lists (an exact list), or by
frames that end well before the end the header states (MKV, WebM, AVI...: a time, not a count)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from jaxstyle.io.video import timing
from jaxstyle.io.video.container import (
    error_detail,
    frame_rate,
    listed_frames,
    local_path,
    open_input,
    require_video,
    stated_end,
    video_stream,
)
from jaxstyle.io.video.folders import check_same_size, frame_files, read_folder
from jaxstyle.io.video.shapes import check_size, fit


@dataclasses.dataclass(frozen=True)
class Display:
    """How a decoded picture becomes the displayed one: transpose, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.transpose:
            image = image.transpose(1, 0, 2)
        if self.flip_rows:
            image = image[::-1]
        if self.flip_cols:
            image = image[:, ::-1]
        return image

    @property
    def rotation(self) -> int:
        """Degrees counter-clockwise (0, 90, 180, 270) of the rotation part."""
        flips = (self.flip_rows, self.flip_cols)
        if self.transpose:  # transpose + flip rows = 90 ccw; + flip cols = 270 ccw; other two: a mirror
            return {(True, False): 90, (False, True): 270, (True, True): 90, (False, False): 270}[flips]
        return {(False, False): 0, (True, True): 180, (True, False): 180, (False, True): 0}[flips]

    @property
    def mirrored(self) -> bool:
        return self.flip_rows == self.flip_cols if self.transpose else self.flip_rows != self.flip_cols


def display_of(frame) -> Display:
    """The display matrix of a decoded frame (FFmpeg copies the container's onto every frame) as a
    transpose and flips: the QuickTime matrix maps a stored pixel (x, y) to (a x + c y, b x + d y),
    with a, b, c, d = m[0], m[1], m[3], m[4]. A rotation that is not a multiple of 90 degrees is
    rounded to the nearest one (the dominant entries decide)."""
    matrix = None
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            matrix = np.frombuffer(bytes(side), "<i4", count=9)
    if matrix is None:
        return Display()
    a, b, c, d = (int(matrix[i]) for i in (0, 1, 3, 4))
    if abs(a) + abs(d) >= abs(b) + abs(c):
        return Display(False, d < 0, a < 0)
    return Display(True, b < 0, c < 0)


def to_rgb(frame) -> np.ndarray:
    """A decoded frame in any pixel format as RGB float32 [h, w, 3] in [0, 1] (alpha over black)."""
    components = frame.format.components
    alpha = any(c.is_alpha for c in components)
    deep = any(c.bits > 8 for c in components)
    target = ("rgba64le" if alpha else "rgb48le") if deep else ("rgba" if alpha else "rgb24")
    array = frame.to_ndarray(format=target).astype(np.float32) / (65535.0 if deep else 255.0)
    return array[..., :3] * array[..., 3:] if alpha else array


class FrameWalk:
    """One pass over the decoded frames of a video stream, in presentation order (iterate it once, as
    far as needed), noting each frame's time. :meth:`timestamps` / :meth:`end_s` give
    :class:`~jaxstyle.io.video.VideoInfo`'s for the frames walked; after a whole pass,
    :meth:`check_complete` tells a truncated file (a pass stopped early: :meth:`check_failure`)."""

    def __init__(self, container, stream, path: Path):
        self.container, self.stream, self.path = container, stream, path
        self.fps: Fraction | None = frame_rate(stream)
        self.frames = 0
        self.packets = 0  # with data, those the container marks to discard included
        self.failure: BaseException | None = None
        self._times: list[float | None] = []
        self._durations: list[float | None] = []

    def __iter__(self) -> Iterator:
        for frame in self._pictures():
            base = frame.time_base
            self._times.append(float(frame.pts * base) if frame.pts is not None and base else None)
            duration = getattr(frame, "duration", None)  # not in every PyAV the extra allows
            self._durations.append(float(duration * base) if duration and base else None)
            self.frames += 1
            yield frame

    def _pictures(self) -> Iterator:
        """The decoded frames; at a demuxing or decoding error, those still in the decoder."""
        av = require_video()
        try:
            for packet in self.container.demux(self.stream):
                self.packets += bool(packet.size)
                yield from self.stream.decode(packet)
        except av.error.FFmpegError as exc:
            self.failure = exc
            with contextlib.suppress(av.error.FFmpegError):
                yield from self.stream.decode(None)

    def timestamps(self) -> tuple[float, ...] | None:
        """Each frame's time relative to the first (:func:`timing.frame_timestamps`)."""
        return timing.frame_timestamps(self._times, self.fps)

    def _stated(self) -> float | None:
        """The header's end of the stream, relative to the first frame (the earliest time)."""
        stated = stated_end(self.container, self.stream)
        if stated is None or not self._times:
            return None
        known = [t for t in self._times if t is not None]
        if known:
            return stated - min(known)
        stream = self.stream
        return stated - (float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0)

    def end_s(self) -> float | None:
        """When the last frame stops showing, relative to the first (:func:`timing.shown_until`)."""
        stamps = self.timestamps()
        return None if stamps is None else timing.shown_until(stamps, self._durations, self.fps, self._stated())

    def check_failure(self) -> None:
        """One-line ValueError for a failure while demuxing or decoding (so far)."""
        if self.failure is not None:
            raise ValueError(f"{self.path}: truncated or corrupt video: decoding failed after {self.frames} frames "
                             f"({error_detail(self.failure)})")

    def check_complete(self) -> None:
        """After a whole pass, one-line ValueError for a failure while decoding, fewer frames than an
        MP4/MOV header lists, or frames that end before the header's end by more than rounding explains
        (other containers; judged only on the frames' own times, never on times made up for them)."""
        self.check_failure()
        path = self.path
        listed = listed_frames(self.container, self.stream)
        if listed is not None:
            if self.packets < listed:
                raise ValueError(f"{path}: truncated or corrupt video: {self.packets} frames, but its header "
                                 f"lists {listed}")
            return
        stamps, stated = timing.measured_timestamps(self._times), self._stated()
        if stamps and timing.missing_time(stamps, self._durations, self.fps, stated) > 0:
            end = timing.frames_end(stamps, self._durations, self.fps)
            raise ValueError(f"{path}: truncated or corrupt video: its {self.frames} frames end at {end:.3f} s, "
                             f"but its header states {stated:.3f} s")


def read_frames(path: str | os.PathLike, size: int | None, *, start: int = 0,
                end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``[start, end)`` of a video file or frame folder as ``(index, RGB float32 [h, w, 3] in
    [0, 1])``, displayed upright (rotation applied), alpha over black, resized to
    :func:`~jaxstyle.io.video.fitted_video_shape` (longer side ``size``, both sides even;
    ``size=None``: the native size, an odd side cropped by one pixel). ``end=None``: to the last frame.
    Frame ``index`` shows at ``VideoInfo.timestamps[index]``.

    A video is decoded from its start (frames before ``start`` are decoded but not converted; exact
    indices, no seeking), and only as far as ``end``. A corrupt or truncated file yields the frames that
    decode and then raises a one-line ValueError naming the file, as does a video with fewer frames than
    ``end`` or, read to its end (``end=None``), one that ends before its header says (:class:`FrameWalk`);
    a file cut after ``end`` is not noticed. The arguments, the file's
    existence and, for a folder, its frames' sizes are checked when this is called; a video's
    contents as it is read."""
    _check_range(start, end)
    if size is not None:
        check_size(size)
    path = local_path(path)
    if path.is_dir():
        files = frame_files(path)
        stop = len(files) if end is None else end
        if stop > len(files):
            raise ValueError(f"{path}: the folder holds {len(files)} frames, fewer than the end {end} asked for")
        check_same_size(files[start:stop] or files[:1])
        return read_folder(files, size, start, stop)
    require_video()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return _read_video(path, size, start, end)


def _check_range(start, end) -> None:
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise ValueError(f"expected a start frame >= 0, got {start!r}")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | np.integer) or end < start):
        raise ValueError(f"expected an end frame >= start ({start}) or None, got {end!r}")


def _read_video(path: Path, size: int | None, start: int, end: int | None) -> Iterator[tuple[int, np.ndarray]]:
    with open_input(path) as container:
        walk = FrameWalk(container, video_stream(container, path), path)
        display = None
        for index, frame in enumerate(walk):
            if display is None:
                display = display_of(frame)
            if index >= start:
                yield index, fit(display.apply(to_rgb(frame)), size)
            if end is not None and index + 1 >= end:
                return
        if walk.failure is not None or end is None:
            walk.check_complete()
        if end is not None and walk.frames < end:
            raise ValueError(f"{path}: the video has {walk.frames} frames, fewer than the end {end} asked for")
