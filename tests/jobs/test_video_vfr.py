"""A variable-rate clip (a phone's, a screen recorder's) through the video job: each output frame
keeps its input frame's time, and the sound of a frame range is cut by time (random weights,
64x48 frames, a few steps)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.jobs.video import VideoJob, run_video
from tests.clips import RATE, decoded_audio, pattern, tone

av = pytest.importorskip("av")

TICK = Fraction(1, 96)
TICKS = (0, 4, 8, 12, 28, 44, 60, 76)  # 1/24 s apart, then 1/6 s apart
SOUND_S = 1.0


def make_vfr_clip(path):
    """An H.264 MP4 of the frames at ``TICKS`` (of ``TICK`` s) and ``SOUND_S`` of a tone."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24, options={"crf": "1", "bf": "0"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = TICK
        a = c.add_stream("aac", rate=RATE, layout="mono")
        for i, tick in enumerate(TICKS):
            f = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            f.pts, f.time_base = tick, TICK
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        x = tone(np.arange(round(SOUND_S * RATE)) / RATE)
        for k in range(0, len(x), 1024):
            af = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = RATE, k
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    return path


def video_end(path) -> float:
    """When the last frame stops showing, in s from the first frame's time, as the container says (the
    stream's duration; in MKV its DURATION tag)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        if stream.duration is not None:
            return float((stream.duration - (stream.start_time or 0)) * stream.time_base)
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def frame_times(path) -> list[float]:
    """Each frame's presentation time in s, from the first frame's."""
    with av.open(str(path)) as c:
        times = sorted(float(f.pts * f.time_base) for f in c.decode(video=0))
    return [t - times[0] for t in times]


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output),
                    config=StyleConfig(iterations=2, style_weight=1e-1), video=VideoConfig(first_iterations=2),
                    size=64, **options)


def test_a_variable_rate_clip_keeps_each_frames_time_and_its_sound(tmp_path, style, random_vgg):
    source = make_vfr_clip(tmp_path / "phone.mp4")
    times = frame_times(source)
    assert np.allclose(times, [t * float(TICK) for t in TICKS], atol=1e-3)  # the clip is what the test means
    out = tmp_path / "out.mp4"
    run_video(job(source, style, out), vgg=random_vgg)
    assert np.allclose(frame_times(out), times, atol=2e-3)
    assert abs(len(decoded_audio(out)) - len(decoded_audio(source))) / RATE < 0.03  # the whole track
    ranged = tmp_path / "range.mkv"  # interrupted, then resumed: the times come from the input again

    def stop(record, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_video(job(source, style, ranged, start=2, end=6), vgg=random_vgg, on_frame=stop)
    resumed = run_video(job(source, style, ranged, start=2, end=6), vgg=random_vgg)
    assert [r.start for r in resumed.records][0] == "resumed"
    assert resumed.report["variable_rate"]  # and each frame's time, for a frame folder to be put back together
    assert np.allclose(resumed.report["frame_times"], np.subtract(times[2:6], times[2]), atol=2e-3)
    assert np.allclose(frame_times(ranged), np.subtract(times[2:6], times[2]), atol=2e-3)
    span = times[6] - times[2]  # frames 2 .. 5 show from frame 2's time until frame 6's
    assert abs(len(decoded_audio(ranged)) / RATE - span) < 0.03, len(decoded_audio(ranged)) / RATE
    assert abs(video_end(ranged) - span) < 2e-3  # the last frame keeps its time on screen
    tail = tmp_path / "tail.mp4"  # to the last frame: the sound until the last frame stops showing
    run_video(job(source, style, tail, start=5), vgg=random_vgg)
    assert np.allclose(frame_times(tail), np.subtract(times[5:], times[5]), atol=2e-3)
    end = video_end(source)
    assert 0.8 < end < SOUND_S  # the clip's last frame shows for a while, and the sound goes on after it
    assert abs(len(decoded_audio(tail)) / RATE - (end - times[5])) < 0.03, len(decoded_audio(tail)) / RATE
    assert abs(video_end(tail) - (end - times[5])) < 2e-3
