"""When frames show: pure functions from the decoded frames' times to :class:`VideoInfo`'s
``timestamps`` and ``end_s``, whether a rate varies, and whether a stream ends before its header says.

Times are seconds. A stream's frames carry presentation times (pts) on the stream's clock; a
frame's time relative to the first frame is what a video keeps when it is rewritten, so that motion
and sound stay where they were however irregular the rate (phones, screen recorders, frames a muxer
dropped during a freeze)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

_EPS = 1e-6  # s: float noise in times read from integer ticks


def frame_timestamps(times: Sequence[float | None], fps: Fraction | None) -> tuple[float, ...] | None:
    """Each frame's time relative to the first (the first 0.0) from the decoded frames' times, in the
    order decoded (presentation order). Where a frame has no time or the times do not strictly
    increase (a raw stream, a broken muxer): ``k / fps``; None then if there is no rate either."""
    if times and all(t is not None for t in times) and all(b > a for a, b in zip(times, times[1:])):
        return tuple(t - times[0] for t in times)
    if not times or not fps:
        return None
    return tuple(float(k / fps) for k in range(len(times)))


def typical_gap(timestamps: Sequence[float], fps: Fraction | None) -> float | None:
    """The median time between frames; 1 / fps for a single frame; None without either."""
    if len(timestamps) > 1:
        gaps = sorted(b - a for a, b in zip(timestamps, timestamps[1:]))
        return gaps[len(gaps) // 2] if len(gaps) % 2 else (gaps[len(gaps) // 2 - 1] + gaps[len(gaps) // 2]) / 2
    return float(1 / fps) if fps else None


def own_duration(timestamps: Sequence[float], durations: Sequence[float | None]) -> float | None:
    """The last frame's duration as the container gives it (its packet's), where the containers'
    durations are display durations: each earlier frame's equals the gap to the next frame (1 ms and
    1 %). MP4's are decode-order sample durations once B-frames reorder a variable rate, a field-coded
    frame carries its first field's, MKV's default duration ignores dropped frames: None then."""
    if not durations or not durations[-1] or len(durations) != len(timestamps):
        return None
    for a, b, duration in zip(timestamps, timestamps[1:], durations):
        if duration is None or abs(duration - (b - a)) > 0.001 + 0.01 * (b - a):
            return None
    return durations[-1]


def frames_end(timestamps: Sequence[float], durations: Sequence[float | None], fps: Fraction | None) -> float | None:
    """When the last frame stops showing, by the frames alone: its start plus its own duration
    (:func:`own_duration`), else plus the median gap, else plus 1 / fps; None without any of them."""
    own = own_duration(timestamps, durations)
    gap = own if own else typical_gap(timestamps, fps)
    return None if gap is None else timestamps[-1] + gap


def shown_until(timestamps: Sequence[float], durations: Sequence[float | None], fps: Fraction | None,
                stated: float | None) -> float | None:
    """When the last frame stops showing (relative to the first frame): the end the container states
    where that is after the last frame starts (the header is exact where a frame's duration is not
    known: field-coded frames, dropped frames, MKV's milliseconds, B-frames), else :func:`frames_end`."""
    if stated is not None and math.isfinite(stated) and stated > timestamps[-1] + _EPS:
        return stated
    return frames_end(timestamps, durations, fps)


def missing_time(timestamps: Sequence[float], durations: Sequence[float | None], fps: Fraction | None,
                 stated: float | None) -> float:
    """Seconds by which the frames end before the end the container states (relative to the first
    frame), beyond what rounding and an unknown last duration explain (two gaps and 1 %): above 0 for
    a truncated file, whatever the rate does in between."""
    end = frames_end(timestamps, durations, fps)
    if end is None or stated is None or not math.isfinite(stated):
        return 0.0
    slack = 2 * (typical_gap(timestamps, fps) or 0.0) + 0.01 * stated + _EPS
    return max(0.0, stated - end - slack)


def is_variable(timestamps: Sequence[float] | None) -> bool:
    """True when the gaps between frames differ by more than 1 ms and 1 % of the median gap (so that
    MKV's millisecond rounding, 33 or 34 ms at 29.97 fps, stays constant)."""
    if timestamps is None or len(timestamps) < 3:
        return False
    gaps = [b - a for a, b in zip(timestamps, timestamps[1:])]
    return max(gaps) - min(gaps) > 0.001 + 0.01 * typical_gap(timestamps, None) + _EPS
