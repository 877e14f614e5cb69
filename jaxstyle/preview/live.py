"""What a run shows its preview page and what the page asks of the run: one object, shared by the
run's thread (which reports after every chunk of steps and takes the requests) and the server's
(which reads the state and posts requests). Nothing here blocks the run: every method holds a lock
for a few dictionary operations only, and images are encoded when a page asks for one, not before.
"""

from __future__ import annotations

import bisect
import io
import reprlib
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

WATCH_SECONDS = 5.0  # a page that asked for anything this recently is watching
MAX_POINTS = 2000  # points kept per loss curve (beyond it, every other one is dropped; never the newest)
FLOAT32_MAX = 3.4028234663852886e38  # the run's weights are float32


class LiveRun:
    """The shared state of one run. ``weights``: the steerable weights and their starting values."""

    def __init__(self, title: str, total: int, weights: dict[str, float] | None = None):
        self.title, self.total = title, total
        self.weights = dict(weights or {})
        self._lock = threading.Lock()
        self._version = 0
        self._step = 0
        self._label = ""
        self._curves: list[dict] = []
        self._numbers: list[int] = []  # each kept point's number: how many points were reported before it
        self._reported = 0
        self._thinned = 0  # how many times the curves were thinned
        self._image: Callable[[], np.ndarray] | None = None
        self._png: tuple[int, bytes] | None = None
        self._recent: list[tuple[str, Callable[[], np.ndarray]]] = []
        self._recent_png: dict[int, bytes] = {}
        self._generation = 0
        self._memory = ""
        self._started = time.monotonic()
        self._rate: list[tuple[float, int]] = []
        self._log: list[str] = []
        self._status = "running"
        self._asked = 0.0
        self._stop = False
        self._stopping = False  # the run took a stop request
        self._snapshot = False
        self._new_weights: dict[str, float] = {}

    # ------------------------------------------------------------------ the run's side
    def report(self, step: int, *, terms: dict | None = None, image: Callable[[], np.ndarray] | None = None,
               label: str | None = None, memory: str | None = None, total: int | None = None) -> None:
        """After a chunk: the global step, the weighted terms, a function giving the image (called
        only if a page asks for it), what is being worked on, the memory in use."""
        now = time.monotonic()
        with self._lock:
            self._step = step
            if total is not None:
                self.total = total
            if label is not None:
                self._label = label
            if memory is not None:
                self._memory = memory
            if terms is not None:  # non-finite values as None: JSON has no NaN
                self._curves.append({"step": step, **{k: (float(v) if np.isfinite(v) else None)
                                                      for k, v in terms.items()}})
                self._numbers.append(self._reported)
                self._reported += 1
                if len(self._curves) > MAX_POINTS:
                    keep = [*range(0, len(self._curves) - 1, 2), len(self._curves) - 1]
                    self._curves = [self._curves[i] for i in keep]
                    self._numbers = [self._numbers[i] for i in keep]
                    self._thinned += 1
            if image is not None:
                self._image = image
            self._rate = [*self._rate[-20:], (now, step)]
            self._version += 1

    def finished_item(self, label: str, image: Callable[[], np.ndarray], keep: int = 6) -> None:
        """A pair or frame done (batch, video): kept among the last ``keep`` shown."""
        with self._lock:
            self._recent = [*self._recent, (label, image)][-keep:]
            self._recent_png = {}
            self._generation += 1
            self._version += 1

    def say(self, message: str) -> None:
        """A line for the page's log (weight changes, snapshots)."""
        with self._lock:
            self._log = [*self._log[-50:], message]
            self._version += 1

    def end(self, status: str) -> None:
        """The run is over; the page shows ``status`` ("done", "stopped", "ended", ...). A run that
        took the page's stop request (:meth:`take_stop`) and ends with the generic "ended" shows
        "stopped": every job's Stop reads the same on the page."""
        with self._lock:
            self._status = "stopped" if status == "ended" and self._stopping else status
            self._version += 1

    def watched(self) -> bool:
        return time.monotonic() - self._asked < WATCH_SECONDS

    def take_stop(self) -> bool:
        with self._lock:
            stop, self._stop = self._stop, False
            self._stopping = self._stopping or stop
            return stop

    def take_snapshot(self) -> bool:
        with self._lock:
            snapshot, self._snapshot = self._snapshot, False
            return snapshot

    def take_weights(self) -> dict[str, float] | None:
        """The weights the page changed since the last call (None: none)."""
        with self._lock:
            change, self._new_weights = self._new_weights, {}
            self.weights.update(change)
            return change or None

    # ------------------------------------------------------------------ the page's side
    def state(self, since: int = 0) -> dict:
        """Everything the page shows; of the curves, the points kept among those reported from the
        ``since``-th on (0: all; clamped to [0, ``points``]; ``points`` in the answer: how many were
        reported, the next call's ``since``). Points are counted as reported, not by position in the
        thinned series, so a thinning between two calls skips none of the kept ones; ``thinned``
        counts the thinnings."""
        now = time.monotonic()
        with self._lock:
            since = min(max(0, since), self._reported)
            first = bisect.bisect_left(self._numbers, since)
            self._asked = now
            rate = 0.0
            if len(self._rate) >= 2 and self._rate[-1][0] > self._rate[0][0]:
                rate = (self._rate[-1][1] - self._rate[0][1]) / (self._rate[-1][0] - self._rate[0][0])
            left = max(0, self.total - self._step)
            return {"title": self.title, "step": self._step, "total": self.total, "label": self._label,
                    "version": self._version, "steps_per_second": rate,
                    "eta_seconds": left / rate if rate > 0 else None, "elapsed_seconds": now - self._started,
                    "memory": self._memory, "weights": {**self.weights, **self._new_weights},
                    "curves": self._curves[first:], "since": since, "points": self._reported,
                    "thinned": self._thinned, "log": list(self._log),
                    "recent": [label for label, _ in self._recent], "status": self._status,
                    "has_image": self._image is not None}

    def news(self, last: dict | None) -> dict | None:
        """What an event stream sends after it sent ``last`` (None: nothing yet): the state with the
        points reported since, or with the whole series (``since`` 0, which a page takes in place of
        its own) after the curves were thinned; None while nothing changed."""
        if last is None:
            return self.state(0)
        now = self.state(last["points"])
        if now["version"] == last["version"]:
            return None
        return self.state(0) if now["thinned"] != last["thinned"] else now

    def image_png(self) -> bytes | None:
        """The current image as PNG (encoded once per version, when asked)."""
        with self._lock:
            self._asked = time.monotonic()
            version, image = self._version, self._image
            if self._png is not None and self._png[0] == version:
                return self._png[1]
        if image is None:
            return None
        data = _png(image())
        with self._lock:
            self._png = (version, data)
        return data

    def recent_png(self, index: int) -> bytes | None:
        with self._lock:
            if not 0 <= index < len(self._recent):
                return None
            if index in self._recent_png:
                return self._recent_png[index]
            image, generation = self._recent[index][1], self._generation
        data = _png(image())
        with self._lock:
            if generation == self._generation:  # the list did not move meanwhile
                self._recent_png[index] = data
        return data

    def request(self, action: object, weights: object = None) -> str | None:
        """A control from the page: "stop", "snapshot" or "weights" (names in :attr:`weights`, values
        finite and >= 0). Returns a short error message, or None when taken."""
        with self._lock:
            if self._status != "running":
                return "the run has ended"
            if action == "stop":
                self._stop = True
            elif action == "snapshot":
                self._snapshot = True
            elif action == "weights":
                if not isinstance(weights, dict) or not weights:
                    return "expected weights"
                for name, value in weights.items():
                    if name not in self.weights:
                        return f"unknown weight {reprlib.repr(name)}"
                    if (isinstance(value, bool) or not isinstance(value, (int, float))
                            or not 0 <= value <= FLOAT32_MAX):
                        return f"expected {name} to be a finite number >= 0"
                self._new_weights.update({k: float(v) + 0.0 for k, v in weights.items()})  # -0.0 as 0.0
            else:
                return f"unknown action {reprlib.repr(action)}"
            self._version += 1
            return None


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    data = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(data).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
