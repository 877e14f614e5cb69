"""Opening a video file with PyAV: its video stream, its rate and what its header states about its
length; one-line ValueErrors naming the file for anything that is not a readable video."""

from __future__ import annotations

import contextlib
import os
import re
from fractions import Fraction
from pathlib import Path

from jaxstyle.io import storage

VIDEO_EXTRA = "pip install 'jaxstyle[video]'"
NOT_VIDEO = frozenset({"tty"})  # FFmpeg renders any text file as an "ansi" video
_FRAME_LISTS = "mov"  # FFmpeg's MP4/MOV/3GP demuxer: its sample tables list every frame


def require_video():
    """The ``av`` module (PyAV); ValueError naming the extra to install when it is missing."""
    try:
        import av
    except ImportError:
        raise ValueError(f"video needs PyAV and OpenCV: {VIDEO_EXTRA}") from None
    return av


def local_path(path: str | os.PathLike, what: str = "video") -> Path:
    """``path`` as a local :class:`~pathlib.Path`; ValueError for a URL."""
    where = storage.location(path)
    if not isinstance(where, Path):
        raise ValueError(f"{where}: a {what} must be a local path (copy it from the bucket first)")
    return where


def error_detail(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters."""
    text = getattr(exc, "strerror", None) or str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:200]


@contextlib.contextmanager
def open_input(path: Path):
    """The PyAV input container of a video file; one-line ValueErrors for what cannot be one."""
    av = require_video()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a video file")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: not a video FFmpeg can read ({error_detail(exc)})") from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied") from None
    try:
        if container.format.name in NOT_VIDEO:
            raise ValueError(f"{path}: not a video file")
        yield container
    finally:
        container.close()


def video_stream(container, path: Path):
    """The first video stream that is not cover art (an audio file's attached picture)."""
    from av.stream import Disposition

    streams = [s for s in container.streams.video
               if s.codec_context is not None and not s.disposition & Disposition.attached_pic]
    if not streams:
        kinds = sorted({"cover art" if s.disposition & Disposition.attached_pic else s.type
                        for s in container.streams})
        held = f" (it holds {', '.join(kinds)} only)" if kinds else ""
        raise ValueError(f"{path}: no video stream{held}")
    stream = streams[0]
    stream.thread_type = "AUTO"
    return stream


def video_origin(container) -> float:
    """The time (s, on the container's clock) of the video stream's first frame, from which times in
    seconds "from the first video frame" count; 0 for a file without video."""
    try:
        stream = video_stream(container, Path(container.name))
    except ValueError:
        return 0.0
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def frame_rate(stream) -> Fraction | None:
    """The stream's rate: the average, unless it only rounds the nominal (guessed) one."""
    average, guessed = stream.average_rate, stream.guessed_rate
    if guessed and (not average or abs(average - guessed) <= guessed / 1000):
        return Fraction(guessed)
    return Fraction(average) if average else None


def listed_frames(container, stream) -> int | None:
    """The number of frames (samples, packets) an MP4/MOV header lists for the stream: exact, where
    other containers list none or only estimate it; None elsewhere."""
    if _FRAME_LISTS in container.format.name.split(",") and stream.frames:
        return stream.frames
    return None


def stated_end(container, stream) -> float | None:
    """When the stream's last frame stops showing, as its header states it: seconds on the stream's
    clock (the time its frames' timestamps count in). MKV/WebM: the track's DURATION tag that FFmpeg
    and most muxers write (its end, from time 0); AVI: its start plus the frames its header counts
    (dropped frames included: each a tick of its time base); elsewhere its start plus its duration;
    None where it states none of these."""
    tag = {k.upper(): v for k, v in stream.metadata.items()}.get("DURATION", "")
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", tag.strip())
    if match:
        return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    if not stream.time_base:
        return None
    start = stream.start_time if stream.start_time is not None else 0
    if "avi" in container.format.name.split(",") and stream.frames:
        return float((start + stream.frames) * stream.time_base)
    return float((start + stream.duration) * stream.time_base) if stream.duration else None
