"""The only module that reads or writes videos and frame folders.

A *video* is a file FFmpeg (through PyAV) can demux with a video stream: MP4, MOV, MKV, WebM, AVI...
A *frame folder* is a folder of images (png, jpg, jpeg, tif, tiff, bmp, webp), one frame each, in
natural sort order (``frame2`` before ``frame10``); names starting with ``.`` are skipped.

Reading gives RGB float32 [H, W, 3] in [0, 1] per frame, as displayed: the container's display matrix
(rotation, mirroring) applied, so a phone video shot upright comes out upright; any pixel format
converted (8 to 16-bit YUV or RGB, grey, palette) with the colour matrix and range the stream is
tagged with (untagged YUV: BT.601, limited range, as FFmpeg assumes). **Alpha is composited over
black** (video and folder frames alike; :func:`jaxstyle.io.images.load_image` uses white for still
images). Frames are resized (Lanczos, in float) so the longer side is ``size`` px, up or down as the
image loader does, and then to *even* sides so that H.264 4:2:0 can encode them
(:func:`fitted_video_shape`).

Writing: H.264 (libx264, yuv420p, BT.709 limited range, tagged) in MP4, MOV or MKV by suffix, at an
exact frame rate (a :class:`fractions.Fraction`, 30000/1001 stays 30000/1001), optionally with the
audio of another file for a time range; to a temporary file beside the target that is renamed over
it only once complete. Frame folders are written one PNG at a time (:func:`write_frame_png`),
atomically, so an interrupted job can resume where it stopped.

PyAV is an optional dependency (``pip install 'jaxstyle[video]'``), imported only when a video
file is read or written; frame folders need only Pillow. Paths are local (no URLs) except for
:func:`write_frame_png` and :func:`read_frame_png`, which go through :mod:`jaxstyle.io.storage`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxstyle.io import files, images, storage
from jaxstyle.io.storage import Location

VIDEO_EXTRA = "pip install 'jaxstyle[video]'"
VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}  # output suffix -> FFmpeg muxer
FRAME_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
FRAME_PNG = "frame_{index:05d}.png"
DEFAULT_CRF = 18  # x264's "visually lossless" end of the scale; 23 is its default, 0 lossless
# Audio codecs copied as they are (no re-encoding) into each container; anything else becomes AAC.
_REMUX_AUDIO = {
    "mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    "mov": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"}),
    "matroska": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "vorbis", "flac", "pcm_s16le",
                           "pcm_s24le"}),
}
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
_AAC_FRAME = 1024  # samples per AAC frame
_NOT_VIDEO = frozenset({"tty"})  # FFmpeg renders any text file as an "ansi" video
_BT709 = 1  # AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited (16-235)


def require_video():
    """The ``av`` module (PyAV); ValueError naming the extra to install when it is missing."""
    try:
        import av
    except ImportError:
        raise ValueError(f"video needs PyAV and OpenCV: {VIDEO_EXTRA}") from None
    return av


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds.

    frames: the number of frames :func:`read_frames` yields. fps: frames per second, exact (None for a
    frame folder, or a video that states none). width, height: as displayed (after rotation).
    rotation: degrees counter-clockwise the stored picture is turned for display, 0/90/180/270 (a
    phone held upright usually records 270, i.e. 90 clockwise); mirrored: the display matrix also
    flips it. pix_fmt: FFmpeg's pixel format of the decoded frames (``yuv420p``, ``yuv420p10le``,
    ``yuva420p``...) or, for a folder, the Pillow mode of the first image (``RGB``, ``RGBA``...).
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

    @property
    def duration_s(self) -> float | None:
        return None if self.fps is None else float(self.frames / self.fps)


# ----------------------------------------------------------------------------- shapes

def fitted_video_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(h, w) for a frame displayed ``height`` x ``width`` read at ``size``: the longer side ``size``
    px, up or down (as :func:`jaxstyle.io.images.fitted_shape`), the aspect ratio kept, and then both
    sides *even* (H.264 4:2:0 needs them even): the longer one rounded down, so it never exceeds
    ``size``, the shorter one to the nearest even number, at least 2. ``size=None``: the frame's own
    size, an odd side one pixel shorter (cropped, not resampled)."""
    if size is None:
        return max(2, height - height % 2), max(2, width - width % 2)
    _check_size(size)
    longer = size - size % 2
    scale = longer / max(height, width)

    def even(side: int) -> int:
        return longer if side == max(height, width) else min(longer, max(2, 2 * round(side * scale / 2)))

    return even(height), even(width)


