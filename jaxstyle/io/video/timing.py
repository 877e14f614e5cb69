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


def measured_timestamps(times: Sequence[float | None]) -> tuple[float, ...] | None:
    """Each frame's time relative to the first (the first 0.0) from the decoded frames' own times, or
    None where a frame has none or two share one. A decoder gives frames in presentation order, so the
    k-th frame shows at the k-th earliest time: times that do not increase are sorted (AVI keeps one
    time a packet, in decode order: with B-frames FFmpeg's frame times come out shuffled, 1, 3, 4, 2...;
    sorted, a frame decoded across a gap of dropped frames can land on the wrong side of it)."""
    if not times or any(t is None for t in times):
        return None
    ordered = sorted(times)
    if any(b <= a for a, b in zip(ordered, ordered[1:])):
        return None
    return tuple(t - ordered[0] for t in ordered)


def frame_timestamps(times: Sequence[float | None], fps: Fraction | None) -> tuple[float, ...] | None:
    """Each frame's time relative to the first, in the order decoded (presentation order):
    :func:`measured_timestamps`, else (a raw stream, a broken muxer) ``k / fps``, made up, which no
    check judges a file by; None then if there is no rate either."""
    measured = measured_timestamps(times)
    if measured is not None:
        return measured
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
