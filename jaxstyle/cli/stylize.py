"""`jaxstyle stylize`: one content image in the style of one or more images, to one output
(:mod:`jaxstyle.jobs.single`)."""

from __future__ import annotations

from jaxstyle.cli import common
from jaxstyle.cli.interrupts import stop_if_interrupted
from jaxstyle.config import INITS
from jaxstyle.jobs.single import SingleJob, run_single


def run(args) -> int:
    config = common.style_config(args)
    job = SingleJob(content=args.content, styles=tuple(args.style), output=args.output, config=config, size=args.size,
                    style_size=common.style_size(args), content_mask=args.content_mask,
                    style_masks=tuple(args.style_masks) if args.style_masks else None,
                    init_image=None if args.init in INITS else args.init, plot=args.plot, save_every=args.save_every,
                    overwrite=args.overwrite, shard_image=args.shard_image,
                    save_on_interrupt=not args.no_save_on_interrupt, weights=common.network_path(args),
                    preprocessing=args.preprocessing, pooling=args.pooling, preview=args.preview,
                    preview_host=args.preview_host, block_size=args.block_size)
    common.keep_compiled_programs()
    bar = common.progress_bar(args, config.total_iterations, "step")

    def on_progress(progress) -> None:
        stop_if_interrupted()  # the job has kept the image: it is saved as the partial result
        if bar is not None:
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.loss:.4g}")
        else:
            common.log(args, f"step {progress.step}/{progress.total} loss {progress.loss:.6g}")

    def notify(message: str) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        common.notify(message)

    try:
        run_single(job, on_progress=on_progress, notify=notify, log=lambda m: common.log(args, m),
                   notes=common.notes(args))
    finally:
        if bar is not None:
            bar.close()
    return 0  # also after the page's Stop: the job has written the image as the output
