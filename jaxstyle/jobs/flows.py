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

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxstyle.flow import FlowFunction, resize_flow
from jaxstyle.io import files, flo


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


class FlowProvider:
    """Flows between the frames of one input at one size, by index.

    frames: the working frames (indexable, uint8 or float [H, W, 3]); offset: the input's number
    of frame 0 (for ``.flo`` names); compute: a :data:`~jaxstyle.flow.FlowFunction`; cache: a folder
    (None: keep nothing); pattern: read ``.flo`` files instead of computing.
    """

    def __init__(self, frames: Sequence, *, compute: FlowFunction | None = None, cache: Path | None = None,
                 pattern: str | None = None, offset: int = 0, log: Callable[[str], None] = lambda message: None):
        if (compute is None) == (pattern is None):
            raise ValueError("expected a flow function or a .flo file pattern, not both or neither")
        self.frames, self.compute, self.cache, self.pattern, self.offset = frames, compute, cache, pattern, offset
        self.shape = np.asarray(frames[0]).shape[:2]
        self._futures: dict[tuple[int, int], concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxstyle-flow")
        self.computed = 0
        self.log = log
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)

    def prefetch(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Start computing ``pairs`` in order on the background thread."""
        for pair in pairs:
            self._future(pair)

    def _future(self, pair: tuple[int, int]) -> concurrent.futures.Future:
        with self._lock:
            future = self._futures.get(pair)
            if future is None:
                future = self._futures[pair] = self._pool.submit(self._load, *pair)
            return future

    def __call__(self, a: int, b: int) -> np.ndarray:
        return self._future((a, b)).result()

    def _cached(self, a: int, b: int) -> Path | None:
        return None if self.cache is None else self.cache / f"flow_{a + self.offset:06d}_{b + self.offset:06d}.npy"

    def _load(self, a: int, b: int) -> np.ndarray:
        if self.pattern is not None:
            path = Path(self.pattern.format(a=a + self.offset, b=b + self.offset))
            if not path.is_file():
                raise ValueError(f"{path}: no such flow file (the flow from frame {a + self.offset} to "
                                 f"{b + self.offset}, by --flow {self.pattern})")
            return resize_flow(flo.read_flo(path), *self.shape)
        cached = self._cached(a, b)
        if cached is not None and cached.is_file():
            try:
                flow = np.load(cached)
                if flow.shape == (*self.shape, 2) and flow.dtype == np.float32:
                    return flow
            except (OSError, ValueError):
                pass  # a damaged cache entry is computed again
        flow = np.asarray(self.compute(np.asarray(self.frames[a]), np.asarray(self.frames[b])), np.float32)
        if flow.shape != (*self.shape, 2) or not np.isfinite(flow).all():
            raise ValueError(f"the flow function gave {flow.shape} (or non-finite values) for frames {a} -> {b}, "
                             f"expected finite {(*self.shape, 2)}")
        self.computed += 1
        if cached is not None:
            files.atomic_write(cached, lambda f: np.save(f, flow))
        return flow

    def close(self) -> None:
        """Stop computing what was not asked for yet."""
        self._pool.shutdown(wait=True, cancel_futures=True)