def _check_size(size) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2:
        raise ValueError(f"expected a frame size: an integer >= 2 px (or None), got {size!r}")


def _fit(image: np.ndarray, size: int | None) -> np.ndarray:
    """float [H, W, 3] resized (Lanczos) or, for ``size=None``, cropped to even sides."""
    height, width = image.shape[:2]
    h, w = fitted_video_shape(height, width, size)
    if size is None:
        return np.ascontiguousarray(image[:h, :w])
    return images.resize_to(np.ascontiguousarray(image), h, w)


# ----------------------------------------------------------------------------- frame folders

def _natural_key(name: str) -> tuple:
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def _local(path: str | os.PathLike, what: str = "video") -> Path:
    where = storage.location(path)
    if not isinstance(where, Path):
        raise ValueError(f"{where}: a {what} must be a local path (copy it from the bucket first)")
    return where


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder in natural sort order; ValueError if it holds none."""
    folder = _local(folder, "frame folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise ValueError(f"{folder}: the folder holds no frames ({', '.join(sorted(FRAME_SUFFIXES))} images)")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _pil_mode(path: Path) -> tuple[str, bool]:
    """(Pillow mode, has alpha) of an image file, from its header."""
    try:
        with Image.open(path) as img:
            alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            return img.mode, alpha
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    except OSError as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None


def _check_same_size(files: list[Path]) -> tuple[int, int]:
    """(h, w) of the frames as displayed; ValueError naming the first frame of another size."""
    first = images.image_size(files[0])
    for file in files[1:]:
        shape = images.image_size(file)
        if shape != first:
            raise ValueError(f"{file}: frame is {shape[1]}x{shape[0]} px, but {files[0].name} is "
                             f"{first[1]}x{first[0]} px; the frames of a folder must all have one size")
    return first


def load_frame_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as a video frame: RGB float32 [H, W, 3] in [0, 1], EXIF orientation applied,
    alpha composited over *black* (other modes as :func:`jaxstyle.io.images.load_image`)."""
    path = _local(path, "frame")
    _, alpha = _pil_mode(path)
    if not alpha:
        return images.load_image(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgba = np.asarray(ImageOps.exif_transpose(img).convert("RGBA"), dtype=np.float32) / 255.0
    except OSError as exc:
        raise ValueError(f"{path}: corrupt or truncated image ({exc})") from None
    return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:])


def _probe_folder(folder: Path) -> VideoInfo:
    files = frame_files(folder)
    height, width = _check_same_size(files)
    mode, alpha = _pil_mode(files[0])
    return VideoInfo(frames=len(files), fps=None, width=width, height=height, pix_fmt=mode, has_alpha=alpha,
                     is_folder=True)


# ----------------------------------------------------------------------------- reading videos

@contextlib.contextmanager
def _open_input(path: Path):
    """The PyAV input container of a video file; one-line ValueErrors for what cannot be one."""
    av = require_video()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, expected a video file")
    try:
        container = av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path}: not a video FFmpeg can read ({_detail(exc)})") from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied") from None
    try:
        if container.format.name in _NOT_VIDEO:
            raise ValueError(f"{path}: not a video file")
        yield container
    finally:
        container.close()


def _detail(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:200]


def _video_stream(container, path: Path):
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


def _frame_rate(stream) -> Fraction | None:
    """The stream's rate: the average, unless it only rounds the nominal (guessed) one."""
    average, guessed = stream.average_rate, stream.guessed_rate
    if guessed and (not average or abs(average - guessed) <= guessed / 1000):
        return Fraction(guessed)
    return Fraction(average) if average else None


@dataclasses.dataclass(frozen=True)
class _Display:
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


