"""The only package that reads or writes videos and frame folders.

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
(:func:`fitted_video_shape`). Each frame's time is kept (:attr:`VideoInfo.timestamps`): phones and
screen recorders write a variable rate, and muxers drop the repeated frames of a freeze.

Writing: H.264 (libx264, yuv420p, BT.709 limited range, tagged) in MP4, MOV or MKV by suffix, at an
exact frame rate (a :class:`fractions.Fraction`, 30000/1001 stays 30000/1001) or at the frames' own
times, optionally with the audio of another file for a time range; to a temporary file beside the
target that is renamed over it only once complete. Frame folders are written one PNG at a time
(:func:`write_frame_png`), atomically, so an interrupted job can resume where it stopped.

PyAV is an optional dependency (``pip install 'jaxstyle[video]'``), imported only when a video
file is read or written; frame folders need only Pillow. Paths are local (no URLs) except for
:func:`write_frame_png` and :func:`read_frame_png`, which go through :mod:`jaxstyle.io.storage`.

Modules: ``container`` (opening a file, its stream, rate and stated length), ``probe``
(:class:`VideoHeader` from the container and the first frame, :class:`VideoInfo` from the frames
walked), ``decode`` (frames, display matrix, pixel formats, :func:`read_frames`), ``timing`` (frame
times, pure), ``encode`` (:func:`write_video`), ``audio`` (audio copied or cut), ``folders`` (frame
folders and PNG frames), ``shapes`` (:func:`fitted_video_shape`).
"""

from jaxstyle.io.video.container import VIDEO_EXTRA, require_video
from jaxstyle.io.video.decode import read_frames
from jaxstyle.io.video.encode import DEFAULT_CRF, VIDEO_FORMATS, is_video_output, write_video
from jaxstyle.io.video.folders import (
    FRAME_PNG,
    FRAME_SUFFIXES,
    frame_files,
    frame_png_path,
    load_frame_image,
    read_frame_png,
    write_frame_png,
)
from jaxstyle.io.video.probe import REORDER_FRAMES, VideoHeader, VideoInfo, probe, probe_header
from jaxstyle.io.video.shapes import fitted_video_shape

__all__ = [
    "DEFAULT_CRF", "FRAME_PNG", "FRAME_SUFFIXES", "REORDER_FRAMES", "VIDEO_EXTRA", "VIDEO_FORMATS", "VideoHeader",
    "VideoInfo", "fitted_video_shape", "frame_files", "frame_png_path", "is_video_output", "load_frame_image", "probe",
    "probe_header", "read_frame_png", "read_frames", "require_video", "write_frame_png", "write_video",
]
