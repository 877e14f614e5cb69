"""What a video file or frame folder holds: :class:`VideoHeader` from :func:`probe_header` (the
container and the first frame: cheap, for the checks that come first), :class:`VideoInfo` from
:func:`probe` (every frame walked, or those of a range)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from fractions import Fraction
from pathlib import Path

from jaxstyle.io.video import timing
from jaxstyle.io.video.container import local_path, open_input, require_video, video_stream
from jaxstyle.io.video.decode import FrameWalk, display_of
from jaxstyle.io.video.folders import check_same_size, frame_files, pil_mode

REORDER_FRAMES = 16  # frames a decoder may hold back (H.264/HEVC: 16): a range's walk goes this far beyond it


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoHeader:
    """What :func:`probe_header` finds from the container and the first frame, nothing decoded beyond it.

    fps: frames per second, exact: the stream's nominal rate, or its average where that is not just the
    nominal one rounded (None for a frame folder, or a video that states none). width, height: as
    displayed (after rotation). rotation: degrees counter-clockwise the stored picture is turned for
    display, 0/90/180/270 (a phone held upright usually records 270, i.e. 90 clockwise); mirrored: the
    display matrix also flips it. pix_fmt: FFmpeg's pixel format of the decoded frames (``yuv420p``,
    ``yuv420p10le``, ``yuva420p``...) or, for a folder, the Pillow mode of the first image (``RGB``,
    ``RGBA``...)."""

    fps: Fraction | None
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False
    has_audio: bool = False
    pix_fmt: str = "rgb24"
    has_alpha: bool = False
    is_folder: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoInfo(VideoHeader):
    """What :func:`probe` finds: the :class:`VideoHeader` and the frames walked.

    frames: the number of frames :func:`~jaxstyle.io.video.read_frames` yields (``complete``), or, after
    ``probe(until=n)`` stopped short of the end (``complete`` False), ``n``: the first ``n`` frames, the
    file holds more.

    timestamps: when each frame shows, in seconds from the first (``timestamps[0] == 0.0``), one per
    frame in the order read, from the frames' presentation times (sorted where a container keeps them
    in decode order; ``k / fps`` for a stream whose frames carry none; None if it states no rate
    either); None for a frame folder. end_s: when the last frame stops showing, on the same clock: the
    end the header states (MP4's track duration, MKV's DURATION tag...) where that is after the last
    frame starts, else the last timestamp plus its duration (its packet's), the median gap or 1 / fps;
    not ``complete``: when the next frame shows. A frame range ``[a, b)`` shows from ``timestamps[a]``
    until ``timestamps[b]`` (``end_s`` when ``b == frames``).
    """

    frames: int
    timestamps: tuple[float, ...] | None = dataclasses.field(default=None, repr=False)
    end_s: float | None = None
    complete: bool = True

    @property
    def duration_s(self) -> float | None:
        """Seconds the frames show: ``end_s``, else frames / fps; None for a frame folder."""
        if self.end_s is not None:
            return self.end_s
        return None if self.fps is None else float(self.frames / self.fps)

    @property
    def variable_rate(self) -> bool:
        """True when the gaps between frames vary (phones, screen recorders, dropped frames): writing
        the frames at ``fps`` would retime them; pass ``timestamps`` to keep them."""
        return timing.is_variable(self.timestamps)


def probe_header(path: str | os.PathLike) -> VideoHeader:
    """What a video file or frame folder is, from its container and its first frame (a folder: its
    first image), without walking the rest: what :func:`probe` gives beside the frames' count and times.

    ValueError (one line naming the file): no such file or folder, not a video, no video stream, a
    first frame that does not decode, a folder with no images; missing PyAV for a video file."""
    path = local_path(path)
    if path.is_dir():
        files = frame_files(path)
        height, width = check_same_size(files[:1])
        mode, alpha = pil_mode(files[0])
        return VideoHeader(fps=None, width=width, height=height, pix_fmt=mode, has_alpha=alpha, is_folder=True)
    require_video()
    with open_input(path) as container:
        walk = FrameWalk(container, video_stream(container, path), path)
        with contextlib.closing(iter(walk)) as frames:  # the decoder let go of before the file closes
            first = next(frames, None)
        return _header(container, walk, first)


def probe(path: str | os.PathLike, *, until: int | None = None) -> VideoInfo:
    """What a video file or a frame folder holds (see :class:`VideoInfo`). A video's frames are all
    (``until``: a range's) decoded, not converted to RGB, and counted as
    :func:`~jaxstyle.io.video.read_frames` yields them, which holds for every container and codec (a
    variable rate, dropped frames, field-coded H.264); a folder's images are all checked to have one size.

    until: only the frames of a range ``[a, until)`` are wanted (``until`` >= 1): the walk stops once
    frame ``until`` (whose time is the range's end) and ``REORDER_FRAMES`` more (which a decoder can
    hold back: AVI's B-frames) have decoded, and the result holds the first ``until`` frames, ``end_s``
    the time of frame ``until``, ``complete`` False. A file cut after them is then not noticed (only
    a failure to decode what was walked); one that ends sooner was walked whole, as with None. A folder
    is always counted whole (its files are listed, not decoded).

    ValueError (one line naming the file): no such file or folder, not a video, no video stream (an
    audio-only file), no frame that decodes, a truncated or corrupt file (decoding fails, fewer
    packets than an MP4/MOV header lists, frames that end before the header says), a folder with no
    images or images of different sizes; missing PyAV for a video file."""
    if until is not None and (isinstance(until, bool) or not isinstance(until, int) or until < 1):
        raise ValueError(f"expected until >= 1 (the end of a frame range) or None, got {until!r}")
    path = local_path(path)
    if path.is_dir():
        return _probe_folder(path)
    return _probe_video(path, until)


def _probe_folder(folder: Path) -> VideoInfo:
    files = frame_files(folder)
    height, width = check_same_size(files)
    mode, alpha = pil_mode(files[0])
    return VideoInfo(frames=len(files), fps=None, width=width, height=height, pix_fmt=mode, has_alpha=alpha,
                     is_folder=True)


def _header(container, walk: FrameWalk, first) -> VideoHeader:
    """The header of a video whose first frame (None: none decoded) ``walk`` gave."""
    if first is None:
        walk.check_failure()
        raise ValueError(f"{walk.path}: the video stream has no frames that decode")
    display = display_of(first)
    height, width = first.height, first.width
    if display.transpose:
        height, width = width, height
    return VideoHeader(fps=walk.fps, width=width, height=height, rotation=display.rotation,
                       mirrored=display.mirrored, has_audio=bool(container.streams.audio),
                       pix_fmt=first.format.name, has_alpha=any(c.is_alpha for c in first.format.components))


def _probe_video(path: Path, until: int | None) -> VideoInfo:
    require_video()
    with open_input(path) as container:
        walk = FrameWalk(container, video_stream(container, path), path)
        first, enough = None, None if until is None else until + 1 + REORDER_FRAMES
        with contextlib.closing(iter(walk)) as frames:
            for frame in frames:
                if first is None:
                    first = frame
                if enough is not None and walk.frames >= enough:
                    break
        found = _header(container, walk, first)
        header = {field.name: getattr(found, field.name) for field in dataclasses.fields(VideoHeader)}
        stamps = walk.timestamps()
        if enough is None or walk.frames < enough:  # walked to the end
            walk.check_complete()
            return VideoInfo(**header, frames=walk.frames, timestamps=stamps, end_s=walk.end_s())
        walk.check_failure()
        return VideoInfo(**header, frames=until, timestamps=None if stamps is None else stamps[:until],
                         end_s=None if stamps is None else stamps[until], complete=False)
