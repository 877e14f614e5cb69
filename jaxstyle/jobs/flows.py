"""The optical flow of a video job: computed on the host beside the device's work, and cached.

:class:`FlowProvider` is the engine's :data:`~jaxstyle.engine.video.FlowSource`. It computes the
flows a run will ask for in the order it will ask for them, on a background thread (OpenCV releases
the GIL), so that the flow of the next frames is ready when the device finishes the current one;
asking for a flow waits only for that flow. Each flow is kept as a ``.npy`` file in a cache folder
named after the input (its bytes' digest), the frame size and the method, so a re-run, a resumed
run or a run with another style computes none again. ``.flo`` files from another tool can stand
in for the computation (``pattern``: a path with ``{a}`` and ``{b}``, the 0-based frame numbers of
the input, for the flow from frame a to frame b); they are resized to the working size.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxstyle.flow import FlowFunction, resize_flow
from jaxstyle.io import files, flo
from jaxstyle.jobs.video_work import read_npy


def needed_flows(count: int, relative_frames: Sequence[int], passes: int, parallel: bool) -> list[tuple[int, int]]:
    """The flows (a, b) between frames 0 .. count - 1 that a run asks for, in the order it asks:
    both directions between neighbours (cuts, masks, warps), and for the long-term terms between
    each frame and the earlier ones ``relative_frames`` back."""
    order: list[tuple[int, int]] = []
    reach = (1,) if parallel or passes > 1 else tuple(relative_frames)
    for i in range(1, count):
        for j in sorted(set(reach) | {1}):
            if i - j >= 0:
                order += [(i, i - j), (i - j, i)]
    return list(dict.fromkeys(order))


def flo_path(pattern: str, a: int, b: int) -> Path:
    """The ``.flo`` file of ``pattern`` for the flow from input frame a to frame b."""
    return Path(pattern.format(a=a, b=b))


def flo_files(pattern: str, pairs: Iterable[tuple[int, int]], offset: int = 0) -> list[Path]:
    """The ``.flo`` files of ``pattern`` for ``pairs`` of working frames (input frame ``offset`` is
    frame 0), checked to exist."""
    paths = []
    for a, b in pairs:
        path = flo_path(pattern, a + offset, b + offset)
        if not path.is_file():
            raise ValueError(f"{path}: no such flow file (the flow from frame {a + offset} to {b + offset}, "
                             f"by --flow {pattern})")
        paths.append(path)
    return paths


UNKNOWN_FLOW = 1e9  # Middlebury's marker of an unknown flow vector: at or above it, in either component
OUT_OF_FRAME = 1e6  # what an unknown vector becomes: a match far out of frame, so its weight is 0


class FlowProvider:
    """Flows between the frames of one input at one size, by index.

    frames: the working frames (indexable, uint8 or float [H, W, 3]); offset: the input's number
    of frame 0 (for ``.flo`` names); compute: a :data:`~jaxstyle.flow.FlowFunction`; cache: a folder
    (kept as float16 ``.npy``: a hundredth of a pixel at small motions); pattern: read ``.flo``
    files instead of computing. :meth:`prefetch` computes ahead in the run's order, at most
    ``ahead`` flows beyond the newest one asked for, and only the ``keep`` newest flows stay in
    memory (the rest are read back from the cache), so a long video needs no more memory than a
    short one.
    """

    def __init__(self, frames: Sequence, *, compute: FlowFunction | None = None, cache: Path | None = None,
                 pattern: str | None = None, offset: int = 0, ahead: int = 24, keep: int = 48):
        if (compute is None) == (pattern is None):
            raise ValueError("expected a flow function or a .flo file pattern, not both or neither")
        self.frames, self.compute, self.cache, self.pattern, self.offset = frames, compute, cache, pattern, offset
        self.shape = np.asarray(frames[0]).shape[:2]
        self.ahead, self.keep = ahead, keep
        self.computed = 0
        self._recent: dict[tuple[int, int], np.ndarray] = {}
        self._order: list[tuple[int, int]] = []
        self._position: dict[tuple[int, int], int] = {}
        self._asked = -1  # the furthest position in the order asked for so far
        self._done: set[tuple[int, int]] = set()
        self._error: BaseException | None = None
        self._stop = False
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)

    @property
    def held(self) -> int:
        """How many flows are kept in memory now (at most ``keep``)."""
        with self._changed:
            return len(self._recent)

    def flo_path(self, a: int, b: int) -> Path:
        return flo_path(self.pattern, a + self.offset, b + self.offset)

    def check_files(self, pairs: Iterable[tuple[int, int]]) -> None:
        """With a ``.flo`` pattern: every file the run will read exists (before anything runs)."""
        if self.pattern is not None:
            flo_files(self.pattern, pairs, self.offset)

    def prefetch(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Compute ``pairs`` in this order on a background thread, ahead of the run."""
        with self._changed:
            for pair in pairs:
                if pair not in self._position:
                    self._position[pair] = len(self._order)
                    self._order.append(pair)
        if self._worker is None and self.compute is not None:
            self._worker = threading.Thread(target=self._work, name="jaxstyle-flow", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        for position, pair in enumerate(self._order):
            with self._changed:
                while not self._stop and position > self._asked + self.ahead:
                    self._changed.wait()
                if self._stop:
                    return
                if pair in self._done:
                    continue
            try:
                flow = self._load(*pair)
            except BaseException as exc:  # reported to the run at its next request
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self._remember(pair, flow)
                self._changed.notify_all()

    def _remember(self, pair: tuple[int, int], flow: np.ndarray) -> None:
        self._done.add(pair)
        self._recent[pair] = flow
        while len(self._recent) > self.keep:
            self._recent.pop(next(iter(self._recent)))

    def __call__(self, a: int, b: int) -> np.ndarray:
        pair = (a, b)
        with self._changed:
            position = self._position.get(pair)
            if position is not None and position > self._asked:
                self._asked = position
                self._changed.notify_all()
            if pair in self._recent:
                return self._recent[pair]
            while (self._worker is not None and self._worker.is_alive() and pair not in self._done
                   and position is not None and self._error is None):
                self._changed.wait(0.05)
            if self._error is not None:
                raise self._error
            if pair in self._recent:
                return self._recent[pair]
        flow = self._load(a, b)  # not prefetched, or no longer in memory: from the cache, else computed here
        with self._changed:
            self._remember(pair, flow)
        return flow

    def _cached(self, a: int, b: int) -> Path | None:
        return None if self.cache is None else self.cache / f"flow_{a + self.offset:06d}_{b + self.offset:06d}.npy"

    def _load(self, a: int, b: int) -> np.ndarray:
        if self.pattern is not None:
            [path] = flo_files(self.pattern, [(a, b)], self.offset)
            flow = flo.read_flo(path)
            unknown = ~np.isfinite(flow).all(-1) | (np.abs(flow) >= UNKNOWN_FLOW).any(-1)
            flow[unknown] = OUT_OF_FRAME
            return resize_flow(flow, *self.shape)
        cached = self._cached(a, b)
        if cached is not None and cached.is_file():
            try:
                flow = read_npy(cached)
                if flow.shape == (*self.shape, 2):
                    return flow.astype(np.float32)
            except (OSError, ValueError):
                pass  # a damaged cache entry is computed again
        try:
            flow = np.asarray(self.compute(np.asarray(self.frames[a]), np.asarray(self.frames[b])), np.float32)
        except Exception as exc:  # OpenCV's own errors, or a user's flow function
            raise ValueError(f"the optical flow from frame {a + self.offset} to {b + self.offset} failed: "
                             f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
                             ) from None
        if flow.shape != (*self.shape, 2) or not np.isfinite(flow).all():
            raise ValueError(f"the flow function gave {flow.shape} (or non-finite values) for frames "
                             f"{a + self.offset} -> {b + self.offset}, expected finite {(*self.shape, 2)}")
        self.computed += 1
        if cached is not None:  # as the cache keeps it, so that a resumed run sees the same flows
            flow = flow.astype(np.float16)
            files.atomic_write(cached, lambda f: np.save(f, flow))
            flow = flow.astype(np.float32)
        return flow

    def close(self) -> None:
        """Stop computing ahead (what was asked for is done)."""
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        if self._worker is not None:
            self._worker.join()
