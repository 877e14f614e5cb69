"""Videos and frame folders: tiny clips made here with PyAV (a moving square, a sine tone), read back
upright in RGB float32, written back with exact rates, their audio kept in sync; one-line errors
naming the file and no partial output."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io import video
from jaxstyle.io.video import fitted_video_shape, probe, read_frames, write_video

av = pytest.importorskip("av")

from tests.clips import FPS, RATE, decoded_audio, make_clip, pattern, tone  # noqa: E402, F401


def one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert message.startswith(str(path)) and "\n" not in message, message


@pytest.fixture()
def clip(tmp_path):
    return make_clip(tmp_path / "clip.mp4")


# ----------------------------------------------------------------------------- probe and read

def test_probe(clip):
    info = probe(clip)
    assert (info.frames, info.fps, info.width, info.height, info.rotation) == (12, 24, 64, 48, 0)
    assert info.has_audio and info.pix_fmt == "yuv420p" and not info.has_alpha and not info.is_folder
    assert isinstance(info.fps, Fraction) and info.duration_s == pytest.approx(0.5)


def test_read_frames_range_and_content(clip):
    frames = list(read_frames(clip, 64, start=3, end=7))
    assert [i for i, _ in frames] == [3, 4, 5, 6]
    for i, f in frames:
        assert f.shape == (48, 64, 3) and f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
        assert np.abs(f - pattern(i) / 255).mean() < 0.01
    assert len(list(read_frames(clip, 64))) == 12


def test_read_frames_resizes_longest_side_to_size_with_even_sides(clip):
    (_, small), = read_frames(clip, 22, end=1)  # 64x48 -> 22 x 16.5 -> 22 x 16 (even)
    assert small.shape == (16, 22, 3)
    (_, big), = read_frames(clip, 128, end=1)  # scaled up as well, like images.load_image
    assert big.shape == (96, 128, 3)


def test_fitted_video_shape():
    assert fitted_video_shape(1080, 1920, 256) == (144, 256)
    assert fitted_video_shape(1080, 1920, 255) == (142, 254)  # never above size, both even
    assert fitted_video_shape(1920, 1080, 512) == (512, 288)
    assert fitted_video_shape(10, 1000, 100) == (2, 100)
    assert fitted_video_shape(47, 63, None) == (46, 62)
    with pytest.raises(ValueError, match="expected a frame size"):
        fitted_video_shape(48, 64, 1)


def test_arguments_are_checked_when_called(clip):
    with pytest.raises(ValueError, match="expected an end frame"):
        read_frames(clip, 64, start=5, end=2)
    with pytest.raises(ValueError, match="expected a start frame"):
        read_frames(clip, 64, start=-1)
    with pytest.raises(ValueError, match="fewer than the end 20"):
        list(read_frames(clip, 64, end=20))


def test_odd_input_gives_even_frames(tmp_path):
    path = make_clip(tmp_path / "odd.mp4", n=2, h=47, w=63, pix_fmt="yuv444p", audio=None)
    info = probe(path)
    assert (info.width, info.height) == (63, 47)
    (_, native), _ = read_frames(path, None)
    assert native.shape == (46, 62, 3)  # cropped by a pixel, not resampled
    (_, fitted), _ = read_frames(path, 40)
    assert fitted.shape == (30, 40, 3)


@pytest.mark.parametrize("rotation, hflip, k", [(90, False, 1), (-90, False, 3), (180, False, 2), (90, True, 1)])
def test_rotation_is_applied(tmp_path, rotation, hflip, k):
    # A phone held upright records landscape pixels with a display matrix of -90 (90 clockwise).
    path = make_clip(tmp_path / "rot.mp4", n=2, rotation=rotation, hflip=hflip, audio=None)
    info = probe(path)
    assert info.rotation == k * 90 and info.mirrored == hflip
    assert (info.height, info.width) == ((64, 48) if k % 2 else (48, 64))
    (_, upright), _ = read_frames(path, None)
    expected = np.rot90(pattern(0), k)
    expected = expected[:, ::-1] if hflip else expected  # rotation, then the mirror
    assert upright.shape == expected.shape
    assert np.abs(upright - expected / 255).mean() < 0.01


def test_ten_bit_input(tmp_path):
    def deep(i):
        return av.VideoFrame.from_ndarray(pattern(i).astype(np.uint16) * 257, format="rgb48le")

    path = make_clip(tmp_path / "deep.mp4", n=2, pix_fmt="yuv420p10le", frame=deep, audio=None)
    assert probe(path).pix_fmt == "yuv420p10le"
    for i, f in read_frames(path, None):
        assert np.abs(f - pattern(i) / 255).mean() < 0.01


ALPHA = [(c, s, p) for c, s, p in [("ffv1", "mkv", "yuva420p"), ("qtrle", "mov", "argb")] if c in av.codecs_available]


@pytest.mark.skipif(not ALPHA, reason="no encoder with alpha in this FFmpeg")
@pytest.mark.parametrize("codec, suffix, pix_fmt", ALPHA)
def test_alpha_is_composited_over_black(tmp_path, codec, suffix, pix_fmt):
    def translucent(i):
        rgba = np.full((48, 64, 4), 200, np.uint8)
        rgba[:, :32, 3] = 255  # left half opaque, right half half-transparent
        rgba[:, 32:, 3] = 128
        return av.VideoFrame.from_ndarray(rgba, format="rgba")

    path = make_clip(tmp_path / f"alpha.{suffix}", n=2, codec=codec, pix_fmt=pix_fmt, frame=translucent, audio=None)
    info = probe(path)
    assert info.has_alpha and info.pix_fmt == pix_fmt and info.frames == 2
    (_, f), _ = read_frames(path, None)
    np.testing.assert_allclose(f[:, 4:28], 200 / 255, atol=0.02)
    np.testing.assert_allclose(f[:, 36:60], 200 / 255 * 128 / 255, atol=0.02)


@pytest.mark.skipif("ffv1" not in av.codecs_available, reason="no ffv1 encoder")
def test_gray_input(tmp_path):
    path = make_clip(tmp_path / "gray.mkv", n=2, codec="ffv1", pix_fmt="gray", audio=None)
    info = probe(path)
    assert info.pix_fmt == "gray" and info.frames == 2 and info.fps == 24  # MKV: counted by demuxing
    (_, f), _ = read_frames(path, None)
    np.testing.assert_allclose(f[..., 0], f[..., 2])
    assert np.abs(f[..., 0] - pattern(0)[..., 0] / 255).max() < 0.01


# ----------------------------------------------------------------------------- frame folders

def test_frame_folder_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (10, 2, 1):
        Image.fromarray(np.full((6, 8, 3), n * 20, np.uint8)).save(folder / f"frame{n}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "._frame3.png").write_bytes(b"macOS resource fork")
    info = probe(folder)
    assert (info.frames, info.fps, info.width, info.height, info.is_folder) == (3, None, 8, 6, True)
    frames = list(read_frames(folder, None))
    assert [i for i, _ in frames] == [0, 1, 2]
    assert [round(float(f[0, 0, 0]) * 255) for _, f in frames] == [20, 40, 200]
    (i, f), = read_frames(folder, 16, start=2)
    assert i == 2 and f.shape == (12, 16, 3)


def test_frame_folder_alpha_over_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    rgba[2:, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "f1.png")
    (_, f), = read_frames(tmp_path, None)
    np.testing.assert_allclose(f[0, 0], [1, 0, 0])
    np.testing.assert_allclose(f[3, 3], [0, 0, 0])
    assert probe(tmp_path).has_alpha


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no frames") as info:
        probe(empty)
    one_line_naming(info, empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (8, 6)).save(mixed / "a1.png")
    Image.new("RGB", (8, 8)).save(mixed / "a2.png")
    with pytest.raises(ValueError, match="must all have one size") as info:
        probe(mixed)
    one_line_naming(info, mixed / "a2.png")
    with pytest.raises(ValueError, match="must all have one size"):
        read_frames(mixed, None)


def test_write_and_read_frame_png(tmp_path):
    image = pattern(0) / 255
    target = video.write_frame_png(tmp_path / "out", 7, image)
    assert target == tmp_path / "out" / "frame_00007.png"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame_00007.png"]
    np.testing.assert_allclose(video.read_frame_png(tmp_path / "out", 7), image, atol=0.5 / 255 + 1e-6)


# ----------------------------------------------------------------------------- errors reading

def test_truncated_file_yields_what_decodes_then_fails(tmp_path):
    whole = make_clip(tmp_path / "whole.mp4", container_options={"movflags": "+faststart"}, audio=None)
    with av.open(str(whole)) as c:  # cut inside the 7th frame's packet; the index (moov) is in front
        cut = [p.pos for p in c.demux(video=0) if p.size][6] + 5
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[:cut])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        probe(half)
    one_line_naming(info, half)
    got = []
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        for i, _ in read_frames(half, 32):
            got.append(i)
    one_line_naming(info, half)
    assert 0 < len(got) < 12 and got == list(range(len(got)))


def test_truncated_mkv_is_caught_by_its_duration(tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", n=24)
    half = tmp_path / "half.mkv"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated or corrupt video: its \d+ frames end at .* but its header "
                                         r"states 1.000 s") as info:
        probe(half)
    one_line_naming(info, half)


def test_cut_mp4_without_an_index(tmp_path, clip):
    half = tmp_path / "half.mp4"
    half.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # moov at the end: nothing to read
    with pytest.raises(ValueError) as info:
        probe(half)
    one_line_naming(info, half)


def test_not_videos(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)  # FFmpeg would show it as an "ansi" video
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    for path, problem in [(text, "not a video"), (noise, "not a video"), (tmp_path / "none.mp4", "no such file")]:
        with pytest.raises(ValueError, match=problem) as info:
            probe(path)
        one_line_naming(info, path)
    with pytest.raises(ValueError, match="no such file"):
        read_frames(tmp_path / "none.mp4", 32)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=RATE, layout="mono")
        af = av.AudioFrame.from_ndarray(tone(np.arange(1024) / RATE)[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = RATE, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    with pytest.raises(ValueError, match="no video stream") as info:
        probe(path)
    one_line_naming(info, path)
    with pytest.raises(ValueError, match="no video stream"):
        list(read_frames(path, 32))


def test_cover_art_is_not_a_video(tmp_path):
    from av.stream import Disposition

    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=RATE, layout="mono")
        v = c.add_stream("mjpeg", rate=1)
        v.width, v.height, v.pix_fmt, v.disposition = 16, 16, "yuvj420p", Disposition.attached_pic
        f = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        f.pts = 0
        c.mux(v.encode(f))
        c.mux(v.encode(None))
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = RATE, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    with pytest.raises(ValueError, match=r"no video stream \(it holds audio, cover art only\)") as info:
        probe(path)
    one_line_naming(info, path)


def test_missing_pyav_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ValueError, match=r"^video needs PyAV and OpenCV: pip install 'jaxstyle\[video\]'$"):
        video.require_video()
    Image.new("RGB", (4, 4)).save(tmp_path / "f1.png")
    assert probe(tmp_path).frames == 1  # frame folders need only Pillow


# ----------------------------------------------------------------------------- writing

def test_round_trip_keeps_frames_rate_and_audio(tmp_path, clip):
    frames = [f for _, f in read_frames(clip, None)]
    out = tmp_path / "out.mp4"
    assert write_video(out, iter(frames), probe(clip).fps, audio_from=clip, crf=0) == 12
    info = probe(out)
    assert (info.frames, info.fps, info.width, info.height, info.has_audio) == (12, 24, 64, 48, True)
    for a, (_, b) in zip(frames, read_frames(out, None)):
        assert np.abs(a - b).mean() < 0.005 and np.abs(a - b).max() < 0.05
    with av.open(str(clip)) as c, av.open(str(out)) as o:  # the whole AAC track copied, not re-encoded
        assert o.streams.audio[0].codec_context.name == "aac"
        source = [bytes(p) for p in c.demux(audio=0) if p.size]
        copied = [bytes(p) for p in o.demux(audio=0) if p.size]
        assert source == copied
    assert len(decoded_audio(out)) / RATE == pytest.approx(info.duration_s, abs=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]  # no temporary file left


def test_trimmed_audio_stays_in_sync(tmp_path):
    # Silence, then a tone from frame 6 (0.25 s) on; frames [3, 9) must hear it from 0.125 s.
    src = make_clip(tmp_path / "src.mp4", audio=lambda t: np.where(t >= 0.25, tone(t), 0).astype(np.float32))
    frames = (f for i, f in read_frames(src, None, start=3, end=9))
    out = tmp_path / "trim.mp4"
    write_video(out, frames, FPS, audio_from=src, audio_start_s=3 / FPS, audio_end_s=9 / FPS)
    info = probe(out)
    assert info.frames == 6 and info.duration_s == pytest.approx(0.25)
    sound = decoded_audio(out)
    assert len(sound) / RATE == pytest.approx(0.25, abs=0.1)
    onset = np.argmax(np.abs(sound) > 0.1) / RATE
    assert onset == pytest.approx(0.125, abs=0.025)


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path):
    # PCM with an unordered "2 channels" layout, in MKV, into MP4: AAC stereo, as long as the video.
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=44100, layout="stereo")
        for i in range(12):
            f = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        x = (tone(np.arange(22050) / 44100) * 32767).astype(np.int16)
        af = av.AudioFrame.from_ndarray(np.repeat(x, 2)[None], format="s16", layout="stereo")
        af.sample_rate, af.pts = 44100, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    out = tmp_path / "out.mp4"
    write_video(out, (f for _, f in read_frames(src, None)), FPS, audio_from=src)
    with av.open(str(out)) as c:
        audio = c.streams.audio[0].codec_context
        assert (audio.name, audio.sample_rate, audio.layout.name) == ("aac", 44100, "stereo")
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples / 44100 == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_exact_frame_rate_in_each_container(tmp_path, suffix):
    out = tmp_path / f"ntsc{suffix}"
    rate = Fraction(30000, 1001)
    write_video(out, (pattern(i) for i in range(4)), rate)
    info = probe(out)
    assert info.fps == rate and info.frames == 4


def test_float_frames_image_paths_and_folders(tmp_path):
    folder = tmp_path / "frames"
    for i in range(3):
        video.write_frame_png(folder, i, pattern(i) / 255)
    for frames in (folder, sorted(folder.iterdir()), (pattern(i) / 255.0 for i in range(3))):
        out = tmp_path / "f.mkv"
        assert write_video(out, frames, 12) == 3
        (_, first), *_ = read_frames(out, None)
        assert np.abs(first - pattern(0) / 255).mean() < 0.02


def test_bad_frames_leave_no_output(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")

    def failing():
        yield pattern(0)
        yield pattern(1)
        raise RuntimeError("the optimiser ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        write_video(out, failing(), FPS)
    with pytest.raises(ValueError, match="needs even sides") as info:
        write_video(out, [np.zeros((47, 64, 3), np.uint8)], FPS)
    one_line_naming(info, out)
    with pytest.raises(ValueError, match="frame 1 is 32x32 px"):
        write_video(out, [pattern(0), np.zeros((32, 32, 3), np.uint8)], FPS)
    with pytest.raises(ValueError, match="expected an RGB frame"):
        write_video(out, [np.zeros((48, 64), np.uint8)], FPS)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(out, [], FPS)
    assert out.read_bytes() == b"an earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_write_options_are_checked(tmp_path, clip):
    frames = [pattern(0)]
    with pytest.raises(ValueError, match="unsupported video extension '.avi'"):
        write_video(tmp_path / "x.avi", frames, FPS)
    with pytest.raises(ValueError, match="crf an integer from 0 to 51"):
        write_video(tmp_path / "x.mp4", frames, FPS, crf=52)
    with pytest.raises(ValueError, match="frame rate > 0"):
        write_video(tmp_path / "x.mp4", frames, 0)
    with pytest.raises(ValueError, match="audio_end_s > audio_start_s"):
        write_video(tmp_path / "x.mp4", frames, FPS, audio_from=clip, audio_start_s=1.0, audio_end_s=0.5)
    silent = make_clip(tmp_path / "silent.mp4", n=1, audio=None)
    with pytest.raises(ValueError, match="no audio stream") as info:
        write_video(tmp_path / "x.mp4", frames, FPS, audio_from=silent)
    one_line_naming(info, silent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "silent.mp4"]


def test_is_video_output(tmp_path):
    assert video.is_video_output(tmp_path / "out.mp4") and video.is_video_output("a/b.MKV")
    assert not video.is_video_output(tmp_path / "frames")
    (tmp_path / "looks.mp4").mkdir()
    assert not video.is_video_output(tmp_path / "looks.mp4")
    with pytest.raises(ValueError, match="unsupported video output extension '.avi'"):
        video.is_video_output(tmp_path / "out.avi")
