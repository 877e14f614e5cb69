"""The video job end to end on clips made here: audio kept, ranges, folders, resume, cuts, .flo
files and bad inputs (random weights, 64x48 frames, a few steps). The preview page: test_video_preview.py;
resume: test_video_resume.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io import video as video_io
from jaxstyle.io.flo import write_flo
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from tests.clips import FPS, RATE, decoded_audio, make_clip
from tests.helpers import smooth_image

FAST = StyleConfig(iterations=3, style_weight=1e-1, style_loss="gram")
VIDEO = VideoConfig(first_iterations=3)


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output), config=options.pop("config", FAST),
                    video=options.pop("video", VIDEO), size=options.pop("size", 64), **options)


def test_a_clip_with_audio_becomes_a_stylized_clip_with_the_same_audio(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=6)
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    outcome = run_video(job(source, style, out, report=str(report)), vgg=random_vgg)
    info = video_io.probe(out)
    assert (info.frames, info.fps, info.width, info.height, info.has_audio) == (6, FPS, 64, 48, True)
    assert abs(len(decoded_audio(out)) / RATE - 6 / FPS) < 0.1
    data = json.loads(report.read_text())
    assert data == outcome.report and data["frames"]["count"] == 6 and len(data["records"]) == 6
    assert data["warping_error"]["output"] > 0 and data["warping_error"]["input"] >= 0
    assert set(data["mean_losses"]) >= {"content", "style", "temporal"}
    assert not work_folder(out).exists()  # removed once the video is assembled
    frames = [f for _, f in video_io.read_frames(out, None)]
    assert np.std(frames[3] - frames[0]) > 0  # the picture moves


def test_a_frame_range_keeps_its_own_stretch_of_sound(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=8)
    out = tmp_path / "out.mkv"
    run_video(job(source, style, out, start=2, end=5), vgg=random_vgg)
    assert video_io.probe(out).frames == 3
    assert abs(len(decoded_audio(out)) / RATE - 3 / FPS) < 0.1


def test_a_folder_of_frames_in_and_a_folder_of_pngs_out(tmp_path, style, random_vgg):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((smooth_image(48, 64, 5)[:, ::-1] * 255).astype(np.uint8)).save(folder / f"f{i + 1}.png")
    with pytest.raises(ValueError, match="--fps"):
        run_video(job(folder, style, tmp_path / "out.mp4"), vgg=random_vgg)
    out = tmp_path / "stylized"
    run_video(job(folder, style, out), vgg=random_vgg)
    assert sorted(p.name for p in out.iterdir()) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    run_video(job(folder, style, tmp_path / "out.mp4", fps=12.5), vgg=random_vgg)
    assert video_io.probe(tmp_path / "out.mp4").fps == 12.5


def test_an_interrupted_run_resumes_with_its_frames_and_flows(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=5)
    out = tmp_path / "out.mp4"
    seen = []

    def stop_after_two(record, total):
        seen.append(record.index)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_video(job(source, style, out), vgg=random_vgg, on_frame=stop_after_two)
    work = work_folder(out)
    assert sorted(p.name for p in (work / "pass_0").iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert not out.exists()
    starts = []
    outcome = run_video(job(source, style, out, report=str(tmp_path / "r.json")), vgg=random_vgg,
                        on_frame=lambda record, total: starts.append(record.start))
    assert starts == ["resumed", "resumed", "warped", "warped", "warped"]
    assert outcome.report["flows_computed"] == 0  # every flow came from the cache of the first run
    assert len(outcome.report["records"]) == 5 and video_io.probe(out).frames == 5
    # another style: the flows still come from the cache
    again = run_video(job(source, style, tmp_path / "again.mp4", config=StyleConfig(iterations=2)), vgg=random_vgg)
    assert again.report["flows_computed"] == 0


def test_a_resume_with_other_settings_is_refused(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=4)
    out = tmp_path / "out.mp4"

    def stop(record, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_video(job(source, style, out), vgg=random_vgg, on_frame=stop)
    with pytest.raises(ValueError, match="other settings"):
        run_video(job(source, style, out, config=StyleConfig(iterations=5)), vgg=random_vgg)
    run_video(job(source, style, out, config=StyleConfig(iterations=5), overwrite=True), vgg=random_vgg)
    assert video_io.probe(out).frames == 4


def test_a_scene_cut_is_found_and_starts_afresh(tmp_path, style, random_vgg):
    import av

    a, b = smooth_image(48, 64, 1), smooth_image(48, 64, 9)[::-1]
    shot = lambda i: av.VideoFrame.from_ndarray(((a if i < 3 else b) * 255).astype(np.uint8), format="rgb24")  # noqa: E731
    source = make_clip(tmp_path / "cut.mp4", n=5, frame=shot, audio=None)
    outcome = run_video(job(source, style, tmp_path / "out.mp4"), vgg=random_vgg)
    assert outcome.cuts == [3]
    assert [r.start for r in outcome.records] == ["content", "warped", "warped", "cut", "warped"]


def test_flow_from_flo_files(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=3, audio=None)
    flows = tmp_path / "flows"
    flows.mkdir()
    for a in range(3):
        for b in range(3):
            if abs(a - b) == 1:  # at another size: resized to the frames'
                write_flo(flows / f"{a}_{b}.flo", np.zeros((24, 32, 2), np.float32))
    outcome = run_video(job(source, style, tmp_path / "out.mp4", flow=str(flows / "{a}_{b}.flo")), vgg=random_vgg)
    assert outcome.report["flows_computed"] == 0 and video_io.probe(tmp_path / "out.mp4").frames == 3
    (flows / "2_1.flo").unlink()
    with pytest.raises(ValueError, match=r"2_1\.flo: no such flow file"):
        run_video(job(source, style, tmp_path / "out2.mp4", flow=str(flows / "{a}_{b}.flo")), vgg=random_vgg)


def test_one_frame_is_a_one_frame_video(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "one.mp4", n=1)
    run_video(job(source, style, tmp_path / "out.mp4"), vgg=random_vgg)
    assert video_io.probe(tmp_path / "out.mp4").frames == 1


def test_odd_sizes_come_out_even(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "odd.mkv", n=2, h=47, w=63, codec="ffv1", pix_fmt="yuv444p", audio=None)
    run_video(job(source, style, tmp_path / "out.mp4", size=63), vgg=random_vgg)
    info = video_io.probe(tmp_path / "out.mp4")
    assert info.width % 2 == 0 and info.height % 2 == 0


@pytest.mark.parametrize("case", ["audio only", "not a video", "missing", "start past the end", "output exists",
                                  "output is the input", "bad suffix", "flow pattern", "crf", "no styles"])
def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, style, random_vgg, case):
    import av

    source = make_clip(tmp_path / "clip.mp4", n=3)
    out = tmp_path / "out.mp4"
    options = {}
    if case == "audio only":
        source = tmp_path / "sound.m4a"
        with av.open(str(source), "w") as c:
            s = c.add_stream("aac", rate=RATE, layout="mono")
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = RATE, 0
            c.mux(s.encode(f))
            c.mux(s.encode(None))
    elif case == "not a video":
        source = tmp_path / "notes.mp4"
        source.write_text("hello")
    elif case == "missing":
        source = tmp_path / "nothing.mp4"
    elif case == "start past the end":
        options["start"] = 7
    elif case == "output exists":
        out.write_bytes(b"keep me")
    elif case == "output is the input":
        out = source
    elif case == "bad suffix":
        out = tmp_path / "out.gif"
    elif case == "flow pattern":
        options["flow"] = "flows/{a}.flo"
    elif case == "crf":
        options["crf"] = 60
    def files():  # the test's folder but the flow cache
        return {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "cache" not in p.parts}

    before = files()
    with pytest.raises(ValueError) as exc:
        if case == "no styles":
            run_video(VideoJob(input=str(source), styles=(), output=str(out)), vgg=random_vgg)
        else:
            run_video(job(source, style, out, **options), vgg=random_vgg)
    message = str(exc.value)
    assert "\n" not in message and message, message
    assert files() == before  # nothing written, nothing changed
    if case == "output exists":
        assert out.read_bytes() == b"keep me"


def test_a_clip_found_corrupt_while_decoding_leaves_no_work_folder(tmp_path, style, random_vgg, monkeypatch):
    source = make_clip(tmp_path / "clip.mp4", n=4, audio=None)
    out = tmp_path / "out.mp4"
    read_frames = video_io.read_frames

    def truncated(*args, **kwargs):
        for index, frame in read_frames(*args, **kwargs):
            yield index, frame
            raise ValueError(f"{source}: truncated or corrupt after frame {index}")

    monkeypatch.setattr(video_io, "read_frames", truncated)
    with pytest.raises(ValueError, match="truncated"):
        run_video(job(source, style, out), vgg=random_vgg)
    assert not work_folder(out).exists() and not out.exists()

