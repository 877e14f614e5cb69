"""Middlebury .flo files: the byte layout, a round trip, and one-line errors naming the file."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from jaxstyle.io.flo import read_flo, write_flo


def test_reads_the_documented_layout(tmp_path):
    # 2 wide, 1 high: (u, v) = (1.5, -2) at x=0, (0.25, 3) at x=1, little endian, row by row.
    path = tmp_path / "hand.flo"
    path.write_bytes(b"PIEH" + struct.pack("<ii", 2, 1) + struct.pack("<4f", 1.5, -2.0, 0.25, 3.0))
    flow = read_flo(path)
    assert flow.shape == (1, 2, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[0], [[1.5, -2.0], [0.25, 3.0]])


def test_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    flow[0, 0] = [1e10, 1e10]  # the benchmarks' "unknown" marker is kept as it is
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<ii", data[4:12]) == (5, 3) and len(data) == 12 + 8 * 15
    back = read_flo(path)
    np.testing.assert_array_equal(back, flow)
    back[0, 0, 0] = 0.0  # a writable copy
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_float64_is_written_as_float32(tmp_path):
    write_flo(tmp_path / "d.flo", np.full((2, 2, 2), 0.5))
    np.testing.assert_array_equal(read_flo(tmp_path / "d.flo"), np.full((2, 2, 2), 0.5, np.float32))


@pytest.mark.parametrize("data, problem", [
    (b"PIEX" + struct.pack("<ii", 1, 1) + bytes(8), "not a Middlebury .flo file"),
    (b"PIEH" + struct.pack("<ii", 2, 2) + bytes(8), "truncated .flo file"),
    (b"PIEH" + struct.pack("<ii", 1, 1) + bytes(12), "too long .flo file"),
    (b"PIEH" + struct.pack("<ii", 0, 4), "bad .flo header"),
    (b"PIE", "shorter than the 12-byte header"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, data, problem):
    path = tmp_path / "bad.flo"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=problem) as info:
        read_flo(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_flo(tmp_path / "none.flo")
    with pytest.raises(ValueError, match="is a folder"):
        read_flo(tmp_path)


def test_write_refuses_bad_shapes_and_leaves_nothing(tmp_path):
    for bad in (np.zeros((4, 4, 3)), np.zeros((4, 4)), np.zeros((0, 4, 2))):
        with pytest.raises(ValueError, match=r"expected flow \[H, W, 2\]"):
            write_flo(tmp_path / "x.flo", bad)
    with pytest.raises(ValueError, match="expected float flow"):
        write_flo(tmp_path / "x.flo", np.zeros((2, 2, 2), bool))
    assert list(tmp_path.iterdir()) == []
