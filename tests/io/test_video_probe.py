"""Looking at a video without reading all of it: probe_header (the container and the first frame) and
probe(until=) (the frames up to a range's end, plus what B-frames hold back); a frame range's times and
end agree with the whole walk's; a truncation beyond the range goes unnoticed, one inside it does not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io.video import REORDER_FRAMES, VideoHeader, probe, probe_header, read_frames

av = pytest.importorskip("av")

from tests.clips import FREEZE, cut_inside, make_clip, one_line_naming, tone, watch_walks  # noqa: E402

N = 60  # frames: more than a range's end plus REORDER_FRAMES
TICKS = list(range(10)) + [t + 8 for t in range(10, N)]  # a gap of 9 ticks after frame 9


def header_fields(info) -> dict:
    return {f.name: getattr(info, f.name) for f in dataclasses.fields(VideoHeader)}


@pytest.mark.parametrize("clip", ["rotated with audio", "freeze.mkv", "folder"])
def test_the_header_decodes_one_frame_and_agrees_with_the_whole_walk(tmp_path, monkeypatch, clip):
    if clip == "rotated with audio":
        path = make_clip(tmp_path / "phone.mp4", n=8, rotation=90, audio=tone)
    elif clip == "freeze.mkv":
        path = make_clip(tmp_path / "freeze.mkv", n=30, fps=30, audio=None, ticks=FREEZE)
    else:
        path = tmp_path / "frames"
        path.mkdir()
        for i in range(3):
            Image.new("RGBA", (10, 6)).save(path / f"f{i}.png")
    walks = watch_walks(monkeypatch)
    header = probe_header(path)
    assert walks == ([] if clip == "folder" else [1])  # the first frame only
    info = probe(path)
    assert header_fields(header) == header_fields(info) and info.complete
    if clip == "rotated with audio":
        assert (header.width, header.height, header.has_audio) == (48, 64, True) and header.rotation in (90, 270)


def test_the_header_of_what_is_not_a_video_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with av.open(str(tmp_path / "sound.m4a"), "w") as c:  # audio only
        a = c.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        c.mux(a.encode(frame))
        c.mux(a.encode(None))
    for name, problem in [("none.mp4", "no such file"), ("empty", "holds no frames"), ("notes.mp4", "not a video"),
                          ("sound.m4a", "no video stream")]:
        with pytest.raises(ValueError, match=problem) as info:
            probe_header(tmp_path / name)
        one_line_naming(info, tmp_path / name)


@pytest.mark.parametrize("suffix, codec", [("mp4", "libx264"), ("mkv", "libx264"), ("avi", "libx264"),
                                           ("avi", "mpeg4")])
def test_a_range_walks_to_its_end_and_keeps_the_whole_walks_times(tmp_path, monkeypatch, suffix, codec):
    path = make_clip(tmp_path / f"gap.{suffix}", n=N, fps=30, codec=codec, audio=None, ticks=TICKS)
    whole = probe(path)
    assert whole.frames == N and whole.complete
    walks = watch_walks(monkeypatch)
    for until in (1, 10, 11, 30):
        info = probe(path, until=until)
        assert walks[-1] <= until + 1 + REORDER_FRAMES < N
        assert info.frames == until and not info.complete
        assert info.timestamps == whole.timestamps[:until] and info.end_s == whole.timestamps[until]
        assert header_fields(info) == header_fields(whole)


def test_a_range_to_or_past_the_last_frame_is_the_whole_walk(tmp_path):
    path = make_clip(tmp_path / "short.mkv", n=8, audio=None)
    for until in (7, 8, 100):
        assert probe(path, until=until) == probe(path)
    with pytest.raises(ValueError, match="expected until >= 1"):
        probe(path, until=0)


def test_a_truncation_inside_the_walk_is_refused_one_beyond_it_is_not(tmp_path):
    path = make_clip(tmp_path / "whole.mkv", n=N, fps=30, audio=None)
    half = cut_inside(path, tmp_path, 40)
    assert probe(half, until=10).frames == 10  # not read beyond frame 10 + REORDER_FRAMES
    for until in (None, 38):
        with pytest.raises(ValueError, match="truncated or corrupt video") as info:
            probe(half, until=until)
        one_line_naming(info, half)


def test_frames_come_in_presentation_order_as_their_sorted_times(tmp_path):
    # AVI with B-frames: the times come out shuffled, the frames in order (so the k-th sorted time is frame k's).
    path = make_clip(tmp_path / "gap.avi", n=N, fps=30, audio=None, ticks=TICKS)
    info = probe(path, until=12)
    frames = [f for _, f in read_frames(path, None, end=12)]
    assert len(frames) == len(info.timestamps) == 12
    moving = [int(np.argmax(f[8, :, 0] > 0.9)) for f in frames]  # the square's left edge: 3 px a frame
    assert moving == [2 + 3 * i for i in range(12)]
