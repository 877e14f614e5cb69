"""`jaxstyle apply`: a trained feed-forward model over images, folders, manifests, buckets and videos
(:mod:`jaxstyle.jobs.apply`).

Exit 0 when every output is written (or kept with --skip-existing), 1 when an input failed (each
named on stderr; the others are written), 2 for a run refused before any work, 130 when interrupted
(what is written is whole; --skip-existing resumes)."""

from __future__ import annotations

from jaxstyle.cli import common
from jaxstyle.cli.interrupts import stop_if_interrupted
from jaxstyle.jobs.apply import ApplyJob, run_apply
from jaxstyle.jobs.feedforward_model import AS_TRAINED


def run(args) -> int:
    common.keep_compiled_programs()
    colors = {None: AS_TRAINED, "none": None}.get(args.preserve_colors, args.preserve_colors)
    job = ApplyJob(model=args.model, inputs=tuple(args.inputs), output=args.output, size=args.size, style=args.style,
                   style_mix=args.style_mix, preserve_colors=colors, batch=args.batch, overwrite=args.overwrite,
                   skip_existing=args.skip_existing, crf=args.crf)
    bar = Progress(args)
    try:
        outcome = run_apply(job, log=lambda m: common.log(args, m), on_total=bar.more, on_done=bar.done)
    except KeyboardInterrupt:
        bar.close()
        common.notify(f"interrupted: {bar.count} done; what is written is whole, the same command with "
                      f"--skip-existing does the rest")
        raise
    finally:
        bar.close()
    for source, reason in outcome.failed:
        common.notify(f"failed: {reason if reason.startswith(source) else f'{source}: {reason}'}")
    done = outcome.images + outcome.frames
    rate = f" ({done / outcome.seconds:.1f}/s)" if outcome.seconds > 0 else ""
    frames = f" and {outcome.frames} video frames" if outcome.frames else ""
    kept = f", {len(outcome.existing)} kept" if outcome.existing else ""
    failed = f", {len(outcome.failed)} failed" if outcome.failed else ""
    images = f"{outcome.images} image{'' if outcome.images == 1 else 's'}"
    common.log(args, f"{len(outcome.written)} written to {args.output}{kept}{failed}: {images}{frames} in "
                     f"{outcome.seconds:.1f} s{rate}")
    return 1 if outcome.failed else 0


class Progress:
    """A bar of the images and frames done (tqdm shows the rate), whose total grows as videos are
    counted; nothing when quiet or not on a terminal."""

    def __init__(self, args):
        self.args, self.bar, self.count = args, None, 0

    def more(self, count: int) -> None:
        if self.bar is None:
            self.bar = common.progress_bar(self.args, count, "image")
        elif count:
            self.bar.total += count
            self.bar.refresh()

    def done(self, count: int) -> None:
        self.count += count
        if self.bar is not None:
            self.bar.update(count)
        stop_if_interrupted()  # after the outputs are written: they are whole

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
