"""A video job's report: the frames and passes, the cuts, the mean losses, the warping error of the
output and of the input (Lai et al. 2018), and the speed of this run (only the frames it computed:
a resumed run's earlier frames are counted apart)."""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.engine.video import FrameRecord, VideoResult
from jaxstyle.jobs.video_work import DiskStore, WorkFrames
from jaxstyle.objective.temporal import reliability, warping_error


def temporal_error(frames: Sequence, flows: Callable[[int, int], np.ndarray], cuts: Sequence[int] = ()) -> float:
    """The mean warping error (Lai et al. 2018) of a sequence of frames [H, W, 3] in [0, 1] over
    its neighbouring pairs: each later frame warped onto the earlier with the input's flow, over the
    pixels the input's forward-backward check finds unoccluded. Pairs across a scene cut (``cuts``:
    the first frames of new shots) are left out."""
    errors = []
    for t in range(len(frames) - 1):
        if t + 1 in cuts:
            continue
        forward, backward = jnp.asarray(flows(t, t + 1)), jnp.asarray(flows(t + 1, t))
        mask = reliability(forward, backward)
        errors.append(float(warping_error(jnp.asarray(frames[t + 1]), jnp.asarray(frames[t]), forward, mask)))
    return float(np.mean(errors)) if errors else 0.0


@dataclasses.dataclass(frozen=True)
class Speed:
    """This run's share of the frames: ``computed`` (each pass of a frame counts once) and
    ``resumed`` (finished by an earlier run), in ``seconds``; ``per_second``: output frames per
    second (a frame of P passes counts 1/P per pass computed)."""

    computed: int
    resumed: int
    passes: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.computed / self.passes / max(self.seconds, 1e-9)

    def said(self) -> str:
        """For the log: "3 computed in 1.2 s, 2.50 frames/s, 2 resumed" (frame passes with several)."""
        what = "" if self.passes == 1 else " frame passes"
        pace = (f"{self.per_second:.2f} frames/s" if self.per_second >= 0.1 or not self.computed
                else f"{1 / self.per_second:.1f} s/frame")
        return f"{self.computed}{what} computed in {self.seconds:.1f} s, {pace}, {self.resumed} resumed"


def speed(records: Sequence[FrameRecord], passes: int, seconds: float) -> Speed:
    """The speed of a run from its records (those of frames taken from the work folder: ``resumed``)."""
    resumed = sum(1 for r in records if r.start == "resumed")
    return Speed(len(records) - resumed, resumed, passes, seconds)


class _Stored(Sequence):
    def __init__(self, store: DiskStore, pass_index: int, count: int):
        self.store, self.pass_index, self.count = store, pass_index, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        return self.store.get(self.pass_index, index)


def _frame_times(info, start: int, count: int) -> list[float] | None:
    """Each written frame's time (s) from the first, as the output keeps them (None: a folder input)."""
    times = getattr(info, "timestamps", None)
    if times is None or len(times) < start + count:
        return None
    return [round(t - times[start], 6) for t in times[start:start + count]]


def video_report(job, result: VideoResult, frames: WorkFrames, flows, store: DiskStore, info, shape,
                 seconds: float) -> dict:
    """The report of a finished ``job`` (a :class:`~jaxstyle.jobs.video.VideoJob`) as a JSON-ready dict."""
    stored = store.records()
    last = [stored[key] for key in sorted(stored) if key[0] == result.passes - 1]
    mean = lambda key: float(np.mean([r.losses[key] for r in last])) if last else math.nan  # noqa: E731
    count = len(frames)
    pace = speed(result.records, result.passes, seconds)
    return {
        "input": str(job.input), "styles": list(job.styles), "output": str(job.output),
        "frames": {"start": job.start, "end": job.start + count, "count": count},
        "size": {"width": shape[1], "height": shape[0]}, "fps": None if info.fps is None else float(info.fps),
        "variable_rate": bool(getattr(info, "variable_rate", False)),
        "frame_times": _frame_times(info, job.start, count),
        "mode": job.video.mode, "passes": job.video.passes, "config": repr(job.config), "video": repr(job.video),
        "flow": job.flow if job.flow != "dis" else f"dis ({job.dis_preset})",
        "cuts": [c + job.start for c in result.cuts],
        "warping_error": {"output": temporal_error(_Stored(store, result.passes - 1, count), flows, result.cuts),
                          "input": temporal_error(frames, flows, result.cuts)},
        "mean_losses": {k: mean(k) for k in ("content", "style", "temporal", "tv", "total")},
        "seconds": seconds, "frames_per_second": pace.per_second,
        "frames_computed": pace.computed, "frames_resumed": pace.resumed, "flows_computed": flows.computed,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()]},
        "records": [dataclasses.asdict(r) for r in result.records],
    }
