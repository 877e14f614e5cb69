"""A video job's work folder (``<output>.jaxstyle-work``, beside the output): the decoded frames of
the range (``input/frame_NNNNN.npy``, uint8), every finished frame of every pass
(``pass_P/frame_NNNNN.png``, written atomically), the records (``records.jsonl``) and the settings
they were made with (``settings.json``, :mod:`jaxstyle.jobs.video_settings`). An interrupted run
leaves it for the same command to resume; the finished output is assembled from it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxstyle.engine.video import FrameRecord
from jaxstyle.io import files, images
from jaxstyle.io import video as video_io

WORK_SUFFIX = ".jaxstyle-work"
_NPY = threading.Lock()


def read_npy(path: Path) -> np.ndarray:
    """``np.load`` of a ``.npy`` file, one thread at a time: NumPy parses its header with ``ast``, whose
    node constructors CPython 3.11 does not make safe across threads (a rare "AST constructor recursion
    depth mismatch" SystemError, python/cpython#106905), and the flow thread reads beside the run's."""
    with _NPY:
        return np.load(path)


def work_folder(output: Path) -> Path:
    """Where an unfinished run keeps its frames: beside the output."""
    return output.with_name(output.name + WORK_SUFFIX)


class DiskStore:
    """The engine's :class:`~jaxstyle.engine.video.FrameStore` in the work folder: one PNG per frame
    and pass, written atomically, and the records as JSON lines."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, pass_index: int, index: int) -> Path:
        return self.folder / f"pass_{pass_index}" / f"frame_{index:05d}.png"

    def get(self, pass_index: int, index: int) -> np.ndarray | None:
        path = self.path(pass_index, index)
        return images.load_image(path) if path.is_file() else None

    def put(self, pass_index: int, index: int, image: np.ndarray, record: FrameRecord) -> None:
        path = self.path(pass_index, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save_image(path, image)
        with (self.folder / "records.jsonl").open("a") as f:
            f.write("\n" + json.dumps(dataclasses.asdict(record)))  # a line cut by a kill spoils no other

    def finished(self) -> int:
        """How many frames are finished, every pass's counted."""
        return finished_frames(self.folder)

    def records(self) -> dict[tuple[int, int], FrameRecord]:
        """The newest record of every frame and pass written so far (a resumed run's included)."""
        out = {}
        path = self.folder / "records.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    record = FrameRecord(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a kill
                out[record.pass_index, record.index] = record
        return out


def finished_frames(work: Path) -> int:
    """The finished frames in a work folder, every pass's counted (0 when there is none)."""
    return sum(1 for folder in work.glob("pass_*") for path in folder.glob("frame_*.png") if path.is_file())


class WorkFrames(Sequence):
    """The decoded working frames of the range, read back from the work folder as float32 [0, 1]."""

    def __init__(self, folder: Path, count: int):
        self.folder, self.count = folder, count
        self._recent: dict[int, np.ndarray] = {}

    def path(self, index: int) -> Path:
        return self.folder / f"frame_{index:05d}.npy"

    def raw(self, index: int) -> np.ndarray:
        return read_npy(self.path(index))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        if index not in self._recent:
            if len(self._recent) >= 64:
                self._recent.pop(next(iter(self._recent)))
            self._recent[index] = self.raw(index).astype(np.float32) / 255.0
        return self._recent[index]


class RawFrames(Sequence):
    """The working frames as uint8 (what the flow is computed from)."""

    def __init__(self, frames: WorkFrames):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.frames.raw(index)


def decode(source: Path, folder: Path, size: int, shape: tuple[int, int], start: int, end: int,
           log) -> WorkFrames:
    """Frames ``start .. end - 1`` of ``source`` at ``shape`` (longest side ``size``), decoded once into
    ``folder`` (kept for a resumed run)."""
    folder.mkdir(exist_ok=True)
    count = end - start
    frames = WorkFrames(folder, count)
    if all(frames.path(i).is_file() for i in range(count)):
        return frames
    decoded = 0
    for index, frame in video_io.read_frames(source, size, start=start, end=end):
        if frame.shape[:2] != shape:
            raise ValueError(f"{source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first "
                             f"{shape[1]}x{shape[0]}: every frame must have one size")
        target = frames.path(index - start)
        files.atomic_write(target, lambda f, frame=frame: np.save(f, images.to_uint8(frame)))
        decoded += 1
    if decoded < count:
        raise ValueError(f"{source}: expected {count} frames from {start}, decoded {decoded}")
    log(f"decoded {count} frames at {shape[1]}x{shape[0]}")
    return frames


def is_frame_file(path: Path) -> bool:
    return path.is_file() and path.name.startswith("frame_") and path.suffix == ".png"


def write_folder(output: Path, frames: list[Path], overwrite: bool) -> None:
    """The frames as ``frame_00000.png`` ... in a new folder, renamed into place when complete."""
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for i, frame in enumerate(frames):
            shutil.copyfile(frame, partial / f"frame_{i:05d}.png")
        if output.exists() and overwrite:
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        partial.rename(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