def _listed_frames(stream) -> tuple[int | None, bool]:
    """(frames the container's header promises, whether exactly): MP4/MOV list them; MKV/WebM state
    a duration (the DURATION tag FFmpeg and most muxers write), which gives them at the frame rate."""
    if stream.frames:
        return stream.frames, True
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        tag = {k.upper(): v for k, v in stream.metadata.items()}.get("DURATION", "")
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", tag.strip())
        if match:
            seconds = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    fps = _frame_rate(stream)
    if not seconds or not fps:
        return None, False
    return math.floor(seconds * fps + 0.5), False


def _check_complete(stream, found: int, path: Path) -> None:
    """ValueError if the stream holds fewer frames than its header promises (a truncated file); a
    count from a duration may be off by a frame or 2% (variable frame rates)."""
    listed, exact = _listed_frames(stream)
    if listed is None or found >= (listed if exact else listed - max(1, listed // 50)):
        return
    promise = "lists" if exact else "implies"
    raise ValueError(f"{path}: truncated or corrupt video: {found} frames, but its header {promise} {listed}")


def _display(frame) -> _Display:
    """The display matrix of a decoded frame (FFmpeg copies the container's onto every frame) as a
    transpose and flips: the QuickTime matrix maps a stored pixel (x, y) to (a x + c y, b x + d y),
    with a, b, c, d = m[0], m[1], m[3], m[4]. A rotation that is not a multiple of 90 degrees is
    rounded to the nearest one (the dominant entries decide)."""
    matrix = None
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            matrix = np.frombuffer(bytes(side), "<i4", count=9)
    if matrix is None:
        return _Display()
    a, b, c, d = (int(matrix[i]) for i in (0, 1, 3, 4))
    if abs(a) + abs(d) >= abs(b) + abs(c):
        return _Display(False, d < 0, a < 0)
    return _Display(True, b < 0, c < 0)


def _to_rgb(frame) -> np.ndarray:
    """A decoded frame in any pixel format as RGB float32 [h, w, 3] in [0, 1] (alpha over black)."""
    components = frame.format.components
    alpha = any(c.is_alpha for c in components)
    deep = any(c.bits > 8 for c in components)
    target = ("rgba64le" if alpha else "rgb48le") if deep else ("rgba" if alpha else "rgb24")
    array = frame.to_ndarray(format=target).astype(np.float32) / (65535.0 if deep else 255.0)
    return array[..., :3] * array[..., 3:] if alpha else array


def _probe_video(path: Path) -> VideoInfo:
    av = require_video()
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        has_audio = bool(container.streams.audio)
        frames = discarded = 0
        first = None
        try:
            for packet in container.demux(stream):
                if packet.size and packet.is_discard:
                    discarded += 1
                elif packet.size:
                    frames += 1
                if first is None:  # decode only until the first picture comes out
                    pictures = stream.decode(packet)
                    first = pictures[0] if pictures else None
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path}: truncated or corrupt video: demuxing failed after {frames} frames "
                             f"({_detail(exc)})") from None
        if first is None or frames == 0:
            raise ValueError(f"{path}: the video stream has no frames that decode")
        _check_complete(stream, frames + discarded, path)
        display = _display(first)
        height, width = first.height, first.width
        if display.transpose:
            height, width = width, height
        return VideoInfo(frames=frames, fps=_frame_rate(stream), width=width, height=height,
                         rotation=display.rotation, mirrored=display.mirrored, has_audio=has_audio,
                         pix_fmt=first.format.name, has_alpha=any(c.is_alpha for c in first.format.components))


def probe(path: str | os.PathLike) -> VideoInfo:
    """What a video file or a frame folder holds (see :class:`VideoInfo`), without decoding more than
    the first frame: the frames are counted by demuxing the video stream's packets (excluding those the
    container marks to discard), which is exact for one-frame-per-packet streams (H.264, HEVC, VP9,
    AV1, ProRes... in MP4, MOV, MKV, WebM). A folder's images are all checked to have one size.

    ValueError (one line naming the file): no such file or folder, not a video, no video stream (an
    audio-only file), a truncated file (fewer packets than its header lists), a folder with no images
    or images of different sizes; missing PyAV for a video file."""
    path = _local(path)
    if path.is_dir():
        return _probe_folder(path)
    return _probe_video(path)


