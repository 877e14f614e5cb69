"""Variable frame rate: each frame's time read (relative to the first), kept when written, and audio
cut by time in sync with it. The clip is the issue's: frames 1/24 s apart, then 1/6 s apart."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io import video
from jaxstyle.io.video import probe, read_frames, write_video

av = pytest.importorskip("av")

from tests.clips import RATE, decoded_audio, make_clip, one_line_naming, pattern, tone  # noqa: E402

TICKS = [0, 1, 2, 3, 4, 5, 9, 13, 17, 21, 25, 29]  # frame i at TICKS[i] / 24 s: 1/24 s apart, then 1/6
TIMES = [t / 24 for t in TICKS]
ONSET = 17 / 24  # the tone starts with frame 8


def onset_tone(t: np.ndarray) -> np.ndarray:
    return np.where(t >= ONSET, tone(t), 0).astype(np.float32)


@pytest.fixture()
def vfr(tmp_path):
    # No B-frames, as phones record: MP4's sample durations are then each frame's own, the last one's too.
    return make_clip(tmp_path / "vfr.mp4", n=12, ticks=TICKS, audio=onset_tone, encoder_options={"bf": "0"})


def decoded_times(path) -> tuple[list[float], Fraction]:
    """The presentation times (s) of the decoded frames, and the stream's time base (one tick)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(stream)], stream.time_base


def test_probe_gives_each_frames_time(vfr):
    info = probe(vfr)
    assert info.frames == 12 and info.variable_rate
    np.testing.assert_allclose(info.timestamps, TIMES, atol=1e-6)
    assert info.end_s == pytest.approx(30 / 24) and info.duration_s == pytest.approx(30 / 24)
    frames = list(read_frames(vfr, None))
    assert [i for i, _ in frames] == list(range(12))
    for i, f in frames:
        assert np.abs(f - pattern(i) / 255).mean() < 0.01


def test_constant_rate_and_folders(tmp_path):
    for suffix in ("mp4", "mkv"):  # MKV keeps milliseconds: 1/24 s is 41 or 42 ms
        info = probe(make_clip(tmp_path / f"cfr.{suffix}", audio=None))
        assert not info.variable_rate and info.timestamps[0] == 0.0
        np.testing.assert_allclose(info.timestamps, np.arange(12) / 24, atol=1e-3)
        assert info.end_s == pytest.approx(0.5, abs=1e-3)
    Image.new("RGB", (4, 4)).save(tmp_path / "f1.png")
    info = probe(tmp_path)
    assert (info.timestamps, info.end_s, info.variable_rate) == (None, None, False)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_written_video_keeps_the_times(tmp_path, vfr, suffix):
    info = probe(vfr)
    a, b = 2, 7  # frames [2, 7): 1/24 s apart, then 1/6 s; the last one lasts until frame 7, 1/6 s
    frames = (f for _, f in read_frames(vfr, None, start=a, end=b))
    out = tmp_path / f"out{suffix}"
    assert write_video(out, frames, info.fps, timestamps=info.timestamps[a:b], end_s=info.timestamps[b]) == b - a
    times, tick = decoded_times(out)
    want = np.array(TIMES[a:b]) - TIMES[a]
    np.testing.assert_allclose(times, want, atol=float(tick) + 1e-9)  # to the output's tick
    written = probe(out)
    assert written.frames == b - a and written.variable_rate
    np.testing.assert_allclose(written.timestamps, want, atol=float(tick) + 1e-9)
    # The container's duration covers the last frame's 1/6 s (x264's B-frames: MP4 times decoding order).
    with av.open(str(out)) as c:
        assert c.duration / 1e6 == pytest.approx(TIMES[b] - TIMES[a], abs=float(tick) + 1e-6)
    assert written.end_s == pytest.approx(TIMES[b] - TIMES[a], abs=float(tick) + 1e-9)


def test_audio_cut_by_time_stays_in_sync(tmp_path, vfr):
    info = probe(vfr)
    a, b = 7, 10  # source frames 7, 8, 9 (13/24, 17/24, 21/24 s); the tone starts with frame 8
    out = tmp_path / "cut.mp4"
    write_video(out, (f for _, f in read_frames(vfr, None, start=a, end=b)), info.fps,
                timestamps=info.timestamps[a:b], end_s=info.timestamps[b], audio_from=vfr,
                audio_start_s=info.timestamps[a], audio_end_s=info.timestamps[b])
    written = probe(out)
    span = TIMES[b] - TIMES[a]  # 0.5 s, where a / fps would say 0.31 s
    assert written.end_s == pytest.approx(span, abs=1e-3)
    sound = decoded_audio(out)
    assert abs(len(sound) - span * RATE) <= 1024  # within one AAC frame
    onset = np.argmax(np.abs(sound) > 0.1) / RATE
    assert onset == pytest.approx(written.timestamps[1], abs=0.01)


def test_times_shifted_to_start_at_zero_and_the_last_frame_lasts_a_gap(tmp_path):
    out = tmp_path / "late.mp4"
    write_video(out, [pattern(i) for i in range(4)], 10, timestamps=[5.0, 5.1, 5.3, 5.4])
    written = probe(out)
    np.testing.assert_allclose(written.timestamps, [0, 0.1, 0.3, 0.4], atol=1e-4)
    assert written.end_s == pytest.approx(0.5, abs=1e-4)  # the median gap


def test_timestamps_are_checked(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    frames = [pattern(i) for i in range(3)]
    for timestamps, problem in [([0, 0.1], "3 frames, but 2 timestamps"), ([0, 0.1, 0.2, 0.3], "3 frames, but 4"),
                                ([0, 0.2, 0.1], "strictly increasing"), ([0, 0.1, float("nan")], "finite"),
                                ([0, 0.1, 0.1], "strictly increasing"), ("0 1 2", "sequence of times")]:
        with pytest.raises(ValueError, match=problem) as info:
            write_video(out, iter(frames), 24, timestamps=timestamps)
        one_line_naming(info, out)
    with pytest.raises(ValueError, match="end_s after the last timestamp"):
        write_video(out, frames, 24, timestamps=[0, 0.1, 0.2], end_s=0.2)
    with pytest.raises(ValueError, match="end_s needs timestamps"):
        write_video(out, frames, 24, end_s=1.0)
    assert out.read_bytes() == b"an earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert video.write_video(out, frames, 24, timestamps=(0, 0.5, 0.75)) == 3


def test_times_out_of_order_are_sorted_and_none_are_made_up_to_judge_by():
    from jaxstyle.io.video import timing

    # AVI with B-frames: times in decode order; the frames come in presentation order.
    assert timing.frame_timestamps([1.0, 1.5, 1.2, 1.3], Fraction(10)) == pytest.approx((0, 0.2, 0.3, 0.5))
    assert timing.measured_timestamps([1.0, 1.5, 1.2, 1.3]) == pytest.approx((0, 0.2, 0.3, 0.5))
    for times in ([0.0, None, 0.2], [0.0, 0.1, 0.1], []):  # made up (k / fps) where needed, never measured
        assert timing.measured_timestamps(times) is None
    assert timing.frame_timestamps([0.0, 0.1, 0.1], Fraction(10)) == pytest.approx((0, 0.1, 0.2))
