"""What a training run keeps between its sessions and what it hands on: the settings that decide
its result (kept in each checkpoint and compared when a run resumes), its state as checkpoint
arrays and back, and the model file's metadata and thumbnails.

The settings are every option that changes the parameters a run reaches at a given step: the
style images' pixels, the list of content images, the training
and style sizes, the global batch, the seed, the learning rate, the network's shape, the loss (the
:class:`~jaxstyle.config.StyleConfig` fields that define it, and the temporal weight) and the VGG
weights' values. Not the number of steps (the learning rate is constant: a run of more steps
passes through every checkpoint of a shorter one), nor the devices (float rounding only), nor how
the convolutions are computed (``conv``, ``remat``: rounding only).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Sequence

import jax
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.engine.training import TrainState
from jaxstyle.io import images, storage
from jaxstyle.jobs.video_settings import array_digest, network_digest, shown_setting
from jaxstyle.model.vgg import VGG19

FORMAT = 1  # of the settings kept in a checkpoint: a checkpoint of another format is of another jaxstyle
THUMBNAIL = 128  # px: the longer side of a style's thumbnail in the model file
LOSS_FIELDS = ("content_layers", "style_layers", "content_layer_weights", "style_layer_weights", "content_weight",
               "style_weight", "tv_weight", "style_loss", "preserve_colors", "precision", "normalize_gradients")


def objective_fields(config: StyleConfig) -> dict:
    """The fields of ``config`` that define the training loss, as JSON holds them."""
    return json.loads(json.dumps({name: getattr(config, name) for name in LOSS_FIELDS}))


def sources_digest(sources: Sequence[storage.Location], spec: str | os.PathLike) -> str:
    """A digest of the content images' names, in order, relative to ``spec`` (a folder, or a
    manifest's folder) where they lie under it: the same folder named another way digests alike."""
    base = storage.location(spec)
    base = base if storage.is_folder(base) else base.parent
    h = hashlib.blake2b(digest_size=16)
    for source in sources:
        name = str(source)
        if not storage.is_url(name) and not storage.is_url(str(base)):
            name = os.path.relpath(os.path.abspath(name), os.path.abspath(str(base)))
        h.update(name.encode() + b"\0")
    return h.hexdigest()


def training_settings(*, styles: Sequence[np.ndarray], contents: str, content_count: int, size: int,
                      style_size: int, batch: int, seed: int, learning_rate: float, width: int, residual_blocks: int,
                      temporal_weight: float, config: StyleConfig, vgg: VGG19) -> dict:
    """What decides the parameters at each step, as JSON reads it back (see the module docstring).
    styles: the style images as given (float [h, w, 3]); contents: the content
    images' digest (:func:`sources_digest`), content_count: how many."""
    settings = {"format": FORMAT, "style images": [array_digest(s) for s in styles], "content images": contents,
                "content count": content_count, "size": size, "style size": style_size, "batch": batch,
                "seed": seed, "learning rate": learning_rate, "width": width, "residual blocks": residual_blocks,
                "temporal weight": temporal_weight, "objective": objective_fields(config),
                "network": network_digest(vgg)}
    return json.loads(json.dumps(settings))


def differences(previous: dict, settings: dict, style_names: Sequence[str]) -> list[str]:
    """How the ``previous`` settings differ from these, in words ("size 32, now 48")."""
    if not isinstance(previous, dict) or previous.get("format") != settings["format"] \
            or previous.keys() != settings.keys():
        return ["made by another version of jaxstyle"]
    found = []
    for key, value in settings.items():
        old = previous[key]
        if old == value or key == "content count":
            continue
        if key == "style images":
            if not isinstance(old, list) or len(old) != len(value):
                found.append(f"style images {len(old) if isinstance(old, list) else 'other'}, now {len(value)}")
            else:
                found += [f"style image {name} changed" for name, a, b in zip(style_names, old, value) if a != b]
        elif key == "content images":
            found.append(f"the content images changed ({shown_setting(previous['content count'])}, now "
                         f"{settings['content count']})")
        elif key == "network":
            found.append("the VGG weights changed")
        elif key == "objective" and isinstance(old, dict):
            found += [f"{name} {shown_setting(old.get(name))}, now {shown_setting(v)}" for name, v in value.items()
                      if old.get(name) != v]
        else:
            found.append(f"{key} {shown_setting(old)}, now {shown_setting(value)}")
    return found or ["made by another version of jaxstyle"]