def read_frames(path: str | os.PathLike, size: int | None, *, start: int = 0,
                end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``[start, end)`` of a video file or frame folder as ``(index, RGB float32 [h, w, 3] in
    [0, 1])``, displayed upright (rotation applied), alpha over black, resized to
    :func:`fitted_video_shape` (longer side ``size``, both sides even; ``size=None``: the native size,
    an odd side cropped by one pixel). ``end=None``: to the last frame.

    A video is decoded from its start (frames before ``start`` are decoded but not converted; exact
    indices, no seeking). A corrupt or truncated file yields the frames that decode and then raises a
    one-line ValueError naming the file, as does a video with fewer frames than ``end`` or than its
    header lists. The arguments, the file's existence and, for a folder, its frames' sizes are checked
    when this is called; a video's contents as it is read."""
    _check_range(start, end)
    if size is not None:
        _check_size(size)
    path = _local(path)
    if path.is_dir():
        files = frame_files(path)
        stop = len(files) if end is None else end
        if stop > len(files):
            raise ValueError(f"{path}: the folder holds {len(files)} frames, fewer than the end {end} asked for")
        _check_same_size(files[start:stop] or files[:1])
        return _read_folder(files, size, start, stop)
    require_video()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return _read_video(path, size, start, end)


def _check_range(start, end) -> None:
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise ValueError(f"expected a start frame >= 0, got {start!r}")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | np.integer) or end < start):
        raise ValueError(f"expected an end frame >= start ({start}) or None, got {end!r}")


