"""The model file of a trained feed-forward network: one safetensors file, read without executing
anything (no pickle).

Layout: the parameters (a nested dict of arrays) under ``params/<a>/<b>/...``, the styles'
thumbnails (uint8 [h, w, 3]) under ``thumbnails/<i>``, and in the safetensors ``__metadata__``:
``format`` ("jaxstyle-model"), ``version``, ``metadata`` (the caller's JSON: architecture, the
objective's configuration, the VGG weights' checksum, style names, steps trained) and ``digest``:
SHA-256 over every tensor's key, dtype, shape and bytes (sorted by key) and the metadata JSON, so
an altered file is refused rather than half trusted.

Every failure to read is a :class:`ModelFileError` (a ``ValueError``) with one line naming the
file and the problem. Paths may be URLs (:mod:`jaxstyle.io.storage`); writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import safetensors.numpy

from jaxstyle.io import storage
from jaxstyle.io.storage import Location

FORMAT = "jaxstyle-model"
VERSION = 1
PARAMS, THUMBNAILS = "params", "thumbnails"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
_HEAD = 1 << 16  # bytes read first, to tell another kind of file without reading it whole
_DTYPES = frozenset("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split())
_SIGNATURES = (  # (offset, bytes, what a file starting so is)
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"PK\x03\x04", "a ZIP archive (a NumPy .npz or a PyTorch .pt?)"),
    (0, b"\x93NUMPY", "a NumPy .npy array"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 weights?)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (4, b"ftyp", "an MP4/MOV video"),
)


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------- writing

def write_model(path: str | os.PathLike | Location, params: Mapping, metadata: Mapping,
                thumbnails: Sequence[np.ndarray] = ()) -> None:
    """Write ``params`` (a nested dict of arrays), ``metadata`` (a dict JSON can hold) and the
    styles' ``thumbnails`` (uint8 [h, w, 3]) to ``path``, whole or not at all. Bad arguments are
    a ``ValueError`` before anything is written; a place that cannot be written, a
    :class:`ModelFileError` (local) or a ``StorageError`` (URL)."""
    where = storage.location(path)
    if not isinstance(metadata, Mapping):
        raise ValueError(f"expected the model's metadata as a dict, got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected model metadata that JSON can hold, got {exc}") from None
    tensors = {}
    for key, array in _flatten(params, PARAMS):
        tensors[key] = _checked(key, array)
    for i, thumbnail in enumerate(thumbnails):
        thumbnail = np.asarray(thumbnail)
        if thumbnail.dtype != np.uint8 or thumbnail.ndim != 3 or thumbnail.shape[-1] != 3 or 0 in thumbnail.shape:
            raise ValueError(f"expected thumbnail {i} as uint8 [h, w, 3], got {thumbnail.dtype} {thumbnail.shape}")
        tensors[f"{THUMBNAILS}/{i}"] = np.ascontiguousarray(thumbnail)
    header = {"format": FORMAT, "version": str(VERSION), "metadata": text, "digest": _digest(tensors, text)}
    data = safetensors.numpy.save(tensors, metadata=header)
    try:
        storage.atomic_write(where, lambda f: f.write(data))
    except OSError as exc:  # a URL's failures are StorageErrors already
        raise ModelFileError(f"{where}: cannot be written ({exc.strerror or exc})") from None


def _flatten(tree: Mapping, prefix: str):
    if not isinstance(tree, Mapping):
        raise ValueError(f"expected the parameters as nested dicts of arrays, got {type(tree).__name__} at {prefix}")
    for name, value in tree.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"expected parameter names without '/', got {name!r} in {prefix}")
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}/{name}")
        else:
            yield f"{prefix}/{name}", value


def _checked(key: str, array) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.name not in _DTYPES:
        raise ValueError(f"expected {key} as a bool, integer or float16/32/64 array, got dtype {array.dtype}")
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # not ascontiguousarray: keeps 0-d


def _digest(tensors: Mapping[str, np.ndarray], metadata: str) -> str:
    """SHA-256 over each tensor's key, dtype, shape and little-endian bytes in key order, then the
    metadata JSON; every field length-prefixed, so no two contents hash alike by concatenation."""
    digest = hashlib.sha256()

    def field(data: bytes):
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    for key in sorted(tensors):
        array = tensors[key]
        field(key.encode())
        field(array.dtype.name.encode())
        field(json.dumps(list(array.shape)).encode())
        field(np.asarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    field(metadata.encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading

def read_model(path: str | os.PathLike | Location) -> tuple[dict, dict, list[np.ndarray]]:
    """(params as nested dicts of NumPy arrays, metadata dict, thumbnails uint8 [h, w, 3]) from a
    file :func:`write_model` wrote; :class:`ModelFileError` for anything else."""
    where = storage.location(path)
    tensors, metadata, _ = _load(where, _read(where))
    return _params(where, tensors), metadata, _thumbnails(where, tensors)


def model_info(path: str | os.PathLike | Location) -> dict:
    """What ``jaxstyle model info`` shows: the file, its size in bytes, its digest, the number of
    parameters (scalars) and tensors, the number of thumbnails and the metadata."""
    where = storage.location(path)
    data = _read(where)
    tensors, metadata, digest = _load(where, data)
    params = [a for key, a in tensors.items() if key.startswith(f"{PARAMS}/")]
    return {"file": str(where), "bytes": len(data), "digest": digest,
            "parameters": sum(math.prod(a.shape) for a in params), "tensors": len(params),
            "thumbnails": len(tensors) - len(params), "metadata": metadata}


def _read(where: Location) -> bytes:
    """The file's bytes, once its first bytes show it may be a safetensors file (a video passed by
    mistake is refused without being read whole)."""
    head = _read_bytes(where, limit=_HEAD)
    if not head:
        raise ModelFileError(f"{where}: expected a jaxstyle model file (safetensors), got an empty file")
    size = int.from_bytes(head[:8], "little")
    if len(head) < 9 or head[8:9] != b"{" or size > _MAX_HEADER:
        raise ModelFileError(f"{where}: expected a jaxstyle model file (safetensors), got {_kind(head)}")
    return head if len(head) < _HEAD else _read_bytes(where)


def _read_bytes(where: Location, limit: int | None = None) -> bytes:
    try:
        return storage.read_bytes(where, limit=limit)
    except storage.StorageError as exc:
        raise ModelFileError(str(exc)) from None
    except IsADirectoryError:
        raise ModelFileError(f"{where}: is a folder, expected a model file") from None
    except FileNotFoundError:
        raise ModelFileError(f"{where}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{where}: cannot be read ({exc.strerror or exc})") from None


def _load(where: Location, data: bytes) -> tuple[dict[str, np.ndarray], dict, str]:
    """(tensors by key, metadata, digest) of a checked jaxstyle model file's bytes."""
    header = _header(where, data)
    ours = header.get("__metadata__")
    if not isinstance(ours, dict) or ours.get("format") != FORMAT:
        raise ModelFileError(f"{where}: a safetensors file, but not a jaxstyle model (no jaxstyle metadata)")
    version, text, digest = ours.get("version", ""), ours.get("metadata"), ours.get("digest")
    if not (isinstance(version, str) and version.isascii() and version.isdigit()) or not isinstance(text, str) \
            or not isinstance(digest, str):
        raise ModelFileError(f"{where}: corrupt jaxstyle metadata (no version, metadata or digest)")
    if int(version) < 1:
        raise ModelFileError(f"{where}: corrupt jaxstyle metadata (version {version})")
    if int(version) > VERSION:
        raise ModelFileError(f"{where}: model file version {int(version)} is newer than this jaxstyle reads "
                             f"({VERSION}); upgrade jaxstyle")
    try:
        metadata = json.loads(text)
    except ValueError:
        raise ModelFileError(f"{where}: altered or corrupt (its metadata is not valid JSON)") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{where}: altered or corrupt (its metadata is not a JSON object)")
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors' own errors, explained in one line
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFileError(f"{where}: a corrupt safetensors file (its header does not match its data: "
                             f"{detail})") from None
    if _digest(tensors, text) != digest:
        raise ModelFileError(f"{where}: altered or corrupt (its contents do not match the digest it was "
                             f"written with)")
    return tensors, metadata, digest


