"""Counting frames in every container: a recording with a freeze (the muxer drops the repeated frames),
field-coded H.264 (two packets a frame), B-frames in AVI (times in decode order) and truncated files, each
counted as read_frames yields it."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.io.video import probe, read_frames

av = pytest.importorskip("av")

from tests.clips import FREEZE, cut_inside, make_clip, make_field_coded_clip, one_line_naming, pattern  # noqa: E402

CONTAINERS = [("mkv", "libx264"), ("webm", "libvpx-vp9"), ("mp4", "libx264"), ("mov", "libx264"), ("avi", "mpeg4"),
              ("avi", "libx264")]  # x264: B-frames (its default), in AVI times kept in decode order


def freeze_clip(path, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder")
    return make_clip(path, n=30, fps=30, codec=codec, audio=None, ticks=FREEZE)


@pytest.mark.parametrize("suffix, codec", [*CONTAINERS, ("ts", "libx264")])
def test_a_freeze_is_counted_in_every_container(tmp_path, suffix, codec):
    path = freeze_clip(tmp_path / f"freeze.{suffix}", codec)
    info = probe(path)
    assert info.frames == 30 and info.variable_rate
    off = np.abs(np.array(info.timestamps) - np.array(FREEZE) / 30) > 1e-3  # MKV/WebM: ms
    if (suffix, codec) == ("avi", "libx264"):
        # AVI keeps one time a packet, in decode order: FFmpeg's frame times come out shuffled (1, 3, 4, 2, 6...)
        # and sorted they are the frames' own, but for the frame decoded across the gap (it lands before it).
        with av.open(str(path)) as c:
            shuffled = [f.pts for f in c.decode(video=0)]
        assert shuffled != sorted(shuffled)
        assert off.sum() <= 1 and list(info.timestamps) == sorted(info.timestamps)
    else:
        assert not off.any(), info.timestamps
    assert info.end_s == pytest.approx(2.0, abs=1e-3)
    frames = [i for i, _ in read_frames(path, 32)]
    assert frames == list(range(30))


@pytest.mark.parametrize("suffix", ["mkv", "mp4", "mov", "ts"])
@pytest.mark.parametrize("per_field", [True, False], ids=["packet-a-field", "packet-a-frame"])
def test_field_coded_h264_counts_frames_not_fields(tmp_path, suffix, per_field):
    path = make_field_coded_clip(tmp_path / f"fields.{suffix}", n=6, per_field=per_field)
    with av.open(str(path)) as c:  # really field-coded: interlaced frames from 2 packets each (TS: always)
        assert sum(1 for p in c.demux(video=0) if p.size) == (12 if per_field or suffix == "ts" else 6)
        assert all(f.interlaced_frame for f in c.decode(video=0))
    info = probe(path)
    assert info.frames == 6 and not info.variable_rate
    np.testing.assert_allclose(info.timestamps, np.arange(6) / 25, atol=1e-3)
    assert info.end_s == pytest.approx(6 / 25, abs=1e-3)
    frames = list(read_frames(path, None))
    assert [i for i, _ in frames] == list(range(6))
    for i, f in frames:  # the two fields woven back into the frame
        assert np.abs(f - pattern(i, 64, 64) / 255).mean() < 0.01


def test_mbaff_interlaced_h264_counts_frames(tmp_path):
    # What x264 makes of interlaced video (interlaced=1: MBAFF, a frame a packet; it codes no field pictures).
    path = make_clip(tmp_path / "mbaff.mkv", n=6, h=64, w=64, audio=None,
                     encoder_options={"x264-params": "interlaced=1"})
    with av.open(str(path)) as c:
        assert all(f.interlaced_frame for f in c.decode(video=0))
    info = probe(path)
    assert info.frames == 6 == len(list(read_frames(path, None))) and not info.variable_rate


@pytest.mark.parametrize("suffix, codec", CONTAINERS)
def test_a_truncated_recording_with_a_freeze_is_refused(tmp_path, suffix, codec):
    options = {"movflags": "+faststart"} if suffix in ("mp4", "mov") else None
    path = freeze_clip(tmp_path / f"freeze.{suffix}", codec)
    if options:
        path = make_clip(path, n=30, fps=30, codec=codec, audio=None, ticks=FREEZE, container_options=options)
    half = cut_inside(path, tmp_path, 20)  # after the freeze: 20 of 30 frames, 1.2 of 2 s
    with pytest.raises(ValueError, match="truncated or corrupt video") as info:
        probe(half)
    one_line_naming(info, half)
    got = []
    with pytest.raises(ValueError, match="truncated or corrupt video") as info:
        for i, _ in read_frames(half, 32):
            got.append(i)
    one_line_naming(info, half)
    assert 15 < len(got) <= 21 and got == list(range(len(got)))


def test_a_truncated_field_coded_mkv_is_refused(tmp_path):
    path = make_field_coded_clip(tmp_path / "fields.mkv", n=12)
    half = cut_inside(path, tmp_path, 12)  # 6 of 12 frames
    with pytest.raises(ValueError, match="truncated or corrupt video") as info:
        probe(half)
    one_line_naming(info, half)
