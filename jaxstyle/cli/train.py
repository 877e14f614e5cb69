"""`jaxstyle train`: a feed-forward network for one or more styles (:mod:`jaxstyle.jobs.train`).

Exit 0 when the model is written; 130 when interrupted (Ctrl-C, SIGTERM) or stopped from the preview
page: a checkpoint is kept, one line says where, and the same command resumes from it."""

from __future__ import annotations

from jaxstyle.cli import common
from jaxstyle.cli.interrupts import stop_if_interrupted
from jaxstyle.config import StyleConfig
from jaxstyle.jobs.train import TrainJob, TrainProgress, run_train


def run(args) -> int:
    job = TrainJob(styles=tuple(args.style), contents=args.contents, output=args.output, config=objective(args),
                   size=args.size, style_size=args.style_size, batch=args.batch, steps=args.steps,
                   learning_rate=args.learning_rate, width=args.width, residual_blocks=args.residual_blocks,
                   seed=args.seed, temporal_weight=args.temporal_weight, checkpoint_every=args.checkpoint_every,
                   checkpoints=args.checkpoints, threads=args.threads, overwrite=args.overwrite, plot=args.plot,
                   probes=tuple(args.probes) if args.probes else None, weights=common.network_path(args),
                   preprocessing=args.preprocessing, pooling=args.pooling, preview=args.preview,
                   preview_host=args.preview_host, distributed=args.distributed, coordinator=args.coordinator,
                   num_processes=args.num_processes, process_id=args.process_id)
    common.keep_compiled_programs()
    bar, made = None, False
    every = max(1, min(50, args.steps // 20))

    def on_step(progress: TrainProgress) -> None:
        nonlocal bar, made
        if not made:  # at the first step: the notices before it (a resume) stay above the bar
            made, bar = True, common.progress_bar(args, progress.total, "step")
            if bar is not None:  # a resumed run: its rate and ETA count from where it resumed
                bar.initial = bar.n = bar.last_print_n = progress.step - 1
        rate = "" if progress.images_per_second is None else f"{progress.images_per_second:.3g}"
        if bar is not None:
            bar.update(progress.step - bar.n)  # a resumed run starts where it stopped
            bar.set_postfix(loss=f"{progress.loss:.4g}", images_s=rate)
        elif progress.step % every == 0 or progress.step == progress.total:
            common.log(args, f"step {progress.step}/{progress.total} loss {progress.loss:.6g}"
                             + (f" ({rate} images/s)" if rate else ""))
        stop_if_interrupted()

    def notify(message: str) -> None:
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        common.notify(message)

    try:
        result = run_train(job, callback=on_step, log=lambda m: common.log(args, m), notify=notify)
    except KeyboardInterrupt:  # the job has kept a checkpoint and said where, in one line
        return common.EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    return common.EXIT_INTERRUPTED if result.status == "stopped" else 0


def objective(args) -> StyleConfig:
    """The :class:`StyleConfig` of the objective options (the loss; no optimisation of an image)."""
    return StyleConfig(content_layers=args.content_layers, style_layers=args.style_layers,
                       content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
                       content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
                       style_loss=args.style_loss, preserve_colors=args.preserve_colors, precision=args.precision,
                       conv=args.conv, remat=args.remat, normalize_gradients=args.normalize_gradients, seed=args.seed)
