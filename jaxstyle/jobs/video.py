"""A video, file in and file out: what ``jaxstyle video`` does, usable from Python.

Everything is checked first: the input (a video stream, or a folder of frames), the frame range,
the style images, the output (a video file by its suffix, or a folder of PNGs; never an input,
never overwritten unless asked) and the report. Then:

1. The frames of the range are decoded once, at the working size, into a work folder beside the
   output (``<output>.jaxstyle-work``), as ``input/frame_NNNNN.npy``.
2. The engine (:func:`jaxstyle.engine.video.stylize_video`) runs; every finished frame is written
   atomically to ``pass_P/frame_NNNNN.png`` in the work folder. The optical flow is computed on a
   host thread ahead of the device (:mod:`jaxstyle.jobs.flows`) and cached by input.
3. The last pass's frames are assembled: a video file (H.264, the input's frame rate, the input's
   audio for the range) or a folder of PNGs, written under a temporary name and renamed. The work
   folder is then removed.

Nothing is lost: an interrupt (Ctrl-C, SIGTERM) or a crash leaves the finished frames in the work
folder, and the same command resumes from there (its ``settings.json`` must match: a different
command refuses to mix its frames in, unless ``overwrite``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.engine import memory
from jaxstyle.engine.sharding import batch_mesh
from jaxstyle.engine.video import FrameRecord, stylize_video
from jaxstyle.flow import DISFlow, require_opencv
from jaxstyle.io import files, images, storage
from jaxstyle.io import video as video_io
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs.flows import FlowProvider, needed_flows
from jaxstyle.jobs.network import load_network
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.inputs import check_stage_sizes
from jaxstyle.objective.temporal import reliability, warping_error
from jaxstyle.weights.fetch import cache_dir

WORK_SUFFIX = ".jaxstyle-work"


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
    """What a finished job did: its records (every frame of every pass), the cuts, the report
    (the same dict as the JSON file) and the output written."""

    records: list[FrameRecord]
    cuts: list[int]
    report: dict
    output: Path


def _local(path: str, what: str) -> Path:
    if storage.is_url(path):
        raise ValueError(f"{path}: {what} must be a local path (videos are not read from or written to URLs)")
    return Path(path).expanduser()


def work_folder(output: Path) -> Path:
    """Where an unfinished run keeps its frames: beside the output."""
    return output.with_name(output.name + WORK_SUFFIX)


def _digest_file(path: Path, h) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def input_digest(path: Path) -> str:
    """The input's bytes' digest (a folder's: its frame files' names and bytes, in order)."""
    h = hashlib.blake2b(digest_size=16)
    if path.is_dir():
        for frame in video_io.frame_files(path):
            h.update(frame.name.encode())
            _digest_file(frame, h)
    else:
        _digest_file(path, h)
    return h.hexdigest()


def _settings(job: VideoJob, digest: str, styles: list[str], shape: tuple[int, int], end: int) -> dict:
    """What decides the frames: a resumed run must have made its frames with the same."""
    return {"input": digest, "styles": styles, "style_size": job.style_size or job.size, "shape": list(shape),
            "start": job.start, "end": end,
            "config": repr(job.config), "video": repr(job.video), "flow": job.flow, "dis_preset": job.dis_preset,
            "weights": job.weights, "preprocessing": job.preprocessing, "pooling": job.pooling,
            "style_masks": list(job.style_masks or ())}


class DiskStore:
    """The engine's :class:`~jaxstyle.engine.video.FrameStore` in the work folder: one PNG per frame
    and pass, written atomically, and the records as JSON lines."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, pass_index: int, index: int) -> Path:
        return self.folder / f"pass_{pass_index}" / f"frame_{index:05d}.png"

    def get(self, pass_index: int, index: int) -> np.ndarray | None:
        path = self.path(pass_index, index)
        return images.load_image(path) if path.is_file() else None

    def put(self, pass_index: int, index: int, image: np.ndarray, record: FrameRecord) -> None:
        path = self.path(pass_index, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save_image(path, image)
        with (self.folder / "records.jsonl").open("a") as f:
            f.write("\n" + json.dumps(dataclasses.asdict(record)))  # a line cut by a kill spoils no other

    def records(self) -> dict[tuple[int, int], FrameRecord]:
        """The newest record of every frame and pass written so far (a resumed run's included)."""
        out = {}
        path = self.folder / "records.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = FrameRecord(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a kill
                out[record.pass_index, record.index] = record
        return out


class WorkFrames(Sequence):
    """The decoded working frames of the range, read back from the work folder as float32 [0, 1]."""

    def __init__(self, folder: Path, count: int):
        self.folder, self.count = folder, count
        self._recent: dict[int, np.ndarray] = {}

    def path(self, index: int) -> Path:
        return self.folder / f"frame_{index:05d}.npy"

    def raw(self, index: int) -> np.ndarray:
        return np.load(self.path(index))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        if index not in self._recent:
            if len(self._recent) >= 64:
                self._recent.pop(next(iter(self._recent)))
            self._recent[index] = self.raw(index).astype(np.float32) / 255.0
        return self._recent[index]


def _is_frame_file(path: Path) -> bool:
    return path.is_file() and path.name.startswith("frame_") and path.suffix == ".png"


def _check(job: VideoJob):
    """(input, output, report path, info, end) of the job, checked."""
    if not job.styles:
        raise ValueError("expected at least one style image, got none")
    source = _local(job.input, "the input").resolve()
    output = _local(job.output, "the output").resolve()
    if job.flow == "dis":
        require_opencv()
    info = video_io.probe(source)
    start, end = job.start, info.frames if job.end is None else job.end
    if start < 0 or (job.end is not None and end <= start):
        raise ValueError(f"--frames: expected 0 <= START < END, got {start}:{job.end}")
    if start >= info.frames:
        raise ValueError(f"{source}: has {info.frames} frame(s); --frames starts at {start}")
    end = min(end, info.frames)
    video_out = video_io.is_video_output(output)
    if video_out and info.fps is None and job.fps is None:
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
        raise ValueError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.is_dir() and (video_out or any(not _is_frame_file(p) for p in output.iterdir())):
        raise ValueError(f"{output}: a folder with other files than frame_NNNNN.png; not replaced")
    if not output.parent.is_dir():
        raise ValueError(f"{output.parent}: no such folder for the output")
    report = None
    if job.report:
        report = _local(job.report, "the report")
        if report.suffix.lower() != ".json":
            raise ValueError(f"{job.report}: --report writes a .json file")
        if report.exists() and not job.overwrite:
            raise ValueError(f"{report}: already exists (pass --overwrite to replace it)")
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
    return source, output, report, info, end


def run_video(job: VideoJob, *, vgg: VGG19 | None = None, log: Callable[[str], None] = lambda message: None,
              notify: Callable[[str], None] = lambda message: None,
              on_frame: Callable[[FrameRecord, int], None] | None = None,
              assign: Callable[[int], bool] = lambda i: True, barrier: Callable[[str], None] = lambda name: None,
              leader: bool = True) -> VideoOutcome:
    """Run ``job`` and write its output (and report); returns the :class:`VideoOutcome`.

    on_frame(record, total): after every frame (the progress bar). notify: what must be said
    even when quiet. assign, barrier, leader: a multi-host run's share (see
    :func:`jaxstyle.engine.video.stylize_video`; ``barrier(name)`` waits for every process): only
    the leader prepares the work folder, decodes the frames and assembles the output."""
    config, video = job.config, job.video
    source, output, report_path, info, end = _check(job)
    height, width = video_io.fitted_video_shape(info.height, info.width, job.size)
    style_size = job.style_size or job.size
    style_shapes = [images.fitted_shape(*images.image_size(p), style_size) for p in job.styles]
    check_stage_sizes(height, width, style_shapes, config, content_name=f"{source}: frames",
                      style_names=[f"{path}: style image" for path in job.styles])
    batch = 1
    if video.mode == "parallel":  # a group of frames at once: per device, or all on one host's memory
        devices = jax.local_devices()
        group = -(-(job.group or len(devices)) // len(devices)) * len(devices)
        batch = group if devices[0].platform == "cpu" else group // len(devices)
    memory.check_fits(height, width, config, f"{source} (frames)", batch=batch)
    styles = [images.load_image(path, max_size=style_size) for path in job.styles]
    masks = None
    if job.style_masks:
        masks = [images.resize_mask_to(images.load_image(path), *style.shape[:2])
                 for path, style in zip(job.style_masks, styles)]
    count = end - job.start
    digest = input_digest(source)
    settings = _settings(job, digest, [input_digest(Path(p)) for p in job.styles], (height, width), end)
    work = work_folder(output)
    if leader:  # in a multi-host run the leader prepares the shared work folder, the others wait for it
        _prepare(work, settings, job.overwrite, notify)
        _decode(source, work / "input", job, (height, width), end, log)
    barrier("prepared")
    frames = WorkFrames(work / "input", count)
    if vgg is None:
        vgg = load_network(job.weights, pooling=job.pooling, preprocessing=job.preprocessing, log=notify)
    flows = FlowProvider(
        _RawFrames(frames),
        compute=DISFlow(job.dis_preset) if job.flow == "dis" else None,
        pattern=None if job.flow == "dis" else job.flow, offset=job.start,
        cache=cache_dir() / "flow" / f"{digest}-{height}x{width}-dis-{job.dis_preset}" if job.flow == "dis" else None)
    page = None
    try:
        needed = needed_flows(count, video.relative_frames, video.passes, video.mode == "parallel")
        flows.check_files(needed)
        flows.prefetch(needed)
        total = count * video.passes
        mesh = batch_mesh() if video.mode == "parallel" else None
        store = DiskStore(work)
        if job.preview is not None and leader:
            names = ", ".join(Path(p).name for p in job.styles)
            page = live_page.start(f"{source.name} in the style of {names}", total, config, job.preview_host,
                                   job.preview, notify)
        watch = _Watch(page, total, output, on_frame)
        begin = time.perf_counter()
        result = stylize_video(frames, styles, vgg=vgg, flow=flows, config=config, video=video, store=store,
                               on_frame=watch.frame, style_masks=masks, mesh=mesh, group=job.group, assign=assign,
                               barrier=lambda p: barrier(f"pass-{p}"),
                               callback=None if page is None else watch.chunk,
                               steer=None if page is None else lambda step: page.steer(step, log))
        seconds = time.perf_counter() - begin
        if not leader:
            return VideoOutcome(result.records, result.cuts, {}, output)
        last = video.passes - 1
        outputs = [store.path(last, i) for i in range(count)]
        report = _report(job, result, frames, flows, store, info, (height, width), seconds)
        fps = info.fps if info.fps is not None else job.fps
        if video_io.is_video_output(output):
            audio = source if (info.has_audio and source.is_file()) else None
            whole = job.start == 0 and end == info.frames  # the whole track: copied as it is
            video_io.write_video(output, outputs, fps, audio_from=audio, audio_start_s=float(job.start / fps),
                                 audio_end_s=None if whole else float(end / fps), crf=job.crf)
        else:
            _write_folder(output, outputs, job.overwrite)
        if page is not None:
            report["steering"] = page.changes
        if report_path is not None:
            files.atomic_write(report_path, lambda f: f.write(json.dumps(report, indent=1).encode()))
    except live_page.StopRequested:
        notify(f"stopped from the preview page: {watch.done} frame(s) finished are kept in {work}; run the same "
               f"command again to resume")
        return VideoOutcome([], [], {"stopped": True, "frames_done": watch.done}, output)
    finally:
        flows.close()
        if page is not None:
            page.close("ended")
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {output} ({count} frames, {width}x{height}, {seconds:.1f} s, "
        f"{count / max(seconds, 1e-9):.2f} frames/s; warping error {report['warping_error']['output']:.5f}, "
        f"input {report['warping_error']['input']:.5f})")
    return VideoOutcome(result.records, result.cuts, report, output)


def _prepare(work: Path, settings: dict, overwrite: bool, notify) -> None:
    """The work folder, new, or an unfinished run's with the same settings (resumed)."""
    if work.exists():
        previous = None
        try:
            previous = json.loads((work / "settings.json").read_text())
        except (OSError, ValueError):
            pass
        if overwrite and previous != settings:
            shutil.rmtree(work)
        elif previous != settings:
            raise ValueError(f"{work}: holds an unfinished run of other settings (pass --overwrite to discard it, "
                             f"or run the command that made it)")
        else:
            notify(f"resuming from {work}")
    work.mkdir(exist_ok=True)
    files.atomic_write(work / "settings.json", lambda f: f.write(json.dumps(settings, indent=1).encode()))


class _Watch:
    """The job's view of the engine's progress: the caller's ``on_frame`` and the preview page."""

    def __init__(self, page, total: int, output: Path, on_frame):
        self.page, self.total, self.output, self.on_frame = page, total, output, on_frame
        self.done = 0
        self.current = None

    def chunk(self, label: str, progress) -> None:
        self.current = progress.image
        self.page.live.report(self.done, image=progress.image, label=f"{label}: step {progress.step}/{progress.total}",
                              memory=memory.in_use())
        self.page.controls(self.done, self.current, self.output)

    def frame(self, record: FrameRecord, image) -> None:
        self.done += 1
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


class _RawFrames(Sequence):
    """The working frames as uint8 (what the flow is computed from)."""

    def __init__(self, frames: WorkFrames):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.frames.raw(index)


def _decode(source: Path, folder: Path, job: VideoJob, shape: tuple[int, int], end: int, log) -> WorkFrames:
    """The range's frames at ``shape``, decoded once into ``folder`` (kept for a resumed run)."""
    folder.mkdir(exist_ok=True)
    count = end - job.start
    frames = WorkFrames(folder, count)
    if all(frames.path(i).is_file() for i in range(count)):
        return frames
    decoded = 0
    for index, frame in video_io.read_frames(source, job.size, start=job.start, end=end):
        if frame.shape[:2] != shape:
            raise ValueError(f"{source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first "
                             f"{shape[1]}x{shape[0]}: every frame must have one size")
        target = frames.path(index - job.start)
        files.atomic_write(target, lambda f, frame=frame: np.save(f, images.to_uint8(frame)))
        decoded += 1
    if decoded < count:
        raise ValueError(f"{source}: expected {count} frames from {job.start}, decoded {decoded}")
    log(f"decoded {count} frames at {shape[1]}x{shape[0]}")
    return frames


def _write_folder(output: Path, frames: list[Path], overwrite: bool) -> None:
    """The frames as ``frame_00000.png`` ... in a new folder, renamed into place when complete."""
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for i, frame in enumerate(frames):
            shutil.copyfile(frame, partial / f"frame_{i:05d}.png")
        if output.exists() and overwrite:
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        partial.rename(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def temporal_error(frames: Sequence, flows: Callable[[int, int], np.ndarray], cuts: Sequence[int] = ()) -> float:
    """The mean warping error (Lai et al. 2018) of a sequence of frames [H, W, 3] in [0, 1] over
    its neighbouring pairs: each later frame warped onto the earlier with the input's flow, over the
    pixels the input's forward-backward check finds unoccluded. Pairs across a scene cut (``cuts``:
    the first frames of new shots) are left out."""
    errors = []
    for t in range(len(frames) - 1):
        if t + 1 in cuts:
            continue
        forward, backward = jnp.asarray(flows(t, t + 1)), jnp.asarray(flows(t + 1, t))
        mask = reliability(forward, backward)
        errors.append(float(warping_error(jnp.asarray(frames[t + 1]), jnp.asarray(frames[t]), forward, mask)))
    return float(np.mean(errors)) if errors else 0.0


class _Stored(Sequence):
    def __init__(self, store: DiskStore, pass_index: int, count: int):
        self.store, self.pass_index, self.count = store, pass_index, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        return self.store.get(self.pass_index, index)


def _report(job: VideoJob, result, frames: WorkFrames, flows, store: DiskStore, info, shape, seconds: float) -> dict:
    stored = store.records()
    last = [stored[key] for key in sorted(stored) if key[0] == result.passes - 1]
    mean = lambda key: float(np.mean([r.losses[key] for r in last])) if last else math.nan  # noqa: E731
    count = len(frames)
    return {
        "input": str(job.input), "styles": list(job.styles), "output": str(job.output),
        "frames": {"start": job.start, "end": job.start + count, "count": count},
        "size": {"width": shape[1], "height": shape[0]}, "fps": None if info.fps is None else float(info.fps),
        "mode": job.video.mode, "passes": job.video.passes, "config": repr(job.config), "video": repr(job.video),
        "flow": job.flow if job.flow != "dis" else f"dis ({job.dis_preset})",
        "cuts": [c + job.start for c in result.cuts],
        "warping_error": {"output": temporal_error(_Stored(store, result.passes - 1, count), flows, result.cuts),
                          "input": temporal_error(frames, flows, result.cuts)},
        "mean_losses": {k: mean(k) for k in ("content", "style", "temporal", "tv", "total")},
        "seconds": seconds, "frames_per_second": count / max(seconds, 1e-9),
        "frames_computed": len(last), "flows_computed": flows.computed,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()]},
        "records": [dataclasses.asdict(r) for r in result.records],
    }
