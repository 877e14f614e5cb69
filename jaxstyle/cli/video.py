"""`jaxstyle video`: a clip or a folder of frames with temporal consistency (:mod:`jaxstyle.jobs.video`).

Exit 130 when interrupted or stopped from the preview page: no output is written, the finished
frames stay in the work folder beside the output (:func:`jaxstyle.jobs.video.work_folder`), and the
same command resumes."""

from __future__ import annotations

from pathlib import Path

from jaxstyle.cli import common
from jaxstyle.cli.interrupts import stop_if_interrupted
from jaxstyle.config import VideoConfig
from jaxstyle.jobs import distributed
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from jaxstyle.jobs.video_work import finished_frames

PARALLEL_PASSES = 4
VIDEO_SIZE = 512


def run(args) -> int:
    job = video_job(args)
    share = {}
    if args.distributed:
        index, count = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        share = {"assign": lambda i: i % count == index, "leader": index == 0,
                 "barrier": lambda name: distributed.barrier(f"jaxstyle-video-{name}")}
    common.keep_compiled_programs()
    progress = FrameProgress(args)
    try:
        outcome = run_video(job, on_frame=progress.frame, notify=common.notify, log=lambda m: common.log(args, m),
                            **share)
    except KeyboardInterrupt:
        progress.close()
        work = work_folder(Path(job.output).expanduser())
        done = finished_frames(work) if work.is_dir() else 0
        if done:
            common.notify(f"interrupted: {done} finished frame(s) are kept in {work}; run the same command again "
                          f"to resume")
        raise
    finally:
        progress.close()
    if getattr(outcome, "stopped", False) or outcome.report.get("stopped"):
        # Stop on the preview page: the job has said how many frames are kept where, and that the same
        # command resumes; no output was written, so `jaxstyle video ... && upload` must not go on.
        return common.EXIT_INTERRUPTED
    return 0


def video_job(args) -> VideoJob:
    """The :class:`VideoJob` of the options, refusing those that do not go together."""
    if args.scales or args.min_scale:
        raise ValueError("--scales/--min-scale: a video runs at one scale")
    args.size = args.size or VIDEO_SIZE
    config = common.style_config(args, default_coarse=False)
    parallel = args.parallel
    if args.distributed and not parallel:
        raise ValueError("--distributed needs --parallel (the sequential mode is one frame after another)")
    if args.distributed and args.preview is not None:
        raise ValueError("--preview watches one process: it is not for --distributed runs")
    if args.frames_per_batch and not parallel:
        raise ValueError("--frames-per-batch applies to --parallel")
    passes = args.passes or (PARALLEL_PASSES if parallel else 1)
    if passes == 1 and (args.temporal_from_pass or args.blend != VideoConfig.blend):
        raise ValueError("--temporal-from-pass and --blend apply to several --passes")
    video = VideoConfig(temporal_weight=args.temporal_weight, relative_frames=args.long_term,
                        first_iterations=args.first_iterations, passes=passes,
                        temporal_from_pass=args.temporal_from_pass, blend=args.blend, cut_threshold=args.cut_threshold,
                        mode="parallel" if parallel else "sequential")
    start, end = args.frames
    return VideoJob(input=args.input, styles=tuple(args.style), output=args.output, config=config, video=video,
                    size=args.size, style_size=common.style_size(args), start=start, end=end, fps=args.fps,
                    crf=args.crf, flow=args.flow, dis_preset=args.dis_preset, report=args.report,
                    overwrite=args.overwrite, style_masks=tuple(args.style_masks) if args.style_masks else None,
                    group=args.frames_per_batch, weights=common.network_path(args), preprocessing=args.preprocessing,
                    pooling=args.pooling, preview=args.preview, preview_host=args.preview_host)


class FrameProgress:
    """After every finished frame: the progress bar (made at the first, when the total is known) or a log line."""

    def __init__(self, args):
        self.args, self.bar = args, None

    def frame(self, record, total: int) -> None:
        if self.bar is None:
            self.bar = common.progress_bar(self.args, total, "frame")
        if self.bar is not None:
            self.bar.update(1)
            if record.losses:
                self.bar.set_postfix(loss=f"{record.losses['total']:.4g}", start=record.start)
        else:
            what = "resumed" if record.start == "resumed" else (
                f"{record.start}, {record.steps} steps, {record.seconds:.1f} s, loss {record.losses['total']:.6g}")
            common.log(self.args, f"pass {record.pass_index + 1} frame {record.index}: {what}")
        stop_if_interrupted()  # the frame is written: a resumed run starts after it

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
