"""A training job as the command line and :func:`jaxstyle.jobs.train.train` give it (:class:`TrainJob`),
what a run reports and returns, and the checks made before anything is loaded (:func:`check_job`):
the style images (their headers), the content images (their list,
:func:`~jaxstyle.jobs.training_data.content_sources`), the options, the loss
(:meth:`~jaxstyle.engine.training.TrainingSetup.build`'s refusals), the output (not replaced unless
``overwrite``), the plot, the probes and the checkpoint folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxstyle.config import StyleConfig, is_seed
from jaxstyle.engine.training import TrainingSetup, make_optimizer
from jaxstyle.io import checkpoints, images, plot, storage
from jaxstyle.jobs.single import refuse_overwrite
from jaxstyle.jobs.training_data import content_sources
from jaxstyle.model.transformer import TransformerNet
from jaxstyle.model.vgg import CAFFE_PREPROCESSING, VGG19, check_image_size

CHECKPOINTS_SUFFIX = ".jaxstyle-train"


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """styles: paths or URLs of the style images (or images as :func:`jaxstyle.io.images.as_image`
    takes them); contents: a folder, a manifest or one image, a path or a URL; output: the model file
    (None: none written). size: the training crops' side in px; style_size: the style images' longer
    side (default ``size``); batch: the global batch; checkpoints: their folder (default: beside the
    output, ``MODEL.jaxstyle-train``; None without an output: none kept); temporal_weight > 0: the
    temporal term (:mod:`jaxstyle.objective.warps`); threads: the loader's decoding threads; probes:
    the preview's images (default: the first content images); plot: a .png of the loss curves; weights,
    preprocessing, pooling: the VGG network (default: the cached weights); preview: serve the live
    page on this port (0: any free one); distributed: ``jax.distributed`` with the coordinator given or
    detected."""

    styles: tuple
    contents: str | os.PathLike
    output: str | os.PathLike | None = None
    config: StyleConfig = StyleConfig()
    size: int = 256
    style_size: int | None = None
    batch: int = 4
    steps: int = 2000
    learning_rate: float = 1e-3
    width: int = 32
    residual_blocks: int = 5
    seed: int = 0
    temporal_weight: float = 0.0
    checkpoint_every: int = 200
    checkpoints: str | os.PathLike | None = None
    threads: int = 4
    overwrite: bool = False
    plot: str | os.PathLike | None = None
    probes: tuple[str, ...] | None = None
    weights: str | None = None
    preprocessing: str | None = None
    pooling: str = "max"
    preview: int | None = None
    preview_host: str = "127.0.0.1"
    distributed: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


class TrainProgress(NamedTuple):
    """After each step: ``step`` steps taken of ``total``; the step's ``loss`` and weighted ``terms``
    (batch means); ``images_per_second`` since the first step of this session (None before);
    ``seconds`` of training so far (every session)."""

    step: int
    total: int
    loss: float
    terms: dict
    images_per_second: float | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """params: the network's (nested dicts of NumPy arrays); metadata: the model file's; status:
    "done" (every step taken) or "stopped" (stopped early: the checkpoint holds the state, no model
    written); steps: taken; loss_history: float32 [steps], each step's loss; checkpoint: the last
    one written (None: none); skipped: (name, reason) of each unreadable content image met."""

    params: dict
    metadata: dict
    status: str
    steps: int
    loss_history: np.ndarray
    checkpoint: Path | None
    skipped: list


class Plan(NamedTuple):
    """A checked job's places: the output, the plot, the checkpoint folder (and whether it is the
    default one), the content images and the styles' names."""

    output: storage.Location | None
    plot: storage.Location | None
    folder: Path | None
    default_folder: bool
    sources: list
    names: list[str]


def is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike, storage.Url))


def _check_options(job: TrainJob) -> None:
    for name, value, least in (("size", job.size, 1), ("batch", job.batch, 1), ("steps", job.steps, 1),
                               ("width", job.width, 1), ("residual blocks", job.residual_blocks, 0),
                               ("checkpoint every", job.checkpoint_every, 1), ("threads", job.threads, 1),
                               ("style size", job.size if job.style_size is None else job.style_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"expected {name} to be an integer >= {least}, got {value!r}")
    if not is_seed(job.seed):
        raise ValueError(f"expected the seed to be a 64-bit integer, got {job.seed!r}")
    make_optimizer(job.learning_rate)  # refuses a learning rate that is not finite and > 0
    network = TransformerNet(job.width, len(job.styles), job.residual_blocks)
    stand_in = VGG19({}, CAFFE_PREPROCESSING, job.pooling)  # the refusals need the pooling only
    TrainingSetup.build(job.config, stand_in, network, temporal_weight=job.temporal_weight)
    check_image_size(job.size, job.size, job.config.all_layers, f"a training crop at size {job.size}")


def check_job(job: TrainJob) -> Plan:
    """The job's inputs and outputs, checked before anything is loaded."""
    if not job.styles:
        raise ValueError("expected at least one style image, got none")
    names = []
    for i, style in enumerate(job.styles):
        images.check_image_kind(style, f"style image {i + 1}")  # a path: its header
        names.append(storage.location(style).stem if is_path(style) else f"style{i + 1}")
    _check_options(job)
    sources = content_sources(job.contents)
    output = None if job.output is None else storage.location(job.output)
    inputs = [storage.location(s) for s in job.styles if is_path(s)] + list(job.probes or ())
    if output is not None:
        storage.check_writable_folder(output.parent, str(output))
        if storage.is_folder(output):
            raise ValueError(f"{output}: is a folder, expected a model file")
        refuse_overwrite(output, job.overwrite)
    plot_path = None if job.plot is None else storage.location(job.plot)
    if plot_path is not None:
        plot.require_matplotlib()
        if plot_path.suffix.lower() != ".png":
            raise ValueError(f"{plot_path}: --plot writes a .png")
    for target in (output, plot_path):
        for source in map(storage.location, inputs):
            if target is not None and storage.same_file(target, source):
                raise ValueError(f"{target}: output would overwrite input {source}")
    if job.probes is not None and job.preview is None:
        raise ValueError("--probes are shown on the preview page: give --preview too")
    for probe in job.probes or ():
        images.image_size(probe)
    folder, default = job.checkpoints, False
    if folder is None and output is not None:
        if storage.is_url(str(output)):
            raise ValueError(f"{output}: checkpoints are kept in a local folder: give --checkpoints DIR")
        folder, default = output.with_name(output.name + CHECKPOINTS_SUFFIX), True
    if folder is not None:
        checkpoints.list_checkpoints(folder)  # a URL or a file there is refused now
        folder = Path(folder).expanduser()
    return Plan(output, plot_path, folder, default, sources, names)
