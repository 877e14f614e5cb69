"""One training run of a feed-forward style network, files in and a model file out: what ``jaxstyle
train`` does, usable from Python (:func:`train`).

Everything that can refuse the run is checked before anything is loaded
(:func:`~jaxstyle.jobs.train_job.check_job`, and the batch against the devices). Then VGG-19 is
loaded once, the style images at ``style_size``, their targets computed once
(:func:`~jaxstyle.engine.training.style_targets_for_training`), and the network trained
data-parallel over every device of every process (:func:`~jaxstyle.engine.training.train_step`),
each process decoding its rows of each batch on host threads
(:class:`~jaxstyle.jobs.training_data.TrainingData`).
Row r of global batch ``step`` trains style ``(step * batch + r) % S``. Adam at a constant learning
rate (Johnson et al. 2016), so a run of more steps passes through a shorter run's checkpoints.

Checkpoints (:mod:`jaxstyle.io.checkpoints`): every ``checkpoint_every`` steps, at the end, and when
the run is interrupted (KeyboardInterrupt, the preview page's Stop, ``callback`` returning True);
each holds the state, the settings that decide the result (:mod:`jaxstyle.jobs.train_state`), the
skipped images and the loss history. The same job resumes from the newest one, with the batches an
uninterrupted run would have seen; one of other settings is refused in one line (``overwrite``
discards it). The model file is written, atomically, only when the run has taken every step; then
the default checkpoint folder (``MODEL.jaxstyle-train``) is emptied and removed, a named one kept.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxstyle.config import StyleConfig
from jaxstyle.engine import memory
from jaxstyle.engine.training import (
    TrainingSetup,
    apply_network,
    global_batch,
    init_train_state,
    make_optimizer,
    style_targets_for_training,
    train_step,
    training_mesh,
    training_weights,
)
from jaxstyle.io import checkpoints, images, model_file, plot
from jaxstyle.jobs import distributed, train_state
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs.network import load_network
from jaxstyle.jobs.single import refuse_overwrite
from jaxstyle.jobs.train_job import Plan, TrainJob, TrainProgress, TrainResult, check_job, is_path
from jaxstyle.jobs.train_probes import probe_images, probe_sheet
from jaxstyle.jobs.training_data import TrainingData
from jaxstyle.model.transformer import TransformerNet
from jaxstyle.model.vgg import VGG19
from jaxstyle.weights.fetch import load_vgg19

__all__ = ["TrainJob", "TrainProgress", "TrainResult", "run_train", "train"]

TERM_POINTS = 100  # the weighted terms are recorded this many times a run (for the plot)
SHEET_SECONDS = 2.0  # the preview's probe sheet is remade at most this often, and only while a page watches


def run_train(job: TrainJob, *, vgg: VGG19 | None = None, callback: Callable[[TrainProgress], bool | None] = None,
              log: Callable[[str], None] = lambda message: None,
              notify: Callable[[str], None] = lambda message: None) -> TrainResult:
    """Run ``job`` (see the module docstring); the model file is written when the run finishes.

    callback: after every step, with its :class:`TrainProgress`; returning True stops the run (a
    checkpoint is written, status "stopped"); raising KeyboardInterrupt interrupts it like a signal
    (a checkpoint is written, then the interrupt goes on). log: progress messages; notify: what must
    be said even when quiet (a resume, an interrupt's checkpoint, skipped images)."""
    index, count = 0, 1
    if job.distributed:
        index, count = distributed.initialize(job.coordinator, job.num_processes, job.process_id)
    plan = check_job(job)
    if job.preview is not None and count > 1:
        raise ValueError("--preview watches one process: it is not for --distributed runs")
    mesh = training_mesh()
    if job.batch % mesh.devices.size:
        raise ValueError(f"--batch {job.batch}: expected a multiple of the {mesh.devices.size} devices (each "
                         f"takes an equal share of the global batch)")
    page = None
    if job.preview is not None:  # before anything is loaded: a page that cannot start leaves nothing behind
        page = live_page.start(f"training: {len(plan.sources)} content images in the style of "
                               f"{', '.join(plan.names)}", job.steps, job.config, job.preview_host, job.preview,
                               notify, steerable=False)
    watch = None
    if count > 1:  # a dead process stops the others within seconds (JAX alone waits 100 s, then aborts)
        watch = distributed.PeerWatch(index, count, on_failure=distributed.interrupt_main_then_exit)
    status = "failed"
    try:
        run = _Run(job, plan, mesh, (index, count), page, log, notify)
        result = run.train(vgg, callback)
        status = "stopped" if result.status == "stopped" else "ended"
        if watch is not None:
            watch.finish()
    except (KeyboardInterrupt, Exception) as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else status
        if watch is None:
            raise
        failure = watch.failure
        watch.leave("interrupted" if isinstance(exc, KeyboardInterrupt) and failure is None else "failed")
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = failure or ("interrupted" if interrupted else (str(exc).splitlines() or [""])[0])
        distributed.abandon(f"process {index + 1} of {count}: {reason}", 130 if interrupted else 2)
    finally:
        if page is not None:
            page.close(status)
    return result


@functools.lru_cache(maxsize=8)
def _optimizer(learning_rate: float):
    """One optimizer object per learning rate: the compiled step is cached by it (a static argument)."""
    return make_optimizer(learning_rate)


class _Run:
    """A checked job's run: the loaded inputs, the state, the loop and what it keeps."""

    def __init__(self, job: TrainJob, plan: Plan, mesh, place: tuple[int, int], page, log, notify):
        self.job, self.plan, self.mesh, self.page, self.log, self.notify = job, plan, mesh, page, log, notify
        self.index, self.count = place
        self.history: list[float] = []
        self.terms: list[dict] = []
        self.skipped: dict[str, str] = {}
        self.seconds, self.timed = 0.0, [0, 0.0]  # of earlier sessions: training seconds; (images, seconds) timed
        self.clock, self.ended = (0.0, time.monotonic(), 0, None), None
        self.sheet: np.ndarray | None = None  # the preview's probe sheet
        self.saved: Path | None = None
        self.saved_step = -1

    # ------------------------------------------------------------------ preparing
    def _load(self, vgg: VGG19 | None) -> None:
        job = self.job
        self.style_size = job.style_size or job.size
        self.vgg = vgg or load_network(job.weights, pooling=job.pooling, preprocessing=job.preprocessing,
                                       log=self.notify)
        originals = [images.load_image(s) if is_path(s) else images.as_image(s, f"style image {i + 1}")
                     for i, s in enumerate(job.styles)]  # as given: compared on resuming, and the thumbnails
        self.thumbnails = [train_state.thumbnail(s) for s in originals]
        self.styles = [images.resize_image(s, self.style_size) for s in originals]  # as stylize loads them
        network = TransformerNet(job.width, len(self.styles), job.residual_blocks)
        self.setup = TrainingSetup.build(job.config, self.vgg, network, temporal_weight=job.temporal_weight)
        self.vgg_params = self.setup.objective.params(self.vgg)
        self.targets = style_targets_for_training(self.vgg_params, self.styles, self.setup, job.size,
                                                  style_size=self.style_size)
        self.weights = training_weights(job.config, temporal_weight=job.temporal_weight)
        self.optimizer = _optimizer(float(job.learning_rate))
        self.settings = train_state.training_settings(
            styles=originals, contents=train_state.sources_digest(self.plan.sources, job.contents),
            content_count=len(self.plan.sources), size=job.size, style_size=self.style_size, batch=job.batch,
            seed=int(job.seed), learning_rate=float(job.learning_rate), width=job.width,
            residual_blocks=job.residual_blocks, temporal_weight=float(job.temporal_weight), config=job.config,
            vgg=self.vgg)

    def _start(self):
        """The state to start from: the newest checkpoint's of the same settings, or a fresh one."""
        job, folder = self.job, self.plan.folder
        init_key, self.key = jax.random.split(jax.random.key(int(job.seed)))
        if self.count > 1:  # made replicated over the mesh: the step's placing cannot copy a key array between hosts
            self.key = jax.jit(lambda: jax.random.split(jax.random.key(int(job.seed)))[1],
                               out_shardings=NamedSharding(self.mesh, PartitionSpec()))()
        fresh = init_train_state(init_key, self.setup, self.optimizer, job.size)
        found = None
        if folder is not None and job.overwrite and self.index == 0:
            for _, path in checkpoints.list_checkpoints(folder):
                path.unlink(missing_ok=True)
        if self.count > 1:
            distributed.barrier("jaxstyle-train-start")
        if folder is not None and not job.overwrite:
            found = checkpoints.latest_checkpoint(folder, on_skip=self.notify)
        if found is None:
            if self.plan.plot is not None:  # a resumed run's plot is its own
                refuse_overwrite(self.plan.plot, job.overwrite)
            return fresh
        step, arrays, extra = found
        path = checkpoints.checkpoint_path(folder, step)
        if extra.get("settings") != self.settings:
            found = train_state.differences(extra.get("settings"), self.settings, self.plan.names)
            raise ValueError(train_state.refusal(path, step, found))
        if step > job.steps:
            raise ValueError(f"{path}: a checkpoint at step {step}, past --steps {job.steps}: pass --steps {step} or "
                             f"more to go on from it, or --overwrite to start afresh")
        state = train_state.restored_state(fresh, arrays, path)
        self.history = [float(v) for v in extra.get("losses", [])][:step]
        self.terms = [t for t in extra.get("terms", []) if t["step"] <= step]
        self.skipped = dict(extra.get("skipped", []))
        self.seconds, self.timed = float(extra.get("seconds", 0.0)), list(extra.get("timed", [0, 0.0]))
        self.saved, self.saved_step = path, step
        self.notify(f"resuming from {path} (step {step}/{job.steps})")
        return state

    # ------------------------------------------------------------------ the loop
    def train(self, vgg: VGG19 | None, callback) -> TrainResult:
        job = self.job
        try:
            self._load(vgg)
            self.state = self._start()
        except KeyboardInterrupt:
            self.notify("interrupted before the first step: nothing to keep")
            raise
        start = self._step()
        if self.count > 1:
            from jax.experimental import multihost_utils

            starts = multihost_utils.process_allgather(np.array([start], np.int64)).ravel().tolist()
            if len(set(starts)) > 1:
                raise ValueError(f"the processes found checkpoints of different steps ({starts}): the checkpoint "
                                 f"folder {self.plan.folder} must be one folder that every process sees")
        if self.page is not None:
            self.probes = probe_images(job.probes, self.plan.sources, job.size)
        self.term_every = max(1, job.steps // TERM_POINTS)
        with TrainingData(self.plan.sources, job.size, job.batch, seed=int(job.seed), threads=job.threads,
                          process_index=self.index, process_count=self.count) as data:
            self.data = data
            stopped = self._loop(start, callback)
        if stopped:
            return self._result("stopped")
        if self.saved_step != job.steps:
            self._checkpoint()
        else:
            self._plot()
        return self._finish()

    def _loop(self, start: int, callback) -> bool:
        """Steps ``start`` .. ``steps``; True when stopped early (the page, the callback)."""
        job, styles = self.job, len(self.styles)
        share = job.batch // self.count
        rows = np.arange(self.index * share, (self.index + 1) * share)
        self.clock = (self.seconds, time.monotonic(), start, None)  # (before, began, first step, its end)
        try:
            for step in range(start, job.steps):
                batch, _ = self.data.get(step)
                style_index = ((step * job.batch + rows) % styles).astype(np.int32)
                self.state, metrics = train_step(self.state, self.vgg_params, self.targets, self.weights,
                                                 *global_batch((batch, style_index), self.mesh), self.key,
                                                 setup=self.setup, optimizer=self.optimizer, mesh=self.mesh)
                metrics = {k: float(train_state.host(v)) for k, v in metrics.items()}
                self.history.append(metrics["loss"])
                if (step + 1) % self.term_every == 0 or step + 1 == job.steps:
                    self.terms.append({"step": step + 1, **{k: metrics[k] for k in ("content", "style", "tv")}})
                if self.clock[3] is None:  # the first step compiles: images/s count from its end
                    self.clock = (*self.clock[:2], step + 1, time.monotonic())
                timed, seconds = self._session()
                progress = TrainProgress(step + 1, job.steps, metrics["loss"],
                                         {k: v for k, v in metrics.items() if k not in ("loss", "finite")},
                                         timed / seconds if timed and seconds > 0 else None, self._seconds())
                if (step + 1) % job.checkpoint_every == 0 and step + 1 < job.steps:
                    self._checkpoint()
                if self.page is not None:
                    self._report(progress)
                if callback is not None and callback(progress) and step + 1 < job.steps:
                    self._checkpoint()
                    self.notify(f"stopped at step {step + 1}/{job.steps}: {self._resume_line()}")
                    return True
            self.ended = time.monotonic()
            return False
        except live_page.StopRequested:
            self._checkpoint()
            self.notify(f"stopped from the preview page at step {self._step()}/{job.steps}: "
                        f"{self._resume_line()}")
            return True
        except BaseException as exc:
            self._keep_on_failure(exc)
            raise

    def _session(self) -> tuple[int, float]:
        """(images, seconds) since the end of this session's first step."""
        _, _, first, at = self.clock
        if at is None:
            return 0, 0.0
        return (len(self.history) - first) * self.job.batch, (self.ended or time.monotonic()) - at

    def _seconds(self) -> float:
        """Seconds of training, every session."""
        return self.clock[0] + (self.ended or time.monotonic()) - self.clock[1]

    def _timing(self) -> list:
        """[images, seconds] after each session's first step, every session (images/s without compiling)."""
        timed, seconds = self._session()
        return [self.timed[0] + timed, self.timed[1] + seconds]

    def _keep_on_failure(self, exc: BaseException) -> None:
        """On an interrupt or an error: a checkpoint of the steps taken since the last one (unless the
        interrupt landed while the step that replaces the state was under way), and for an interrupt
        the line that says where the checkpoint is and how to go on."""
        alive = not any(leaf.is_deleted() for leaf in jax.tree.leaves(self.state) if isinstance(leaf, jax.Array))
        if alive and self._step() > max(self.saved_step, 0):
            try:
                self._checkpoint()
            except Exception as failure:  # noqa: BLE001 - the first exception is the one to raise
                self.notify(f"could not write a checkpoint: {(str(failure).splitlines() or [''])[0]}")
        if not isinstance(exc, KeyboardInterrupt):
            return
        if self.plan.folder is None:
            self.notify(f"interrupted at step {self._step() if alive else '?'}/{self.job.steps}: no checkpoint "
                        f"folder, nothing kept")
        elif self.saved is None:
            self.notify(f"interrupted before the first step ended: nothing to keep ({self.job.steps} steps to take)")
        else:
            self.notify(f"interrupted at step {self.saved_step}/{self.job.steps}: {self._resume_line()}")

    def _step(self) -> int:
        return int(train_state.host(self.state.step))

    def _resume_line(self) -> str:
        if self.saved is None:
            return "no checkpoint folder, nothing kept"
        return (f"checkpoint {self.saved}; run the same command to resume (or with --steps {self.saved_step} to "
                f"write the model as it is)")

    def _report(self, progress: TrainProgress) -> None:
        """The preview page: the step, the loss curves, the probe sheet (made at once, then at most
        every ``SHEET_SECONDS`` while a page watches: it costs a forward pass); its controls."""
        image, now = None, time.monotonic()
        due = self.sheet is None or (self.page.live.watched() and now - self.sheet_at > SHEET_SECONDS)
        if self.probes is not None and due:
            sheet = probe_sheet(lambda x, mix: apply_network(
                self.state.params, self.setup.network, x, mix, preserve_colors=self.setup.preserve_colors),
                self.probes, len(self.styles))
            self.sheet, self.sheet_at, image = sheet, now, lambda: sheet
        terms = {k: progress.terms[k] for k in ("content", "style", "tv") if k in progress.terms}
        self.page.live.report(progress.step, terms={"total": progress.loss, **terms}, image=image,
                              label=f"epoch {self.data.epoch(progress.step):.2f}", memory=memory.in_use())
        sheet = self.sheet
        self.page.controls(progress.step, None if sheet is None or self.plan.output is None else lambda: sheet,
                           self.plan.output)

    # ------------------------------------------------------------------ what is kept
    def _skipped(self) -> list[tuple[str, str]]:
        return sorted({**self.skipped, **dict(self.data.skipped)}.items())

    def _checkpoint(self) -> None:
        """Save the state (process 0 writes; every process holds all of it), and the plot."""
        step = self._step()
        folder = self.plan.folder
        if folder is not None and self.index == 0:
            extra = {"settings": self.settings, "skipped": [list(s) for s in self._skipped()],
                     "losses": self.history[:step], "terms": self.terms,
                     "seconds": self._seconds(), "timed": self._timing()}
            self.saved = checkpoints.save_checkpoint(folder, step, train_state.state_arrays(self.state), extra)
            self.saved_step = step
        self._plot()

    def _plot(self) -> None:
        if self.plan.plot is not None and self.index == 0 and self.history:
            plot.plot_losses(self.plan.plot, np.asarray(self.history, np.float64), tuple(self.terms),
                             title=f"training in the style of {', '.join(self.plan.names)}")

    def _result(self, status: str, metadata: dict | None = None) -> TrainResult:
        params = jax.tree.map(train_state.host, self.state.params)
        return TrainResult(params, metadata or {}, status, self._step(),
                           np.asarray(self.history, np.float32), self.saved, self._skipped())

    def _finish(self) -> TrainResult:
        """Write the model (process 0), say what was skipped, and put the default checkpoints away."""
        job, skipped = self.job, self._skipped()
        if self.count > 1:  # each process met the unreadable images of its own rows
            skipped = train_state.gathered(skipped)
            self.skipped = dict(skipped)
        final = self.history[-1] if self.history and np.isfinite(self.history[-1]) else None
        bad = int(np.sum(~np.isfinite(np.asarray(self.history, np.float64))))
        (timed, seconds), total = self._timing(), self._seconds()
        rate = timed / seconds if seconds > 0 else None
        metadata = train_state.model_metadata(
            width=job.width, residual_blocks=job.residual_blocks, style_names=self.plan.names, config=job.config,
            temporal_weight=float(job.temporal_weight), vgg=self.vgg, steps=self._step(), size=job.size,
            style_size=self.style_size, batch=job.batch, seed=int(job.seed), learning_rate=float(job.learning_rate),
            skipped=skipped, seconds=total, images_per_second=rate, content_count=len(self.plan.sources),
            final_loss=final, non_finite_steps=bad)
        result = self._result("done", metadata)
        if bad:
            self.notify(f"warning: {bad} of {len(self.history)} steps had a non-finite loss and left the network as "
                        f"it was (a lower --learning-rate may help)")
        if skipped:
            shown = ", ".join(name for name, _ in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
            why = skipped[0][1] if len(skipped) == 1 else f"the first: {skipped[0][1]}"
            self.notify(f"skipped {len(skipped)} unreadable content image(s): {shown} ({why})")
        if self.index == 0 and self.plan.output is not None:
            model_file.write_model(self.plan.output, result.params, metadata, self.thumbnails)
            said = [f"{result.steps} steps", f"{total:.1f} s", *([f"{rate:.1f} images/s"] if rate else []),
                    *([f"loss {final:.6g}"] if final is not None else [])]
            self.log(f"wrote {self.plan.output} ({', '.join(said)})")
            if self.plan.default_folder:
                for _, path in checkpoints.list_checkpoints(self.plan.folder):
                    path.unlink(missing_ok=True)
                if self.plan.folder.is_dir() and not any(self.plan.folder.iterdir()):
                    self.plan.folder.rmdir()
                result = dataclasses.replace(result, checkpoint=None)
        return result


def train(styles, contents, output: str | os.PathLike | None = None, *, vgg: VGG19 | None = None,
          config: StyleConfig = StyleConfig(), callback: Callable[[TrainProgress], bool | None] | None = None,
          log: Callable[[str], None] = lambda message: None, notify: Callable[[str], None] = lambda message: None,
          **options) -> TrainResult:
    """Train a feed-forward network on ``contents`` (a folder, a manifest, one image; a path or a
    URL) in the style of ``styles`` (one image or a list of them, or an array [S, h, w, 3]; paths,
    PIL images or arrays) and write it to ``output`` when given. ``vgg=None``: the cached weights
    (or ``weights=PATH``). ``options``: the other fields of :class:`TrainJob` (size=256, batch=4,
    steps=2000, learning_rate=1e-3, width=32, residual_blocks=5, seed=0, temporal_weight=0,
    checkpoint_every=200, checkpoints, threads, overwrite, plot, ...). callback, log, notify: as
    :func:`run_train`'s. Returns the :class:`TrainResult` (the parameters, the metadata, the losses)."""
    if getattr(styles, "ndim", 0) == 4:
        styles = list(styles)
    elif is_path(styles) or not isinstance(styles, (list, tuple)):
        styles = [styles]
    job = TrainJob(styles=tuple(styles), contents=contents, output=output, config=config, **options)
    if vgg is None and job.weights is None:
        vgg = load_vgg19()  # the cached weights, or a one-line error saying how to fetch them
    return run_train(job, vgg=vgg, callback=callback, log=log, notify=notify)
