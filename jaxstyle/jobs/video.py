"""A video, file in and file out: what ``jaxstyle video`` does, usable from Python.

Everything that can be checked from the input's header (its container and first frame,
:func:`jaxstyle.io.video.probe_header`) is checked first: the input (a video stream, or a folder of
frames), the style images, the output (a video file by its suffix, or a folder of PNGs; never an
input, never overwritten unless asked, saying which finished frames ``overwrite`` can discard), the
report, the working size against memory, and then the preview page starts. Then the frames are
counted and timed (:func:`jaxstyle.io.video.probe`: to the range's end, or to the last frame and
checked for truncation when the range is open), which checks the range and the ``.flo`` files, and:

1. The frames of the range are decoded once, at the working size, into a work folder beside the
   output (``<output>.jaxstyle-work``, :mod:`jaxstyle.jobs.video_work`), as ``input/frame_NNNNN.npy``.
2. The engine (:func:`jaxstyle.engine.video.stylize_video`) runs; every finished frame is written
   atomically to ``pass_P/frame_NNNNN.png`` in the work folder. The optical flow is computed on a
   host thread ahead of the device (:mod:`jaxstyle.jobs.flows`) and cached by input.
3. The last pass's frames are assembled: a video file (H.264, each frame at its input frame's time,
   so a variable rate stays as it was; the input's audio for the range's time span) or a folder of
   PNGs, written under a temporary name and renamed. The work folder is then removed.

Nothing is lost: an interrupt (Ctrl-C, SIGTERM), the preview page's Stop or a crash leaves the
finished frames in the work folder, and the same command resumes from there (what made them must
match, :mod:`jaxstyle.jobs.video_settings`: a different command, or a file read that changed,
refuses to mix its frames in, unless ``overwrite``, which discards them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import jax

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine import memory
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.engine.video import FrameRecord, stylize_video
from jaxstyle.flow import DISFlow, require_opencv
from jaxstyle.io import files, images, storage
from jaxstyle.io import video as video_io
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs.flows import FlowProvider, flo_files, needed_flows
from jaxstyle.jobs.network import load_network
from jaxstyle.jobs.video_report import speed, temporal_error, video_report
from jaxstyle.jobs.video_settings import files_digest, input_digest, prepare, video_settings
from jaxstyle.jobs.video_work import (
    WORK_SUFFIX,
    DiskStore,
    RawFrames,
    WorkFrames,
    decode,
    finished_frames,
    is_frame_file,
    work_folder,
    write_folder,
)
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.inputs import check_stage_sizes
from jaxstyle.weights.fetch import cache_dir

__all__ = ["WORK_SUFFIX", "DiskStore", "VideoJob", "VideoOutcome", "WorkFrames", "input_digest", "run_video",
           "temporal_error", "work_folder"]


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """input: a video file (anything FFmpeg reads) or a folder of frames; styles: image paths;
    output: a video file (.mp4, .mkv, .mov) or a folder (PNG frames). size: the frames' longest
    side (both sides even); style_size: the style images' (default ``size``). start, end: the
    frame range (0-based, end excluded; None: to the last). fps: the frame rate of a folder input's
    video output. crf: H.264 quality (0 best .. 51 worst). flow: "dis" (OpenCV DIS, ``dis_preset``)
    or a ``.flo`` path pattern with ``{a}`` and ``{b}``. report: a JSON file. parallel: the
    parallel mode over all local devices; group: frames per compiled batch there. preview: serve
    the live page on this port (0: any free one) of ``preview_host``: the frame being worked on,
    the last few finished, the loss of each frame; stop (the finished frames are kept to resume),
    a snapshot, the weights for the rest of the run."""

    input: str
    styles: tuple[str, ...]
    output: str
    config: StyleConfig = StyleConfig(iterations=50)
    video: VideoConfig = VideoConfig()
    size: int = 256
    style_size: int | None = None
    start: int = 0
    end: int | None = None
    fps: float | None = None
    crf: int = 18
    flow: str = "dis"
    dis_preset: str = "medium"
    report: str | None = None
    overwrite: bool = False
    style_masks: tuple[str, ...] | None = None
    group: int | None = None
    weights: str | None = None
    preprocessing: str | None = None
    pooling: str = "max"
    preview: int | None = None
    preview_host: str = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class VideoOutcome:
    """What a job did: its records (every frame of every pass this run went through, resumed ones
    included), the cuts, the report (the same dict as the JSON file) and the output written.

    stopped: the preview page's Stop ended the run: no output was written (nor the report);
    ``frames_finished`` frames (every pass's counted) are kept in the work folder ``work``, and the
    same command resumes from them."""

    records: list[FrameRecord]
    cuts: list[int]
    report: dict
    output: Path
    stopped: bool = False
    frames_finished: int = 0
    work: Path | None = None


def _local(path: str, what: str) -> Path:
    if storage.is_url(path):
        raise ValueError(f"{path}: {what} must be a local path (videos are not read from or written to URLs)")
    return Path(path).expanduser()


def _check(job: VideoJob) -> tuple[Path, Path, Path | None, video_io.VideoHeader]:
    """(input, output, report path, the input's header) of the job, checked from the header."""
    if not job.styles:
        raise ValueError("expected at least one style image, got none")
    source = _local(job.input, "the input").resolve()
    output = _local(job.output, "the output").resolve()
    if job.flow == "dis":
        require_opencv()
    header = video_io.probe_header(source)
    if job.start < 0 or (job.end is not None and job.end <= job.start):
        raise ValueError(f"--frames: expected 0 <= START < END, got {job.start}:{job.end}")
    video_out = video_io.is_video_output(output)
    if video_out and header.fps is None and job.fps is None:
        raise ValueError(f"{source}: a folder of frames has no frame rate: pass --fps for a video output")
    if not 0 <= job.crf <= 51:
        raise ValueError(f"--crf: expected 0 (best) .. 51, got {job.crf}")
    if storage.same_file(storage.location(output), storage.location(source)) or (
            source.is_dir() and output.resolve().is_relative_to(source.resolve())):
        raise ValueError(f"{output}: output would overwrite the input {source}")
    for style in job.styles:
        if storage.same_file(storage.location(output), storage.location(style)):
            raise ValueError(f"{output}: output would overwrite the style image {style}")
    for named in (job.input, *job.styles, *(job.style_masks or ())):
        if not video_out and Path(named).expanduser().resolve().is_relative_to(output):
            raise ValueError(f"{output}: the output folder holds the input {named}")
    if output.exists() and not job.overwrite:
        raise _exists(output, output)
    if output.is_dir() and (video_out or any(not is_frame_file(p) for p in output.iterdir())):
        raise ValueError(f"{output}: a folder with other files than frame_NNNNN.png; not replaced")
    if not output.parent.is_dir():
        raise ValueError(f"{output.parent}: no such folder for the output")
    report = None
    if job.report:
        report = _local(job.report, "the report")
        if report.suffix.lower() != ".json":
            raise ValueError(f"{job.report}: --report writes a .json file")
        if report.exists() and not job.overwrite:
            raise _exists(report, output)
        if not report.parent.is_dir():
            raise ValueError(f"{report.parent}: no such folder for the report")
    if job.style_masks is not None and len(job.style_masks) != len(job.styles):
        raise ValueError(f"--style-masks: expected {len(job.styles)} masks (one per style image), "
                         f"got {len(job.style_masks)}")
    if job.flow != "dis":
        try:
            named = job.flow.format(a=0, b=1) != job.flow.format(a=1, b=0)
        except (KeyError, IndexError, ValueError):
            named = False
        if not named or "{a" not in job.flow or "{b" not in job.flow:
            raise ValueError(f"--flow: expected 'dis' or a .flo path pattern with {{a}} and {{b}} (and no other "
                             f"fields), got {job.flow!r}")
    if job.fps is not None and not (0 < job.fps < math.inf):
        raise ValueError(f"--fps: expected a frame rate > 0, got {job.fps}")
    if job.video.mode == "parallel" and job.video.relative_frames != (1,):
        raise ValueError("--long-term applies to the sequential mode (the parallel mode couples neighbours)")
    job.config.blend_weights(len(job.styles))
    return source, output, report, header


def _exists(path: Path, output: Path) -> ValueError:
    """The refusal of an output or report that exists, saying which finished frames ``--overwrite`` can
    discard: those beside the output, unless this command's settings are the ones that made them."""
    work = work_folder(output)
    done = finished_frames(work)
    held = f"{done} finished frame{'' if done == 1 else 's'} in {work}"
    also = f"; it also discards the {held} if they were made with other settings than this command's" if done else ""
    return ValueError(f"{path}: already exists (pass --overwrite to replace it{also})")


def _batch(job: VideoJob) -> int:
    """Frames optimised at once on one device (or, on CPUs, in one host's memory)."""
    if job.video.mode != "parallel":
        return 1
    devices = jax.local_devices()
    group = -(-(job.group or len(devices)) // len(devices)) * len(devices)
    return group if devices[0].platform == "cpu" else group // len(devices)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A job checked from the input's header: its files and the working size (height, width)."""

    source: Path
    output: Path
    report: Path | None
    shape: tuple[int, int]

    @property
    def work(self) -> Path:
        return work_folder(self.output)


@dataclasses.dataclass(frozen=True)
class _Range:
    """The frames of a planned job, once counted: the input's description (to the range's end, or
    whole), the range [start, end), the flows the run asks for and the ``.flo`` files they come from
    (None: computed)."""

    info: video_io.VideoInfo
    start: int
    end: int
    needed: list[tuple[int, int]]
    flo: list[Path] | None

    @property
    def count(self) -> int:
        return self.end - self.start


def _plan(job: VideoJob) -> _Plan:
    """Everything about ``job`` that can be checked before a frame is decoded beyond the input's first
    or an image loaded: whatever can refuse the run without counting its frames."""
    source, output, report, header = _check(job)
    shape = video_io.fitted_video_shape(header.height, header.width, job.size)
    style_size = job.style_size or job.size
    style_shapes = [images.fitted_shape(*images.image_size(p), style_size) for p in job.styles]
    check_stage_sizes(*shape, style_shapes, job.config, content_name=f"{source}: frames",
                      style_names=[f"{path}: style image" for path in job.styles])
    memory.check_fits(*shape, job.config, f"{source} (frames)", batch=_batch(job))
    return _Plan(source, output, report, shape)


def _range(job: VideoJob, plan: _Plan) -> _Range:
    """The frames of the range, counted and timed as far as its end (all of them, and the file checked
    for truncation, when it is open); the ``.flo`` files it needs."""
    info = video_io.probe(plan.source, until=job.end)
    if job.start >= info.frames:
        raise ValueError(f"{plan.source}: has {info.frames} frame(s); --frames starts at {job.start}")
    end = info.frames if job.end is None else min(job.end, info.frames)
    video = job.video
    needed = needed_flows(end - job.start, video.relative_frames, video.passes, video.mode == "parallel")
    flo = None if job.flow == "dis" else flo_files(job.flow, needed, job.start)
    return _Range(info, job.start, end, needed, flo)


def run_video(job: VideoJob, *, vgg: VGG19 | None = None, log: Callable[[str], None] = lambda message: None,
              notify: Callable[[str], None] = lambda message: None,
              on_frame: Callable[[FrameRecord, int], None] | None = None,
              assign: Callable[[int], bool] = lambda i: True, barrier: Callable[[str], None] = lambda name: None,
              leader: bool = True) -> VideoOutcome:
    """Run ``job`` and write its output (and report); returns the :class:`VideoOutcome` (``stopped``
    when the preview page's Stop ended it: then nothing is written and the work folder is kept).

    on_frame(record, total): after every frame (the progress bar). notify: what must be said
    even when quiet. assign, barrier, leader: a multi-host run's share (see
    :func:`jaxstyle.engine.video.stylize_video`; ``barrier(name)`` waits for every process): only
    the leader prepares the work folder, decodes the frames and, once every process is done with
    the work folder, assembles the output and removes it."""
    config, video = job.config, job.video
    plan = _plan(job)  # from the input's header: its frames are not counted yet
    page = None
    if job.preview is not None and leader:  # before the frames are counted: a page that cannot start leaves nothing
        names = ", ".join(Path(p).name for p in job.styles)
        page = live_page.start(f"{plan.source.name} in the style of {names}", 0, config, job.preview_host,
                               job.preview, notify)
        page.live.report(0, label=f"counting the frames of {plan.source.name}")
    watch = _Watch(page, 0, plan.output, on_frame)
    made, status = leader and not plan.work.exists(), "failed"
    try:
        span = _range(job, plan)
        watch.total = span.count * video.passes
        if page is not None:
            page.live.report(0, total=watch.total, label=f"preparing {span.count} frames")
        digest = input_digest(plan.source)
        styles, masks = _styles(job)
        if vgg is None:
            vgg = load_network(job.weights, pooling=job.pooling, preprocessing=job.preprocessing, log=notify)
        if leader:  # in a multi-host run the leader prepares the shared work folder, the others wait for it
            _prepare(job, plan, span, digest, styles, masks, vgg, log, notify)
        barrier("prepared")
        frames = WorkFrames(plan.work / "input", span.count)
        flows = _flows(job, plan, span.start, frames, digest)
        try:
            flows.prefetch(span.needed)
            store = DiskStore(plan.work)
            begin = time.perf_counter()
            result = stylize_video(frames, styles, vgg=vgg, flow=flows, config=config, video=video, store=store,
                                   on_frame=watch.frame, style_masks=masks,
                                   mesh=batch_mesh() if video.mode == "parallel" else None, group=job.group,
                                   assign=assign, barrier=lambda p: barrier(f"pass-{p}"),
                                   callback=None if page is None else watch.chunk,
                                   steer=None if page is None else lambda step: page.steer(step, log))
            seconds = time.perf_counter() - begin
            if not leader:
                flows.close()
            barrier("finished")  # every process is done with the work folder (the cuts read its frames)
            if not leader:
                return VideoOutcome(result.records, result.cuts, {}, plan.output)
            report = video_report(job, result, frames, flows, store, span.info, plan.shape, seconds)
        finally:
            flows.close()
        _assemble(job, plan, span, [store.path(video.passes - 1, i) for i in range(span.count)])
        if page is not None:
            report["steering"] = page.changes
        if plan.report is not None:
            files.atomic_write(plan.report, lambda f: f.write(json.dumps(report, indent=1).encode()))
        status = "ended"
    except live_page.StopRequested:
        status, done = "stopped", finished_frames(plan.work)
        notify(f"stopped from the preview page: {done} frame(s) finished are kept in {plan.work}; run the same "
               f"command again to resume")
        return VideoOutcome(watch.records, [], {}, plan.output, stopped=True, frames_finished=done, work=plan.work)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception:
        if made and finished_frames(plan.work) == 0:  # found wrong before any frame: nothing of this run stays
            shutil.rmtree(plan.work, ignore_errors=True)
        raise
    finally:
        if page is not None:
            page.close(status)
    shutil.rmtree(plan.work, ignore_errors=True)
    height, width = plan.shape
    pace = speed(result.records, video.passes, seconds)
    log(f"wrote {plan.output} ({span.count} frames, {width}x{height}; {pace.said()}; "
        f"warping error {report['warping_error']['output']:.5f}, input {report['warping_error']['input']:.5f})")
    return VideoOutcome(result.records, result.cuts, report, plan.output)


def _styles(job: VideoJob) -> tuple[list, list | None]:
    """The style images at their working size, and their masks (None: none)."""
    style_size = job.style_size or job.size
    styles = [images.load_image(path, max_size=style_size) for path in job.styles]
    if not job.style_masks:
        return styles, None
    return styles, [images.resize_mask_to(images.load_image(path), *style.shape[:2])
                    for path, style in zip(job.style_masks, styles)]


def _prepare(job: VideoJob, plan: _Plan, span: _Range, digest: str, styles, masks, vgg: VGG19, log,
             notify) -> None:
    """The work folder, new or resumed (what made its frames must be what makes them now), with the
    range's frames decoded."""
    settings = video_settings(input=digest, styles=styles, masks=masks, vgg=vgg,
                              flo=None if span.flo is None else files_digest(span.flo), config=job.config,
                              video=job.video, shape=plan.shape, style_size=job.style_size or job.size,
                              frames=(span.start, span.end), flow=job.flow, dis_preset=job.dis_preset)
    names = {"input": [job.input], "style images": list(job.styles), "style masks": list(job.style_masks or ())}
    prepare(plan.work, settings, overwrite=job.overwrite, names=names, notify=notify)
    decode(plan.source, plan.work / "input", job.size, plan.shape, span.start, span.end, log)


def _flows(job: VideoJob, plan: _Plan, start: int, frames: WorkFrames, digest: str) -> FlowProvider:
    if job.flow != "dis":
        return FlowProvider(RawFrames(frames), pattern=job.flow, offset=start)
    height, width = plan.shape
    return FlowProvider(RawFrames(frames), compute=DISFlow(job.dis_preset), offset=start,
                        cache=cache_dir() / "flow" / f"{digest}-{height}x{width}-dis-{job.dis_preset}")


def _assemble(job: VideoJob, plan: _Plan, span: _Range, outputs: list[Path]) -> None:
    """The output from the last pass's frames: a folder of PNGs, or a video whose frames keep their
    input frames' times (a folder input's: ``fps``) with the sound of the range's time span."""
    if not video_io.is_video_output(plan.output):
        write_folder(plan.output, outputs, job.overwrite)
        return
    info, start, end = span.info, span.start, span.end
    fps = info.fps if info.fps is not None else job.fps
    times, stop = info.timestamps, None
    if times is not None:  # the range shows from its first frame's time until the next frame's (or the end)
        stop = times[end] if end < info.frames else info.end_s
        times = times[start:end]
    audio = plan.source if (info.has_audio and plan.source.is_file()) else None
    whole = start == 0 and end == info.frames and info.complete  # the whole track: copied as it is
    video_io.write_video(plan.output, outputs, fps, timestamps=times, end_s=stop, audio_from=audio,
                         audio_start_s=0.0 if times is None else float(times[0]),
                         audio_end_s=None if whole or stop is None else float(stop), crf=job.crf)


class _Watch:
    """The job's view of the engine's progress: the caller's ``on_frame``, the preview page, and
    the records of the frames finished so far (for a stopped run's outcome)."""

    def __init__(self, page, total: int, output: Path, on_frame):
        self.page, self.total, self.output, self.on_frame = page, total, output, on_frame
        self.records: list[FrameRecord] = []
        self.current = None

    @property
    def done(self) -> int:
        return len(self.records)

    def chunk(self, label: str, progress) -> None:
        self.current = progress.image
        self.page.live.report(self.done, image=progress.image, label=f"{label}: step {progress.step}/{progress.total}",
                              memory=memory.in_use())
        self.page.controls(self.done, self.current, self.output)

    def frame(self, record: FrameRecord, image) -> None:
        self.records.append(record)
        if self.page is not None:
            label = f"pass {record.pass_index + 1} frame {record.index}"
            self.page.live.report(self.done, terms=record.losses or None, label=f"{label}: {record.start}",
                                  image=(lambda image=image: image) if image is not None else None,
                                  memory=memory.in_use())
            if image is not None:
                self.page.live.finished_item(label, lambda image=image: image)
            self.page.controls(self.done, self.current or ((lambda image=image: image) if image is not None else None),
                               self.output)
        if self.on_frame is not None:
            self.on_frame(record, self.total)
