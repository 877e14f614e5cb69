"""Training checkpoints: a flat dict of arrays and a JSON-able dict, one file per step, written atomically.

``FOLDER/step-00000123.ckpt`` is an uncompressed NumPy ``.npz`` (read with ``allow_pickle=False``:
loading it executes nothing) holding the arrays as ``a0``, ``a1``, ..., a ``meta`` entry (JSON: the
step, each array's name, dtype and shape, the caller's ``extra``) and the SHA-256 digest of the meta
and every array's bytes, so a truncated or altered file is recognised and passed over for the one
before. Dtypes the ``.npy`` format cannot name (bfloat16 and the other ml_dtypes) are stored as their
bits and viewed back; reading them needs ml_dtypes imported (jax imports it).

A file appears whole or not at all (a temporary file beside it, fsynced, renamed over the name); a
writer killed outright leaves only a ``.step-*.ckpt.*.part`` file, which no reader considers and the
next save removes. One run writes a folder at a time.

Local folders only: a URL is refused (a bucket's listing may lag behind the newest upload).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from jaxstyle.io.files import atomic_write
from jaxstyle.io.storage import is_url

FORMAT = "jaxstyle-checkpoint/1"
_NAME = re.compile(r"step-(\d{8,})\.ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class CheckpointWarning(UserWarning):
    """A checkpoint passed over for an older one."""


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return _local(folder) / f"step-{step:08d}.ckpt"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files in ``folder``, oldest first; [] for a missing folder.
    Names only: a file listed here may still be unreadable (:func:`load_checkpoint`)."""
    folder = _local(folder)
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a folder of checkpoints, got a file")
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and entry.name == f"step-{int(match.group(1)):08d}.ckpt" and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(folder: str | os.PathLike, step: int, arrays: Mapping[str, np.ndarray], extra: dict, *,
                    keep: int = 2) -> Path:
    """Write ``folder/step-{step:08d}.ckpt`` atomically, then remove all checkpoints but it and the
    ``keep - 1`` newest before it. Checkpoints of later steps are removed too: a run saving step k
    resumed from an earlier one, so they belong to a run that was abandoned (or were unreadable).

    arrays: name -> numeric array (bool, int, float, complex, ml_dtypes), any shape. extra: a
    JSON-able dict (it comes back through JSON: tuples as lists). Returns the file written."""
    folder = _local(folder)
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"expected the checkpoint's step as an integer >= 0, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"expected keep >= 1 checkpoints, got {keep!r}")
    if not isinstance(extra, dict):
        raise ValueError(f"expected extra as a dict, got {type(extra).__name__}")
    layout, members = [], {}
    for index, (name, value) in enumerate(arrays.items()):
        if not isinstance(name, str):
            raise ValueError(f"expected array names as text, got {name!r}")
        array = np.asarray(value)
        layout.append([name, array.dtype.name, list(array.shape)])
        members[f"a{index}"] = _storable(array, name)
    try:
        meta = json.dumps({"format": FORMAT, "step": int(step), "arrays": layout, "extra": extra}).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected extra to be JSON-able: {exc}") from None
    members["meta"] = np.frombuffer(meta, np.uint8)
    members["digest"] = np.frombuffer(_digest(meta, members).encode(), np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, int(step))
    atomic_write(path, lambda f: np.savez(f, **members))
    _prune(folder, int(step), keep)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[int, dict[str, np.ndarray], dict]:
    """(step, arrays, extra) of one checkpoint file; CheckpointError (one line) if it is missing,
    truncated, altered or of another kind."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta_bytes, digest = stored["meta"].tobytes(), stored["digest"].tobytes().decode()
            meta = json.loads(meta_bytes)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a jaxstyle checkpoint")
            members = {f"a{i}": stored[f"a{i}"] for i in range(len(meta["arrays"]))}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - zip, npy and JSON errors alike: the file is damaged
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if _digest(meta_bytes, members) != digest:
        raise CheckpointError(f"{path}: damaged checkpoint (its digest does not match its contents)")
    match = _NAME.fullmatch(path.name)
    if match and int(match.group(1)) != meta["step"]:
        raise CheckpointError(f"{path}: holds step {meta['step']}, not the step its name says")
    arrays = {}
    for (name, dtype, shape), array in zip(meta["arrays"], members.values()):
        try:
            arrays[name] = array if array.dtype.name == dtype else array.view(np.dtype(dtype))
        except TypeError:
            raise CheckpointError(f"{path}: array {name!r} is {dtype}: import ml_dtypes (or jax) to read it") from None
        if list(arrays[name].shape) != shape:
            raise CheckpointError(f"{path}: array {name!r} has shape {arrays[name].shape}, expected {tuple(shape)}")
    return meta["step"], arrays, meta["extra"]


def latest_checkpoint(folder: str | os.PathLike, *, on_skip: Callable[[str], None] | None = None
                      ) -> tuple[int, dict[str, np.ndarray], dict] | None:
    """(step, arrays, extra) of the newest readable checkpoint in ``folder``; None if there is none
    (or no folder). Each unreadable newer one is passed over with a one-line message to ``on_skip``
    (default: a :class:`CheckpointWarning`)."""
    for _, path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            message = f"{exc}; passed over for the one before"
            if on_skip is None:
                warnings.warn(message, CheckpointWarning, stacklevel=2)
            else:
                on_skip(message)
    return None


def _local(folder: str | os.PathLike) -> Path:
    if is_url(folder):
        raise ValueError(f"{folder}: checkpoints are kept in a local folder, not at a URL")
    return Path(folder)


def _storable(array: np.ndarray, name: str) -> np.ndarray:
    """The array as ``.npy`` can hold it without pickle: ml_dtypes (user-defined dtypes) as their bits."""
    if array.dtype.kind in "biufc":
        return array
    if array.dtype.isbuiltin == 2 and array.dtype.itemsize in (1, 2, 4, 8):
        return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")
    raise ValueError(f"expected numeric arrays in a checkpoint, got {name!r} of dtype {array.dtype}")


def _digest(meta: bytes, members: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(meta)
    for key in sorted((k for k in members if re.fullmatch(r"a\d+", k)), key=lambda k: int(k[1:])):
        array = np.ascontiguousarray(members[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return digest.hexdigest()


def _prune(folder: Path, saved: int, keep: int) -> None:
    found = list_checkpoints(folder)
    older, later = [path for step, path in found if step < saved], [path for step, path in found if step > saved]
    for path in [*older[:max(0, len(older) - (keep - 1))], *later]:
        path.unlink(missing_ok=True)
    for stale in folder.glob(".step-*.ckpt.*.part"):  # writers killed outright (one writer per folder)
        stale.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
