"""Writing videos: H.264 (libx264, yuv420p, BT.709 limited range, tagged) in MP4, MOV or MKV by
suffix, at an exact frame rate or at given frame times, optionally with the audio of another file
for a time range; to a temporary file beside the target, renamed over it only once complete."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from jaxstyle.io import files, images, storage
from jaxstyle.io.video import timing
from jaxstyle.io.video.audio import audio_packets, packet_time
from jaxstyle.io.video.container import error_detail, local_path, open_input, require_video
from jaxstyle.io.video.folders import frame_files, load_frame_image

VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}  # output suffix -> FFmpeg muxer
DEFAULT_CRF = 18  # x264's "visually lossless" end of the scale; 23 is its default, 0 lossless
TIME_BASE = Fraction(1, 90000)  # frames at given times: MPEG's clock, a multiple of ms and of 24, 25, 30000/1001 fps
_BT709 = 1  # AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited (16-235)


def is_video_output(path: str | os.PathLike) -> bool:
    """True for an output path with a video suffix (.mp4, .mov, .mkv), False for a frame folder (an
    existing folder, or a name without a suffix); ValueError for any other suffix."""
    where = storage.location(path)
    if isinstance(where, Path) and where.is_dir():
        return False
    suffix = where.suffix.lower()
    if suffix in VIDEO_FORMATS:
        return True
    if not suffix:
        return False
    raise ValueError(f"{where}: unsupported video output extension {suffix!r}, expected one of "
                     f"{', '.join(VIDEO_FORMATS)}, or a folder for PNG frames")


@dataclasses.dataclass(frozen=True)
class _Clock:
    """When the written frames show: frame k at tick ``ticks[k]`` of ``time_base`` (``ticks=None``:
    at tick k, one a frame) until the next frame's tick, the last until ``end``."""

    time_base: Fraction
    ticks: tuple[int, ...] | None = None
    end: int | None = None

    def pts(self, k: int) -> int:
        return k if self.ticks is None else self.ticks[k]

    def seconds(self, k: int) -> float:
        return float(self.pts(k) * self.time_base)

    def durations(self) -> dict[int, int]:
        """Ticks each frame shows, by its pts (none without ``ticks``: the encoder's one a frame)."""
        if self.ticks is None:
            return {}
        return dict(zip(self.ticks, [b - a for a, b in zip(self.ticks, (*self.ticks[1:], self.end))]))


def _check_fps(fps) -> Fraction:
    try:
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1_000_000)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a frame rate > 0 (a Fraction, int or float), got {fps!r}") from None
    if isinstance(fps, bool) or rate <= 0:
        raise ValueError(f"expected a frame rate > 0 (a Fraction, int or float), got {fps!r}")
    return rate


def _clock(timestamps, end_s, rate: Fraction, path: Path) -> _Clock:
    """The clock of :func:`write_video`'s ``timestamps`` and ``end_s``, checked; shifted to start at 0."""
    if timestamps is None:
        if end_s is not None:
            raise ValueError(f"{path}: end_s needs timestamps (without them frame k shows at k / fps)")
        return _Clock(1 / rate)
    try:
        if isinstance(timestamps, str | bytes):
            raise TypeError
        times = [float(t) for t in timestamps]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected timestamps a sequence of times in seconds, got "
                         f"{type(timestamps).__name__}") from None
    if not all(math.isfinite(t) for t in times):
        raise ValueError(f"{path}: expected finite timestamps, got {next(t for t in times if not math.isfinite(t))}")
    for k, (a, b) in enumerate(zip(times, times[1:])):
        if not b > a:
            raise ValueError(f"{path}: expected strictly increasing timestamps, got {a} then {b} (frames {k}, {k + 1})")
    if not times:
        return _Clock(TIME_BASE, (), 0)
    ticks = tuple(round((t - times[0]) / TIME_BASE) for t in times)
    if any(b <= a for a, b in zip(ticks, ticks[1:])):
        raise ValueError(f"{path}: timestamps less than {float(TIME_BASE):.2g} s apart")
    if end_s is None:
        return _Clock(TIME_BASE, ticks, ticks[-1] + max(1, round(timing.typical_gap(times, rate) / TIME_BASE)))
    try:
        last = float(end_s)
    except (TypeError, ValueError):
        last = math.nan
    if isinstance(end_s, bool) or not (math.isfinite(last) and last > times[-1]):
        raise ValueError(f"{path}: expected end_s after the last timestamp ({times[-1]}), got {end_s!r}")
    return _Clock(TIME_BASE, ticks, max(ticks[-1] + 1, round((last - times[0]) / TIME_BASE)))


