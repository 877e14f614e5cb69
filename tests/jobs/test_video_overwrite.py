"""An output (or report) that exists beside a work folder with finished frames: the refusal that advises
--overwrite names the frames it can discard, before anything is walked or loaded; with no finished frames
it says nothing of them (random weights, 64x48 frames)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io import images
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from tests.clips import make_clip, watch_walks


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output),
                    config=StyleConfig(iterations=16, style_weight=1e-1), video=VideoConfig(first_iterations=2),
                    size=64, **options)


def stopped_run(out, done: int) -> None:
    """What a stopped run leaves beside ``out``: ``done`` finished frames of pass 0."""
    for i in range(done):
        path = work_folder(out) / "pass_0" / f"frame_{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save_image(path, np.full((48, 64, 3), 0.5, np.float32))


@pytest.mark.parametrize("which", ["output", "report"])
@pytest.mark.parametrize("done", [0, 1, 2])
def test_the_advice_to_overwrite_names_the_finished_frames_it_can_discard(tmp_path, style, random_vgg, monkeypatch,
                                                                         which, done):
    source = make_clip(tmp_path / "clip.mp4", n=4, audio=None)
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    (out if which == "output" else report).write_bytes(b"an earlier run's")
    stopped_run(out, done)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    watch_walks(monkeypatch, limit=1)  # refused from the header, before the frames are counted
    with pytest.raises(ValueError) as exc:
        run_video(job(source, style, out, report=str(report)), vgg=random_vgg)
    message, refused = str(exc.value), out if which == "output" else report
    assert message.startswith(f"{refused}: already exists (pass --overwrite to replace it") and "\n" not in message
    frames = f"{done} finished frame{'s' if done > 1 else ''} in {work_folder(out)}"
    assert (frames in message) == bool(done) and ("discard" in message) == bool(done), message
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
