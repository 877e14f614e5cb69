"""One run, files in and files out: what ``jaxstyle stylize`` does, usable from Python.

Everything is checked before any pixel is decoded: the output (format, folder, not an input,
not overwritten unless asked), the masks and start image named, each image's size from its
header, and the memory the run needs (per tile with ``shard_image``). Then the preview page starts
(one that cannot start stops the job before anything is loaded), the images are loaded, the engine
runs (:func:`jaxstyle.engine.stylize.stylize`), and the result is written atomically.
Intermediate images go to ``<output stem>_steps/step_NNNNN.png`` every ``save_every`` steps
(counted over all stages); on an interrupt the latest image is written to the output, and the
interrupt goes on to the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.engine import memory
from jaxstyle.engine.planner import plan_evaluation
from jaxstyle.engine.run import Progress, StyleResult
from jaxstyle.engine.sharding import spatial_grid, spatial_mesh
from jaxstyle.engine.stylize import stylize
from jaxstyle.io import images, plot, storage
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs.network import load_network
from jaxstyle.model.vgg import VGG19
from jaxstyle.objective.inputs import check_stage_sizes


@dataclasses.dataclass(frozen=True)
class SingleJob:
    """content, styles, output: paths or URLs. size: the output's longest side; style_size: the
    style images' (default ``size``). content_mask, style_masks, init_image: paths (``init_image``
    overrides ``config.init``). plot: a .png for the loss curves. save_every: also save every N
    steps. shard_image: split the image over all local devices. save_on_interrupt: write the
    latest image to the output when interrupted. weights, preprocessing, pooling: the network
    (default: the cached weights). preview: serve the live page (:mod:`jaxstyle.jobs.live`) on this
    port (0: any free one) of ``preview_host``. block_size: block-by-block evaluation, "auto" (when the
    whole image does not fit), a block size in px (forced) or None (never):
    :func:`jaxstyle.engine.planner.plan_evaluation`."""

    content: str
    styles: tuple[str, ...]
    output: str
    config: StyleConfig = StyleConfig()
    size: int = 512
    style_size: int | None = None
    content_mask: str | None = None
    style_masks: tuple[str, ...] | None = None
    init_image: str | None = None
    plot: str | None = None
    save_every: int | None = None
    overwrite: bool = False
    shard_image: bool = False
    save_on_interrupt: bool = True
    weights: str | None = None
    preprocessing: str | None = None
    pooling: str = "max"
    preview: int | None = None
    preview_host: str = "127.0.0.1"
    block_size: int | str | None = "auto"


def refuse_overwrite(path: storage.Location, overwrite: bool) -> None:
    """ValueError when ``path`` exists and may not be replaced."""
    if not overwrite and storage.exists(path):
        raise ValueError(f"{path}: already exists (pass --overwrite to replace it)")


def _check(job: SingleJob) -> tuple[storage.Location, storage.Location | None, storage.Location]:
    """The job's files, checked: (output, plot, steps folder)."""
    if not job.styles:
        raise ValueError("expected at least one style image, got none")
    output = storage.location(job.output)
    images.check_output_path(output)
    refuse_overwrite(output, job.overwrite)
    if job.style_masks is not None and len(job.style_masks) != len(job.styles):
        raise ValueError(f"--style-masks: expected {len(job.styles)} masks (one per style image), "
                         f"got {len(job.style_masks)}")
    if job.content_mask and len(job.styles) < 2:
        raise ValueError("--content-mask splits the image between styles: give at least two style images")
    inputs = [job.content, *job.styles, *(job.style_masks or []), *([job.content_mask] if job.content_mask else []),
              *([job.init_image] if job.init_image else [])]
    plot_path = storage.location(job.plot) if job.plot else None
    for target in (output, plot_path):
        for src in map(storage.location, inputs):
            if target is not None and storage.same_file(target, src):
                raise ValueError(f"{target}: output would overwrite input {src}")
    if plot_path is not None:
        plot.require_matplotlib()
        if plot_path.suffix.lower() != ".png":
            raise ValueError(f"{job.plot}: --plot writes a .png")
        refuse_overwrite(plot_path, job.overwrite)
    steps_dir = output.with_name(f"{output.stem}_steps")
    if (job.save_every and not job.overwrite and storage.is_folder(steps_dir)
            and storage.list_files(steps_dir)):
        raise ValueError(f"{steps_dir}: exists and is not empty (pass --overwrite to reuse it)")
    job.config.blend_weights(len(job.styles))  # one weight per style image, or say so now
    return output, plot_path, steps_dir