def write_video(path: str | os.PathLike, frames: Iterable | str | os.PathLike, fps: Fraction | int | float, *,
                timestamps: Sequence[float] | None = None, end_s: float | None = None,
                audio_from: str | os.PathLike | None = None, audio_start_s: float = 0.0,
                audio_end_s: float | None = None, crf: int = DEFAULT_CRF) -> int:
    """Encode ``frames`` as H.264 (libx264, yuv420p, BT.709) at ``fps`` into ``path`` (.mp4, .mov or
    .mkv by suffix), atomically; returns the number of frames written.

    frames: an iterable of uint8 [H, W, 3] or float [H, W, 3] in [0, 1] (clipped) arrays, or of image
    paths, or a frame folder's path; every frame of one even-sided size (:func:`fitted_video_shape`).
    fps: frames per second, kept exact (pass :attr:`VideoInfo.fps`; a float is made a fraction); frame
    k shows at k / fps. timestamps: instead, when each frame shows, in seconds, one per frame, strictly
    increasing (pass ``VideoInfo.timestamps[a:b]`` to keep a variable rate); shifted so that the first
    is 0, kept to 1/90000 s (MP4, MOV; MKV: to the millisecond); fps is then the nominal rate the
    stream states. end_s: when the last of them stops showing, on their clock (``timestamps[b]``, or
    :attr:`VideoInfo.end_s` at the end); default: the last timestamp plus the median gap.
    crf: x264's constant rate factor, 0 (lossless) to 51; 18 is near transparent.
    audio_from: a file whose first audio stream goes into the output for the source times
    ``[audio_start_s, audio_end_s)``, starting at the output's first frame. Times are seconds from the
    source's first video frame (frame k starts at ``VideoInfo.timestamps[k]``); ``audio_end_s=None``: to
    the end of its audio; a range past that end gets what there is. The whole track (start 0, no end)
    is copied without re-encoding when its codec suits the container (AAC, MP3, AC-3, Opus... in MP4);
    otherwise, and for any cut, it is re-encoded as AAC (mono, or stereo: more channels are
    downmixed), cut to the sample. To keep sound and picture of a frame range ``[a, b)`` together,
    pass ``audio_start_s=timestamps[a], audio_end_s=timestamps[b]`` (``end_s`` when ``b`` is the end).

    The file is written beside the target under a temporary name and renamed over it when complete; on
    any failure (a bad frame, an encoder error, an interruption) the temporary file is removed and an
    existing target is left as it was. One-line ValueErrors name the file."""
    av = require_video()
    path = local_path(path)
    muxer = VIDEO_FORMATS.get(path.suffix.lower())
    if muxer is None:
        raise ValueError(f"{path}: unsupported video extension {path.suffix or '(none)'!r}, expected one of "
                         f"{', '.join(VIDEO_FORMATS)}")
    if isinstance(crf, bool) or not isinstance(crf, int | np.integer) or not 0 <= crf <= 51:
        raise ValueError(f"{path}: expected crf an integer from 0 to 51, got {crf!r}")
    rate = _check_fps(fps)
    clock = _clock(timestamps, end_s, rate, path)
    if not (math.isfinite(audio_start_s) and audio_start_s >= 0):
        raise ValueError(f"{path}: expected audio_start_s >= 0, got {audio_start_s!r}")
    if audio_end_s is not None and not audio_end_s > audio_start_s:
        raise ValueError(f"{path}: expected audio_end_s > audio_start_s ({audio_start_s}), got {audio_end_s!r}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a video file name")
    storage.check_writable_folder(path.parent, str(path))
    if isinstance(frames, str | os.PathLike):
        frames = frame_files(frames)
    with files.atomic_path(path) as tmp, contextlib.ExitStack() as stack:
        source = None
        if audio_from is not None:
            source = stack.enter_context(open_input(local_path(audio_from, "video")))
            if not source.streams.audio:
                raise ValueError(f"{audio_from}: no audio stream to copy")
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        try:
            out = stack.enter_context(av.open(str(tmp), "w", format=muxer, options=options))
            audio = None if source is None else (source, audio_start_s, audio_end_s)
            count = _encode(av, _Muxer(out, clock, muxer), frames, rate, crf, path, audio)
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path}: writing the video failed ({error_detail(exc)})") from None
    return count


