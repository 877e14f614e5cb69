"""Apply a trained feed-forward model, files in and files out: what ``jaxstyle apply`` does, usable
from Python.

The model is loaded and checked (:func:`~jaxstyle.jobs.feedforward_model.load_model`), the style
mix resolved, and the inputs and outputs planned and checked (:mod:`.apply_inputs`) before any
image is stylized. Then:

* images are read on host threads ahead of the device (at their own size, or with the longer
  side ``size``), grouped by size, and stylized ``batch`` of one size at a time (fewer when they
  are big: at most ``PIXELS_PER_DEVICE`` pixels per device in one forward), sharded over the
  local devices (:mod:`jaxstyle.engine.sharding`: the batch padded to a multiple of the device
  count by repeating its last image), one batch on the device while the next is gathered, and
  written on host threads, each atomically (a file renamed into place, one upload to a bucket);
* videos, after the images, one at a time (:mod:`.apply_video`).

Failures (the rule of ``batch``): an image that cannot be read or written is skipped, named and
counted in the outcome (``failed``), and the rest go on; a video that fails leaves no output and
is counted the same way. An interrupted run leaves only whole outputs; ``skip_existing`` resumes it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import jax
import numpy as np

from jaxstyle.engine.sharding import batch_mesh, pad_batch, replicate, shard_batch
from jaxstyle.io import images as image_io
from jaxstyle.io import storage
from jaxstyle.io import video as video_io
from jaxstyle.jobs.apply_inputs import Item, plan_run
from jaxstyle.jobs.apply_video import apply_video
from jaxstyle.jobs.feedforward_model import AS_TRAINED, FeedForwardModel, load_model

PIXELS_PER_DEVICE = 16 * 2**20  # pixels of one forward on one device (width 32: ~2 GiB per full-size activation)
MAX_WAITING = 64  # images read and waiting for others of their size; beyond, the fullest size goes as it is
WORKERS = min(8, os.cpu_count() or 1)  # host threads reading and writing images


@dataclasses.dataclass(frozen=True)
class ApplyJob:
    """model: a model file (path or URL). inputs: images, folders, manifests, buckets, videos
    (:mod:`.apply_inputs`). output: a file (one input) or a folder. size: the longer side of what
    is stylized (None: each input's own size; videos: both sides even). style: a style's name or
    index, or style_mix: one weight per style (normalised); neither: the model's only style.
    preserve_colors: "model" (as it was trained), None or "luminance". batch: images per forward
    (padded to a multiple of the devices). overwrite / skip_existing: what to do with existing
    outputs (default: refuse the run). crf: the videos' H.264 quality (0 best .. 51)."""

    model: str
    inputs: tuple[str, ...]
    output: str
    size: int | None = None
    style: str | int | None = None
    style_mix: tuple[float, ...] | None = None
    preserve_colors: str | None = AS_TRAINED
    batch: int = 8
    overwrite: bool = False
    skip_existing: bool = False
    crf: int = video_io.DEFAULT_CRF


@dataclasses.dataclass
class ApplyOutcome:
    """written: the outputs made; existing: those kept (``skip_existing``); failed: (input, reason);
    notes: what the plan said (renamed outputs, files left); images, frames: the images and video
    frames stylized; seconds: the time from the first image read to the last output written."""

    written: list[str] = dataclasses.field(default_factory=list)
    existing: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    images: int = 0
    frames: int = 0
    seconds: float = 0.0


def check_job(job: ApplyJob) -> None:
    """ValueError ("expected X, got Y") for options that cannot be right whatever the files."""
    if job.style is not None and job.style_mix is not None:
        raise ValueError("give --style or --style-mix, not both")
    if job.size is not None and (isinstance(job.size, bool) or not isinstance(job.size, int) or job.size < 2):
        raise ValueError(f"expected --size an integer >= 2 px (or none: each input's own size), got {job.size!r}")
    if isinstance(job.batch, bool) or not isinstance(job.batch, int) or job.batch < 1:
        raise ValueError(f"expected --batch an integer >= 1, got {job.batch!r}")
    if job.preserve_colors not in (AS_TRAINED, None, "luminance"):
        raise ValueError(f"expected --preserve-colors luminance or none, got {job.preserve_colors!r}")
    if isinstance(job.crf, bool) or not isinstance(job.crf, int) or not 0 <= job.crf <= 51:
        raise ValueError(f"expected --crf 0 (best) .. 51, got {job.crf!r}")


def style_weights(model: FeedForwardModel, job: ApplyJob) -> np.ndarray:
    """The mix of every image, float32 [S] summing to 1; one line naming the model's styles if wrong."""
    if job.style_mix is not None and len(job.style_mix) != len(model.styles):
        count = len(model.styles)
        raise ValueError(f"--style-mix: expected {count} weight{'s' if count > 1 else ''}, one per style of "
                         f"{job.model} ({', '.join(model.styles)}), got {len(job.style_mix)}")
    if job.style is None and job.style_mix is None and len(model.styles) > 1:
        raise ValueError(f"{job.model} holds {len(model.styles)} styles ({', '.join(model.styles)}): pick one "
                         f"with --style NAME or mix them with --style-mix W1,W2,...")
    return model.mix(job.style if job.style is not None else job.style_mix, 1)[0]


def run_apply(job: ApplyJob, *, log: Callable[[str], None] = lambda message: None,
              on_total: Callable[[int], None] = lambda count: None,
              on_done: Callable[[int], None] = lambda count: None) -> ApplyOutcome:
    """Run ``job``; returns its :class:`ApplyOutcome`. Everything that can refuse it is checked before
    any image is stylized (one-line ValueErrors naming the file). on_total(n): n more images or
    frames to do (the images at once, each video's frames once they are counted); on_done(n): n
    more done (raising KeyboardInterrupt there stops the run: what is written is whole)."""
    check_job(job)
    model = load_model(job.model)
    weights = style_weights(model, job)
    plan = plan_run(list(job.inputs), job.output, overwrite=job.overwrite, skip_existing=job.skip_existing,
                    protected=(job.model,))
    outcome = ApplyOutcome(existing=[str(item.output) for item in plan.existing], notes=list(plan.notes))
    for note in plan.notes:
        log(note)
    if plan.existing:
        log(f"{len(plan.existing)} output(s) exist and are kept (--skip-existing)")
    if plan.folder is not None:
        storage.make_folder(plan.folder)
    forward = Forward(model, weights, job.preserve_colors, job.batch)
    stills = [item for item in plan.items if item.kind == "image"]
    on_total(len(stills))
    start = time.perf_counter()
    if stills:
        _run_images(stills, forward, job.size, outcome, on_done)
    for item in (item for item in plan.items if item.kind == "video"):
        try:
            outcome.frames += apply_video(item.source, item.output, forward.padded, size=job.size,
                                          batch=forward.per_forward, crf=job.crf, on_total=on_total,
                                          on_frames=on_done)
            outcome.written.append(str(item.output))
        except Exception as exc:  # noqa: BLE001 - one video that fails (nothing of it is written) stops no other
            outcome.failed.append((str(item.source), _reason(exc)))
    outcome.seconds = time.perf_counter() - start
    return outcome


class Forward:
    """The model over local devices: ``forward(images [n, h, w, 3])`` pads the batch to a multiple
    of the devices (repeating the last image), shards it over them (a one-axis mesh; the parameters
    replicated) and dispatches the network, returning the n outputs [n, h, w, 3] in [0, 1] without
    waiting for them."""

    def __init__(self, model: FeedForwardModel, weights: np.ndarray, preserve_colors, batch: int):
        self.devices = len(jax.local_devices())
        self.mesh = batch_mesh() if self.devices > 1 else None
        if self.mesh is not None:
            model = dataclasses.replace(model, params=replicate(model.params, self.mesh))
        self.model, self.weights, self.preserve_colors, self.batch = model, weights, preserve_colors, batch

    def per_forward(self, shape: tuple[int, int]) -> int:
        """Images of ``shape`` (h, w) in one forward: ``batch``, fewer when they are big, a multiple of the devices."""
        fits = max(1, PIXELS_PER_DEVICE // (shape[0] * shape[1])) * self.devices
        return -(-min(self.batch, fits) // self.devices) * self.devices

    def __call__(self, images: np.ndarray, pad_to: int = 1) -> jax.Array:
        count = len(images)
        x = pad_batch(images, max(pad_to, self.devices)) if count % max(pad_to, self.devices) else images
        if self.mesh is not None:
            x = shard_batch(np.asarray(x, np.float32), self.mesh)
        y = self.model(x, self.weights, preserve_colors=self.preserve_colors)
        return y if len(y) == count else y[:count]

    def padded(self, images: np.ndarray) -> jax.Array:
        """:meth:`__call__` padded to a whole forward (a video's last batch reuses its compiled program)."""
        return self(images, pad_to=self.per_forward(images.shape[1:3]))


def _save(output, image: np.ndarray) -> None:
    storage.make_folder(output.parent)  # a manifest's output entry may name a folder inside the output folder
    image_io.save_image(output, image)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _reason(exc: BaseException) -> str:
    """One line on a failure: a ValueError's message, else the kind of error too (XLA's, out of memory)."""
    return _first_line(exc) if isinstance(exc, ValueError | OSError) else f"{type(exc).__name__}: {_first_line(exc)}"


def _run_images(items: list[Item], forward: Forward, size: int | None, outcome: ApplyOutcome, on_done) -> None:
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="jaxstyle-apply")
    try:
        batches = _Batches(forward, pool, outcome, on_done)
        for item, image in _read_ahead(items, size, pool, outcome, on_done):
            batches.add(item, image)
        batches.finish()
    finally:  # interrupted: the writes under way finish (each whole), the reads and writes not begun are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _read_ahead(items: list[Item], size: int | None, pool: ThreadPoolExecutor, outcome: ApplyOutcome,
                on_done) -> Iterator[tuple[Item, np.ndarray]]:
    """(item, image float32 [h, w, 3]) in order, read ``2 * WORKERS`` ahead on the pool; an image that
    cannot be read is counted as failed (and done) and left out."""
    reads: deque[tuple[Item, Future]] = deque()
    queue = iter(items)
    for item in queue:
        reads.append((item, pool.submit(image_io.load_image, item.source, max_size=size)))
        if len(reads) >= 2 * WORKERS:
            break
    while reads:
        item, future = reads.popleft()
        following = next(queue, None)
        if following is not None:
            reads.append((following, pool.submit(image_io.load_image, following.source, max_size=size)))
        try:
            yield item, future.result()
        except (ValueError, OSError) as exc:
            outcome.failed.append((str(item.source), _first_line(exc)))
            on_done(1)


class _Batches:
    """Images of one size gathered into forwards; one forward on the device while the next gathers;
    the outputs written on the pool, each atomically."""

    def __init__(self, forward: Forward, pool: ThreadPoolExecutor, outcome: ApplyOutcome, on_done):
        self.forward, self.pool, self.outcome, self.on_done = forward, pool, outcome, on_done
        self.waiting: dict[tuple[int, int], list[tuple[Item, np.ndarray]]] = {}
        self.flight: tuple[list[Item], jax.Array] | None = None
        self.writes: deque[tuple[Item, Future]] = deque()

    def add(self, item: Item, image: np.ndarray) -> None:
        shape = image.shape[:2]
        self.waiting.setdefault(shape, []).append((item, image))
        if len(self.waiting[shape]) >= self.forward.per_forward(shape):
            self._dispatch(shape)
        elif sum(map(len, self.waiting.values())) > MAX_WAITING:
            self._dispatch(max(self.waiting, key=lambda s: len(self.waiting[s])))

    def finish(self) -> None:
        for shape in list(self.waiting):
            self._dispatch(shape)
        self._land()
        while self.writes:
            self._written(*self.writes.popleft())

    def _dispatch(self, shape: tuple[int, int]) -> None:
        pairs = self.waiting.pop(shape)
        items = [item for item, _ in pairs]
        try:
            outputs = self.forward(np.stack([image for _, image in pairs]))
        except Exception as exc:  # noqa: BLE001 - a batch that cannot run (out of memory) fails its images only
            self._failed(items, exc)
            return
        self._land()
        self.flight = (items, outputs)

    def _land(self) -> None:
        """Wait for the forward in flight and hand its outputs to the writers."""
        if self.flight is None:
            return
        items, outputs = self.flight
        self.flight = None
        try:
            outputs = np.asarray(outputs)
        except Exception as exc:  # noqa: BLE001 - as in _dispatch: the device's errors surface here
            self._failed(items, exc)
            return
        for item, image in zip(items, outputs):
            self.writes.append((item, self.pool.submit(_save, item.output, image)))
        while len(self.writes) > 2 * WORKERS:
            self._written(*self.writes.popleft())

    def _written(self, item: Item, future: Future) -> None:
        try:
            future.result()
            self.outcome.written.append(str(item.output))
            self.outcome.images += 1
        except (ValueError, OSError) as exc:
            self.outcome.failed.append((str(item.source), f"cannot write {item.output}: {_first_line(exc)}"))
        self.on_done(1)

    def _failed(self, items: list[Item], exc: Exception) -> None:
        for item in items:
            self.outcome.failed.append((str(item.source), f"{item.source}: {_reason(exc)}"))
        self.on_done(len(items))
