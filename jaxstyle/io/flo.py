"""Middlebury ``.flo`` optical flow files (Baker et al., "A Database and Evaluation Methodology for
Optical Flow", IJCV 2011; the format of the Middlebury and MPI-Sintel benchmarks).

Layout, all little-endian: the float32 tag 202021.25 (the bytes ``PIEH``), int32 width, int32
height, then ``height * width`` pairs (u, v) of float32, row by row. u is the horizontal (x)
displacement and v the vertical (y) one, in pixels. Values above 1e9 conventionally mark unknown
flow; they are read and written as they are.
"""

from __future__ import annotations

import os

import numpy as np

from jaxstyle.io import storage

TAG = 202021.25
_HEADER = 12  # tag, width, height: 4 bytes each


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.flo`` file as float32 [H, W, 2]: ``[..., 0]`` is u (x), ``[..., 1]`` is v (y).

    ValueError (one line naming the file) for a missing file, a wrong tag, a bad size in the header,
    or a file shorter or longer than its header says.
    """
    where = storage.location(path)
    try:
        data = storage.read_bytes(where)
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: is a folder, expected a .flo file") from None
    except PermissionError:
        raise ValueError(f"{where}: permission denied") from None
    if len(data) < _HEADER:
        raise ValueError(f"{where}: truncated .flo file: {len(data)} bytes, shorter than the {_HEADER}-byte header")
    tag = float(np.frombuffer(data, "<f4", count=1)[0])
    if tag != TAG:
        raise ValueError(f"{where}: not a Middlebury .flo file: tag {tag!r}, expected {TAG}")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", count=2, offset=4))
    if width < 1 or height < 1:
        raise ValueError(f"{where}: bad .flo header: {width}x{height} px, expected positive sides")
    expected = _HEADER + 8 * width * height
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "too long"
        raise ValueError(f"{where}: {problem} .flo file: {len(data)} bytes, expected {expected} for "
                         f"{width}x{height} px")
    flow = np.frombuffer(data, "<f4", count=2 * width * height, offset=_HEADER)
    return flow.reshape(height, width, 2).astype(np.float32)  # a native-endian, writable copy


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write float [H, W, 2] flow (u, v in pixels) as a ``.flo`` file, atomically (a temporary file
    renamed over the target; a URL: one upload)."""
    where = storage.location(path)
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2 or flow.shape[0] < 1 or flow.shape[1] < 1:
        raise ValueError(f"{where}: expected flow [H, W, 2], got shape {flow.shape}")
    if not (np.issubdtype(flow.dtype, np.floating) or np.issubdtype(flow.dtype, np.integer)):
        raise ValueError(f"{where}: expected float flow, got dtype {flow.dtype}")
    height, width = flow.shape[:2]
    header = np.array([TAG], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    body = np.ascontiguousarray(flow, dtype="<f4").tobytes()
    storage.write_bytes(where, header + body)