def _header(where: Location, data: bytes) -> dict:
    """The safetensors JSON header of ``data`` (which starts as one, :func:`_read`), or the one line
    saying why it is not a whole one."""
    size = int.from_bytes(data[:8], "little")
    if 8 + size > len(data):
        raise ModelFileError(f"{where}: truncated (a safetensors header of {size} bytes, but the file has "
                             f"{len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except ValueError:
        raise ModelFileError(f"{where}: a corrupt safetensors file (its header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{where}: a corrupt safetensors file (its header is not a JSON object)")
    try:
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
                  default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ModelFileError(f"{where}: a corrupt safetensors file (a tensor without data offsets)") from None
    if 8 + size + end > len(data):
        raise ModelFileError(f"{where}: truncated ({len(data)} bytes, its header describes {8 + size + end})")
    return header


def _kind(data: bytes) -> str:
    """What a file that is not safetensors seems to be, from its first bytes."""
    for offset, signature, kind in _SIGNATURES:
        if data[offset:offset + len(signature)] == signature:
            return kind
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (an old PyTorch .pt?), which is never unpickled here"
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    if len(data) < 9:
        return f"{len(data)} bytes, too short for one (truncated?)"
    return f"a file of another kind (starting {data[:8].hex(' ')})"


def _params(where: Location, tensors: Mapping[str, np.ndarray]) -> dict:
    params: dict = {}
    for key in sorted(tensors):
        head, *names = key.split("/")
        if head == THUMBNAILS:
            continue
        if head != PARAMS or not names:
            raise ModelFileError(f"{where}: altered or corrupt (an unexpected tensor {key!r})")
        node = params
        for name in names[:-1]:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ModelFileError(f"{where}: altered or corrupt (tensor {key!r} inside another tensor)")
        if names[-1] in node:
            raise ModelFileError(f"{where}: altered or corrupt (tensor {key!r} inside another tensor)")
        node[names[-1]] = tensors[key]
    return params


def _thumbnails(where: Location, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    found = {key.split("/", 1)[1]: a for key, a in tensors.items() if key.startswith(f"{THUMBNAILS}/")}
    expected = [str(i) for i in range(len(found))]
    if sorted(found) != sorted(expected):
        raise ModelFileError(f"{where}: altered or corrupt (thumbnails {sorted(found)})")
    thumbnails = [found[i] for i in expected]
    for i, thumbnail in enumerate(thumbnails):
        if thumbnail.dtype != np.uint8 or thumbnail.ndim != 3 or thumbnail.shape[-1] != 3:
            raise ModelFileError(f"{where}: altered or corrupt (thumbnail {i} is {thumbnail.dtype} {thumbnail.shape})")
    return thumbnails
