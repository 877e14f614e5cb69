"""How far a video job reads its input: a frame range only as far as its end (and what a decoder can
hold back), its output lasting until the next frame's time with the sound of that span; a range past
the last frame, or none, the whole clip (random weights, 64x48 frames, a few steps)."""

from __future__ import annotations

import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io import video as video_io
from jaxstyle.jobs.video import VideoJob, run_video
from tests.clips import RATE, decoded_audio, make_clip, watch_walks

N = 40
TICKS = [0, 1, 2, 3, 7, *range(11, 11 + N - 5)]  # 1/24 s apart, 1/6 s around frame 3 -> 4, then 1/24 s again


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output),
                    config=StyleConfig(iterations=2, style_weight=1e-1), video=VideoConfig(first_iterations=2),
                    size=64, **options)


def test_a_range_reads_the_input_only_as_far_as_its_end(tmp_path, style, random_vgg, monkeypatch):
    source = make_clip(tmp_path / "long.mp4", n=N, ticks=TICKS)
    walks = watch_walks(monkeypatch)
    out = tmp_path / "out.mp4"
    run_video(job(source, style, out, start=1, end=4), vgg=random_vgg)
    assert walks and max(walks) <= 4 + 1 + video_io.REORDER_FRAMES < N
    info = video_io.probe(out)
    span = (TICKS[4] - TICKS[1]) / 24  # frame 3 lasts until frame 4 shows
    assert info.frames == 3 and info.end_s == pytest.approx(span, abs=1e-3)
    assert abs(len(decoded_audio(out)) / RATE - span) < 1024 / RATE


def test_a_range_past_the_last_frame_or_none_reads_the_whole_clip(tmp_path, style, random_vgg, monkeypatch):
    source = make_clip(tmp_path / "short.mkv", n=4)
    whole = video_io.probe(source)
    walks = watch_walks(monkeypatch)
    for end in (None, 100):
        out = tmp_path / f"out-{end}.mkv"
        walks.clear()
        run_video(job(source, style, out, start=2, end=end), vgg=random_vgg)
        assert 4 in walks  # counted to the last frame (and checked for truncation)
        info = video_io.probe(out)
        assert info.frames == 2 and info.end_s == pytest.approx(whole.end_s - whole.timestamps[2], abs=1e-3)