def run_single(job: SingleJob, *, vgg: VGG19 | None = None, on_progress: Callable[[Progress], None] | None = None,
               callback_every: int | None = None, log: Callable[[str], None] = lambda message: None,
               notify: Callable[[str], None] = lambda message: None, notes: tuple[str, ...] = ()) -> StyleResult:
    """Run ``job``; returns the engine's result (the image is also written to ``job.output``).

    on_progress: called after every chunk of steps (``callback_every``; default ``save_every``,
    else about 20 reports a run), after this job has kept the image for an interrupt; raising
    KeyboardInterrupt there stops the run like a signal. log: progress messages; notify: what
    must be said even when quiet (a fetch of the weights, a partial result written on an interrupt);
    notes: the caller's lines about the run (e.g. a default it chose), logged once the job is checked."""
    config = job.config
    output, plot_path, steps_dir = _check(job)
    style_size = job.style_size or job.size
    # from the headers, before any pixel is decoded or resized
    content_shape = images.fitted_shape(*images.image_size(job.content), job.size)
    style_shapes = [images.fitted_shape(*images.image_size(p), style_size) for p in job.styles]
    check_stage_sizes(*content_shape, style_shapes, config, content_name=f"{job.content}: content image",
                      style_names=[f"{path}: style image" for path in job.styles])
    grid = evaluation = None
    if job.shard_image:  # checked per tile: the split is what lets an image beyond one device's memory run
        if job.block_size not in ("auto", None):
            raise ValueError("--shard-image splits the image over devices: it does not go with --block-size")
        grid = spatial_grid(*content_shape, len(jax.local_devices()))
        memory.check_fits_sharded(*content_shape, config, str(job.content), grid)
    else:
        plan = plan_evaluation(*content_shape, config, block_size=job.block_size, what=str(job.content))
        config, evaluation = plan.config, plan.evaluation
        notes = (*notes, *(plan.notes if plan.blocked else ()))
    for note in notes:
        log(note)
    page = None
    if job.preview is not None:  # before any image is loaded: a page that cannot start leaves nothing behind
        names = ", ".join(storage.location(p).name for p in job.styles)
        page = live_page.start(f"{storage.location(job.content).name} in the style of {names}",
                               config.total_iterations, config, job.preview_host, job.preview, notify)
    status = "failed"
    try:
        result = _run(job, config, vgg, grid, evaluation, (output, plot_path, steps_dir), page=page,
                      on_progress=on_progress, callback_every=callback_every, log=log, notify=notify)
        status = "stopped" if result.status == "stopped" else "ended"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if page is not None:
            page.close(status)
    if result.status == "stopped":
        return result
    images.save_image(output, result.image)
    if plot_path is not None:
        names = ", ".join(storage.location(p).name for p in job.styles)
        plot.plot_losses(plot_path, result.loss_history, result.term_history,
                         title=f"{storage.location(job.content).name} in the style of {names}")
    h, w = result.image.shape[:2]
    if result.status != "done":
        log(f"jaxstyle: warning: the loss became non-finite after {result.steps} steps; saved the last finite image")
    log(f"wrote {output} ({w}x{h}, {result.steps} steps, {result.seconds:.1f} s, loss {result.losses['total']:.6g})")
    return result


def _run(job: SingleJob, config: StyleConfig, vgg: VGG19 | None, grid, evaluation, paths, *, page, on_progress,
         callback_every, log, notify) -> StyleResult:
    """The run of a checked job (``config``, ``grid`` and ``evaluation`` as planned; ``paths``: the
    output, plot and steps folder; ``page``: its started preview page, or None): the images loaded,
    the engine run, the partial result saved on an interrupt or the page's Stop (status "stopped")."""
    output, plot_path, steps_dir = paths
    style_size = job.style_size or job.size
    content = images.load_image(job.content, max_size=job.size)
    styles = [images.load_image(path, max_size=style_size) for path in job.styles]
    content_mask = None
    if job.content_mask:
        content_mask = images.resize_mask_to(images.load_image(job.content_mask), *content.shape[:2])
    masks = None
    if job.style_masks:
        masks = [images.resize_mask_to(images.load_image(path), *style.shape[:2])
                 for path, style in zip(job.style_masks, styles)]
    init_image = None
    if job.init_image:
        init_image = images.resize_to(images.load_image(job.init_image), *content.shape[:2])
    if vgg is None:
        vgg = load_network(job.weights, pooling=job.pooling, preprocessing=job.preprocessing, log=notify)
    if job.save_every:
        storage.make_folder(steps_dir)
    latest = {}

    def progressed(progress: Progress) -> None:
        latest.update(step=progress.step, image=progress.image())
        if page is not None:
            page.progressed(progress, lambda: images.resize_to(latest["image"], *content.shape[:2]), output)
        if job.save_every and progress.step % job.save_every == 0:  # global steps, over all stages
            # a coarse stage's image at the output's size, so that the saved steps make one sequence
            images.save_image(steps_dir / f"step_{progress.step:05d}.png",
                              images.resize_to(latest["image"], *content.shape[:2]))
        if on_progress is not None:
            on_progress(progress)

    every = callback_every or job.save_every or max(1, min(50, config.total_iterations // 20 or 1))
    mesh = None
    if grid is not None:
        mesh = spatial_mesh(*content.shape[:2])
        log(f"image split into {mesh.shape['height']}x{mesh.shape['width']} tiles over {mesh.devices.size} device(s)")
    try:
        result = stylize(content, styles, config=config, vgg=vgg, init_image=init_image, callback=progressed,
                         callback_every=every, mesh=mesh, evaluation=evaluation, content_mask=content_mask,
                         style_masks=masks,
                         track_terms=plot_path is not None or page is not None,
                         steer=None if page is None else lambda step: page.steer(step, log))
    except live_page.StopRequested:
        image = images.resize_to(latest["image"], *content.shape[:2])
        images.save_image(output, image)
        notify(f"stopped from the preview page at step {latest['step']}/{config.total_iterations}: saved {output}")
        return StyleResult(image=image, loss_history=np.asarray([], np.float32), status="stopped",
                           steps=latest["step"], losses={}, seconds=0.0)
    except KeyboardInterrupt:
        if latest and job.save_on_interrupt:
            image = latest["image"]
            if image.shape != content.shape:  # interrupted at a coarse stage
                image = images.resize_to(image, *content.shape[:2])
            images.save_image(output, image)
            notify(f"interrupted at step {latest['step']}/{config.total_iterations}: saved the partial "
                   f"result to {output}")
        raise
    return result