def _read_folder(files: list[Path], size: int | None, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    for index in range(start, stop):
        yield index, _fit(load_frame_image(files[index]), size)


def _read_video(path: Path, size: int | None, start: int, end: int | None) -> Iterator[tuple[int, np.ndarray]]:
    av = require_video()
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        discarded = 0
        failure = None

        def pictures():
            """The decoded frames; at a demuxing or decoding error, those still in the decoder."""
            nonlocal discarded, failure
            try:
                for packet in container.demux(stream):
                    discarded += bool(packet.size and packet.is_discard)
                    yield from stream.decode(packet)
            except av.error.FFmpegError as exc:
                failure = exc
                with contextlib.suppress(av.error.FFmpegError):
                    yield from stream.decode(None)

        index = 0
        display = None
        for frame in pictures():
            if display is None:
                display = _display(frame)
            if index >= start:
                yield index, _fit(display.apply(_to_rgb(frame)), size)
            index += 1
            if end is not None and index >= end:
                return
        if failure is not None:
            raise ValueError(f"{path}: truncated or corrupt video: decoding failed after {index} frames "
                             f"({_detail(failure)})")
        if end is not None and index < end:
            raise ValueError(f"{path}: the video has {index} frames, fewer than the end {end} asked for")
        if end is None:
            _check_complete(stream, index + discarded, path)


# ----------------------------------------------------------------------------- writing

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


def frame_png_path(folder: str | os.PathLike, index: int) -> Location:
    """``folder/frame_{index:05d}.png`` (the folder may be a URL)."""
    return storage.join(storage.location(folder), FRAME_PNG.format(index=index))


def write_frame_png(folder: str | os.PathLike, index: int, image: np.ndarray) -> Location:
    """Write frame ``index`` (float [H, W, 3] in [0, 1]) as ``folder/frame_{index:05d}.png``, 8-bit,
    atomically (a temporary file renamed over it; a URL: one upload); the folder is created if it is
    missing. Returns the file's location."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"expected a frame index >= 0, got {index!r}")
    folder = storage.location(folder)
    storage.make_folder(folder)
    target = frame_png_path(folder, index)
    images.save_image(target, image)
    return target


def read_frame_png(folder: str | os.PathLike, index: int) -> np.ndarray:
    """Frame ``index`` written by :func:`write_frame_png`, as RGB float32 [H, W, 3] in [0, 1]."""
    return images.load_image(frame_png_path(folder, index))


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


def _check_fps(fps) -> Fraction:
    try:
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1_000_000)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a frame rate > 0 (a Fraction, int or float), got {fps!r}") from None
    if isinstance(fps, bool) or rate <= 0:
        raise ValueError(f"expected a frame rate > 0 (a Fraction, int or float), got {fps!r}")
    return rate


def write_video(path: str | os.PathLike, frames: Iterable | str | os.PathLike, fps: Fraction | int | float, *,
                audio_from: str | os.PathLike | None = None, audio_start_s: float = 0.0,
                audio_end_s: float | None = None, crf: int = DEFAULT_CRF) -> int:
    """Encode ``frames`` as H.264 (libx264, yuv420p, BT.709) at ``fps`` into ``path`` (.mp4, .mov or
    .mkv by suffix), atomically; returns the number of frames written.

    frames: an iterable of uint8 [H, W, 3] or float [H, W, 3] in [0, 1] (clipped) arrays, or of image
    paths, or a frame folder's path; every frame of one even-sided size (:func:`fitted_video_shape`).
    fps: frames per second, kept exact (pass :attr:`VideoInfo.fps`; a float is made a fraction).
    crf: x264's constant rate factor, 0 (lossless) to 51; 18 is near transparent.
    audio_from: a file whose first audio stream goes into the output for the source times
    ``[audio_start_s, audio_end_s)``, starting at the output's first frame. Times are seconds from the
    source's first video frame (frame k at ``fps`` starts at k / fps); ``audio_end_s=None``: to the end
    of its audio; a range past that end gets what there is. The whole track (start 0, no end) is
    copied without re-encoding when its codec suits the container (AAC, MP3, AC-3, Opus... in MP4);
    otherwise, and for any cut, it is re-encoded as AAC (mono, or stereo: more channels are downmixed),
    cut to the sample. To keep sound and picture of a frame range ``[a, b)`` together, pass
    ``audio_start_s=a / fps, audio_end_s=b / fps``.

    The file is written beside the target under a temporary name and renamed over it when complete; on
    any failure (a bad frame, an encoder error, an interruption) the temporary file is removed and an
    existing target is left as it was. One-line ValueErrors name the file."""
    av = require_video()
    path = _local(path)
    muxer = VIDEO_FORMATS.get(path.suffix.lower())
    if muxer is None:
        raise ValueError(f"{path}: unsupported video extension {path.suffix or '(none)'!r}, expected one of "
                         f"{', '.join(VIDEO_FORMATS)}")
    if isinstance(crf, bool) or not isinstance(crf, int | np.integer) or not 0 <= crf <= 51:
        raise ValueError(f"{path}: expected crf an integer from 0 to 51, got {crf!r}")
    rate = _check_fps(fps)
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
            source = stack.enter_context(_open_input(_local(audio_from, "video")))
            if not source.streams.audio:
                raise ValueError(f"{audio_from}: no audio stream to copy")
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        try:
            out = stack.enter_context(av.open(str(tmp), "w", format=muxer, options=options))
            count = _encode(av, out, frames, rate, crf, path, source, audio_start_s, audio_end_s, muxer)
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path}: writing the video failed ({_detail(exc)})") from None
    return count


def _encode(av, out, frames: Iterable, rate: Fraction, crf: int, path: Path, source, audio_start_s: float,
            audio_end_s: float | None, muxer: str) -> int:
    from av.video.reformatter import ColorRange, Colorspace

    stream = None
    audio: Iterator | None = None
    pending = None

    def mux_audio_until(limit_s: float | None) -> None:
        nonlocal pending
        while audio is not None:
            if pending is None:
                pending = next(audio, None)
                if pending is None:
                    return
            if limit_s is not None and _packet_time(pending) >= limit_s:
                return
            out.mux(pending)
            pending = None

    count = 0
    shape = None
    for item in frames:
        rgb = _as_uint8(item, count, path)
        if stream is None:
            shape = rgb.shape
            height, width = shape[:2]
            if height % 2 or width % 2:
                raise ValueError(f"{path}: frames are {width}x{height} px; H.264 4:2:0 needs even sides "
                                 f"(see fitted_video_shape)")
            stream = out.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            context = stream.codec_context
            context.time_base = 1 / rate
            context.colorspace = context.color_primaries = context.color_trc = _BT709
            context.color_range = _MPEG_RANGE
            if source is not None:
                audio = _audio_packets(av, out, source, audio_start_s, audio_end_s, muxer)
        elif rgb.shape != shape:
            raise ValueError(f"{path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]} px, frame 0 "
                             f"{shape[1]}x{shape[0]} px; all frames must have one size")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        frame.pts = count
        frame.time_base = stream.codec_context.time_base
        out.mux(stream.encode(frame))
        mux_audio_until(float(count / rate))
        count += 1
    if stream is None:
        raise ValueError(f"{path}: no frames to write")
    out.mux(stream.encode(None))
    mux_audio_until(None)
    return count


def _packet_time(packet) -> float:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0


def _audio_packets(av, out, source, start_s: float, end_s: float | None, muxer: str) -> Iterator:
    """Add ``source``'s first audio stream to ``out`` (now, before the header is written) and return
    the packets for it, in time order (lazily, so that they can be interleaved with the video)."""
    template = source.streams.audio[0]
    name = source.name
    origin = 0.0  # source time of its first video frame: output time 0
    if source.streams.video and source.streams.video[0].start_time is not None:
        video = source.streams.video[0]
        origin = float(video.start_time * video.time_base)
    codec = template.codec_context.name
    if start_s == 0 and end_s is None and codec in _REMUX_AUDIO[muxer] & out.supported_codecs:
        stream = out.add_stream_from_template(template)
        return _copied_packets(av, source, template, stream, origin, name)
    rate = template.codec_context.sample_rate
    rate = rate if rate in _AAC_RATES else 48000
    layout = "mono" if template.codec_context.channels == 1 else "stereo"  # more channels: downmixed
    stream = out.add_stream("aac", rate=rate, layout=layout)
    stream.bit_rate = 96_000 if layout == "mono" else 192_000
    end = math.inf if end_s is None else end_s
    return _encoded_packets(av, source, template, stream, origin + start_s, origin + end, name)


def _copied_packets(av, source, template, stream, origin: float, name: str) -> Iterator:
    shift = round(origin / template.time_base) if template.time_base and origin else 0
    try:
        for packet in source.demux(template):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if shift:
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = stream
            yield packet
    except av.error.FFmpegError as exc:
        raise ValueError(f"{name}: corrupt audio: demuxing failed ({_detail(exc)})") from None


def _encoded_packets(av, source, template, stream, lo: float, hi: float, name: str) -> Iterator:
    """AAC packets of the source audio between source times ``lo`` and ``hi`` (s), resampled to the
    output's rate and layout, cut to the sample; silence in front if the audio starts after ``lo``."""
    rate = stream.codec_context.sample_rate
    layout = stream.codec_context.layout.name
    channels = stream.codec_context.channels
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    buffer = np.zeros((channels, 0), np.float32)
    position = None  # source time (s) of the next resampled sample
    written = 0

    def encode(block: np.ndarray) -> list:
        nonlocal written
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, written, Fraction(1, rate)
        written += block.shape[1]
        return stream.encode(frame)

    def cut(piece) -> np.ndarray:
        nonlocal position
        samples = piece.to_ndarray().reshape(channels, -1)  # fltp: [channels, n]
        if position is None:
            position = float(piece.pts * piece.time_base) if piece.pts is not None else lo
            if position > lo:  # the audio starts after the first frame: silence keeps it in sync
                silence = np.zeros((channels, round((position - lo) * rate)), np.float32)
                samples, position = np.concatenate([silence, samples], axis=1), lo
        n = samples.shape[1]
        first = min(n, max(0, math.ceil((lo - position) * rate - 1e-6)))
        last = n if math.isinf(hi) else min(n, max(0, math.ceil((hi - position) * rate - 1e-6)))
        position += n / rate
        return samples[:, first:last]

    try:
        for packet in source.demux(template):
            for decoded in template.decode(packet):
                buffer = np.concatenate([buffer, *(cut(piece) for piece in resampler.resample(decoded))], axis=1)
            while buffer.shape[1] >= _AAC_FRAME:
                yield from encode(buffer[:, :_AAC_FRAME])
                buffer = buffer[:, _AAC_FRAME:]
            if position is not None and position >= hi:
                break
        else:
            buffer = np.concatenate([buffer, *(cut(piece) for piece in resampler.resample(None))], axis=1)
    except av.error.FFmpegError as exc:
        raise ValueError(f"{name}: corrupt audio: decoding failed ({_detail(exc)})") from None
    for k in range(0, buffer.shape[1], _AAC_FRAME):  # the last frame may be shorter
        yield from encode(buffer[:, k:k + _AAC_FRAME])
    yield from stream.encode(None)