def refusal(path, step: int, found: list[str]) -> str:
    """One line: a checkpoint of other settings, what differs, and the two ways on."""
    why = "; ".join(found[:3]) + (f"; {len(found) - 3} more" if len(found) > 3 else "")
    return (f"{path}: a checkpoint at step {step} of a run with other settings ({why}); run the original command "
            f"to resume it, or pass --overwrite to start afresh (its checkpoints are discarded)")


def host(leaf) -> np.ndarray:
    """A replicated array's value on this host (every device, every process holds all of it)."""
    if isinstance(leaf, jax.Array):
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(leaf)


def state_arrays(state: TrainState) -> dict[str, np.ndarray]:
    """The state's leaves by their path in the pytree ("params['conv_in']['kernel']", ...)."""
    return {jax.tree_util.keystr(path): host(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}


def restored_state(fresh: TrainState, arrays: dict[str, np.ndarray], where) -> TrainState:
    """``fresh`` (a state of the run's network and optimizer) with every leaf from ``arrays``
    (:func:`state_arrays` of a checkpoint); ValueError naming ``where`` when they do not fit."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(fresh)
    values = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        array = arrays.get(name)
        if array is None or array.shape != leaf.shape or array.dtype != leaf.dtype:
            got = "nothing" if array is None else f"{array.dtype} {array.shape}"
            raise ValueError(f"{where}: expected {name} as {leaf.dtype} {leaf.shape}, got {got} (a checkpoint of "
                             f"another version of jaxstyle? pass --overwrite to start afresh)")
        values.append(array)
    if len(arrays) != len(leaves):
        extra = sorted(set(arrays) - {jax.tree_util.keystr(path) for path, _ in leaves})
        raise ValueError(f"{where}: unexpected arrays {', '.join(extra[:3])} (a checkpoint of another version of "
                         f"jaxstyle? pass --overwrite to start afresh)")
    return jax.tree_util.tree_unflatten(tree, values)


def gathered(skipped: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (name, reason) pairs of every process of a ``jax.distributed`` run, each once, sorted by
    name (a collective: every process calls it)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps([list(s) for s in skipped]).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    found = {}
    for row, size in zip(rows, sizes):
        found.update({name: reason for name, reason in json.loads(row[:size].tobytes())})
    return sorted(found.items())


def thumbnail(image: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3], the longer side at most :data:`THUMBNAIL` px, of float [H, W, 3] in [0, 1]."""
    if max(image.shape[:2]) > THUMBNAIL:
        image = images.resize_image(image, THUMBNAIL)
    return images.to_uint8(image)


def version() -> str:
    try:
        return importlib.metadata.version("jaxstyle")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def model_metadata(*, width: int, residual_blocks: int, style_names: Sequence[str], config: StyleConfig,
                   temporal_weight: float, vgg: VGG19, steps: int, size: int, style_size: int, batch: int, seed: int,
                   learning_rate: float, skipped: Sequence[tuple[str, str]], seconds: float,
                   images_per_second: float | None, content_count: int, final_loss: float | None,
                   non_finite_steps: int = 0) -> dict:
    """The model file's metadata (:func:`jaxstyle.io.model_file.write_model`): how the network is
    built, the loss it was trained with, the VGG weights, the styles and the run (``non_finite_steps``:
    steps whose loss was not finite, which left the parameters as they were)."""
    return {
        "architecture": {"kind": "johnson2016", "width": width, "residual_blocks": residual_blocks,
                         "styles": len(style_names)},
        "objective": {**objective_fields(config), "temporal_weight": temporal_weight},
        "vgg": {"digest": network_digest(vgg), "source": vgg.source, "pooling": vgg.pooling,
                "preprocessing": vgg.preprocessing.to_dict()},
        "styles": list(style_names), "steps": steps, "size": size, "style_size": style_size, "batch": batch,
        "seed": seed, "learning_rate": learning_rate, "content_images": content_count,
        "skipped": {"count": len(skipped), "names": [name for name, _ in skipped]},
        "training_seconds": round(seconds, 3),
        "images_per_second": None if images_per_second is None else round(images_per_second, 3),
        "final_loss": final_loss, "non_finite_steps": non_finite_steps, "jaxstyle": version(),
    }
