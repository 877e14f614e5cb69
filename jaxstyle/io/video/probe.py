"""What a video file or frame folder holds: :class:`VideoInfo` from :func:`probe`."""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

from jaxstyle.io.video import timing
from jaxstyle.io.video.container import local_path, open_input, require_video, video_stream
from jaxstyle.io.video.decode import FrameWalk, display_of
from jaxstyle.io.video.folders import check_same_size, frame_files, pil_mode


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds.

    frames: the number of frames :func:`~jaxstyle.io.video.read_frames` yields. fps: frames per
    second, exact: the stream's nominal rate, or its average where that is not just the nominal one
    rounded (None for a frame folder, or a video that states none). width, height: as displayed
    (after rotation). rotation: degrees counter-clockwise the stored picture is turned for display,
    0/90/180/270 (a phone held upright usually records 270, i.e. 90 clockwise); mirrored: the display
    matrix also flips it. pix_fmt: FFmpeg's pixel format of the decoded frames (``yuv420p``,
    ``yuv420p10le``, ``yuva420p``...) or, for a folder, the Pillow mode of the first image (``RGB``,
    ``RGBA``...).

    timestamps: when each frame shows, in seconds from the first (``timestamps[0] == 0.0``), one per
    frame in the order read, from the frames' presentation times (``k / fps`` for a stream whose frames
    carry none or carry times that do not increase; None if it states no rate either); None for a
    frame folder. end_s: when the last frame stops showing, on the same clock: the end the header
    states (MP4's track duration, MKV's DURATION tag...) where that is after the last frame starts,
    else the last timestamp plus its duration (its packet's), the median gap or 1 / fps. A frame
    range ``[a, b)`` shows from ``timestamps[a]`` until ``timestamps[b]`` (``end_s`` when ``b == frames``).
    """

    frames: int
    fps: Fraction | None
    width: int
    height: int
    rotation: int = 0
    mirrored: bool = False
    has_audio: bool = False
    pix_fmt: str = "rgb24"
    has_alpha: bool = False
    is_folder: bool = False
    timestamps: tuple[float, ...] | None = dataclasses.field(default=None, repr=False)
    end_s: float | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds the video shows: ``end_s``, else frames / fps; None for a frame folder."""
        if self.end_s is not None:
            return self.end_s
        return None if self.fps is None else float(self.frames / self.fps)

    @property
    def variable_rate(self) -> bool:
        """True when the gaps between frames vary (phones, screen recorders, dropped frames): writing
        the frames at ``fps`` would retime them; pass ``timestamps`` to keep them."""
        return timing.is_variable(self.timestamps)


def probe(path: str | os.PathLike) -> VideoInfo:
    """What a video file or a frame folder holds (see :class:`VideoInfo`). A video's frames are all
    decoded (not converted to RGB) and counted as :func:`~jaxstyle.io.video.read_frames` yields them,
    which holds for every container and codec (a variable rate, dropped frames, field-coded H.264);
    a folder's images are all checked to have one size.

    ValueError (one line naming the file): no such file or folder, not a video, no video stream (an
    audio-only file), no frame that decodes, a truncated or corrupt file (decoding fails, fewer
    packets than an MP4/MOV header lists, frames that end before the header says), a folder with no
    images or images of different sizes; missing PyAV for a video file."""
    path = local_path(path)
    if path.is_dir():
        return _probe_folder(path)
    return _probe_video(path)


def _probe_folder(folder: Path) -> VideoInfo:
    files = frame_files(folder)
    height, width = check_same_size(files)
    mode, alpha = pil_mode(files[0])
    return VideoInfo(frames=len(files), fps=None, width=width, height=height, pix_fmt=mode, has_alpha=alpha,
                     is_folder=True)


def _probe_video(path: Path) -> VideoInfo:
    require_video()
    with open_input(path) as container:
        walk = FrameWalk(container, video_stream(container, path), path)
        first = None
        for frame in walk:
            if first is None:
                first = frame
        if walk.failure is None and first is None:
            raise ValueError(f"{path}: the video stream has no frames that decode")
        walk.check_complete()
        display = display_of(first)
        height, width = first.height, first.width
        if display.transpose:
            height, width = width, height
        return VideoInfo(frames=walk.frames, fps=walk.fps, width=width, height=height, rotation=display.rotation,
                         mirrored=display.mirrored, has_audio=bool(container.streams.audio),
                         pix_fmt=first.format.name, has_alpha=any(c.is_alpha for c in first.format.components),
                         timestamps=walk.timestamps(), end_s=walk.end_s())