class _Muxer:
    """Packets into the output container: each video packet with how long its frame shows, the
    audio interleaved by time."""

    def __init__(self, out, clock: _Clock, muxer: str):
        self.out, self.clock, self.muxer = out, clock, muxer
        self.audio: Iterator | None = None
        self._durations = clock.durations()
        self._pending = None  # the next audio packet
        self._held = None  # the latest video packet: the last one's duration is known only at the end
        self._first_dts = None

    def video(self, packets: list) -> None:
        for packet in packets:
            if packet.pts in self._durations:
                packet.duration = self._durations[packet.pts]
            if self._held is not None:
                self.out.mux(self._held)
            else:
                self._first_dts = packet.dts
            self._held = packet

    def audio_until(self, limit_s: float | None) -> None:
        """Mux the audio packets before ``limit_s`` (s; None: all that are left)."""
        while self.audio is not None:
            if self._pending is None:
                self._pending = next(self.audio, None)
                if self._pending is None:
                    return
            if limit_s is not None and packet_time(self._pending) >= limit_s:
                return
            self.out.mux(self._pending)
            self._pending = None

    def close(self) -> None:
        held, clock = self._held, self.clock
        if held is not None:
            if clock.ticks is not None and self.muxer in ("mp4", "mov") and None not in (held.dts, self._first_dts):
                # MP4 times a track in decoding order from the first decoding time: its last sample lasts
                # until the last frame's end, which B-frames' decoding times miss at a variable rate.
                held.duration = max(1, clock.end + self._first_dts - held.dts)
            self.out.mux(held)
        self.audio_until(None)


def _encode(av, mux: _Muxer, frames: Iterable, rate: Fraction, crf: int, path: Path, audio: tuple | None) -> int:
    from av.video.reformatter import ColorRange, Colorspace

    clock, stream, shape, count = mux.clock, None, None, 0
    for item in frames:
        if clock.ticks is not None and count >= len(clock.ticks):
            raise ValueError(f"{path}: more frames than timestamps: at least {count + 1} frames, but "
                             f"{len(clock.ticks)} timestamps")
        rgb = _as_uint8(item, count, path)
        if stream is None:
            shape = rgb.shape
            stream = _add_stream(mux.out, shape, rate, clock, crf, path)
            if audio is not None:
                mux.audio = audio_packets(av, mux.out, *audio, mux.muxer)
        elif rgb.shape != shape:
            raise ValueError(f"{path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]} px, frame 0 "
                             f"{shape[1]}x{shape[0]} px; all frames must have one size")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        frame.pts = clock.pts(count)
        frame.time_base = stream.codec_context.time_base
        mux.video(stream.encode(frame))
        mux.audio_until(clock.seconds(count))
        count += 1
    if stream is None:
        raise ValueError(f"{path}: no frames to write")
    if clock.ticks is not None and count < len(clock.ticks):
        raise ValueError(f"{path}: {count} frames, but {len(clock.ticks)} timestamps")
    mux.video(stream.encode(None))
    mux.close()
    return count


def _add_stream(out, shape: tuple, rate: Fraction, clock: _Clock, crf: int, path: Path):
    """The H.264 stream for frames of ``shape`` (even sides), tagged BT.709 limited range."""
    height, width = shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: frames are {width}x{height} px; H.264 4:2:0 needs even sides "
                         f"(see fitted_video_shape)")
    stream = out.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    context = stream.codec_context
    context.time_base = clock.time_base
    context.colorspace = context.color_primaries = context.color_trc = _BT709
    context.color_range = _MPEG_RANGE
    return stream


def _as_uint8(item, index: int, path: Path) -> np.ndarray:
    """One frame given to :func:`write_video` as uint8 [H, W, 3]."""
    if isinstance(item, str | os.PathLike):
        item = load_frame_image(item)
    try:
        array = np.asarray(item)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: frame {index}: expected an RGB frame array [H, W, 3] or an image path, "
                         f"got {type(item).__name__}") from None
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{path}: frame {index}: expected an RGB frame [H, W, 3], got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: frame {index}: expected uint8 or float in [0, 1], got dtype {array.dtype}")
    return images.to_uint8(np.nan_to_num(array))
