"""`jaxstyle video` stopped before its output is written (Ctrl-C/SIGTERM, or Stop on the preview page):
exit 130, one line naming the work folder the job keeps the frames in, and the same command resumes.
Also `batch`, whose Stop leaves pairs pending."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from jaxstyle.cli import batch as batch_cli
from jaxstyle.cli import main
from jaxstyle.cli import video as video_cli
from tests.clips import make_clip
from tests.helpers import ROOT, drive_preview

FAST = ["--style-loss", "gram", "--size", "64", "--iterations", "2", "--first-iterations", "2", "--style-weight", "0.1"]


def test_an_interrupt_names_the_work_folder_of_an_output_folder_given_with_a_slash(env, images, tmp_path, capsys,
                                                                                    monkeypatch):
    _, style = images
    clip = make_clip(tmp_path / "clip.mp4", n=3, audio=None)

    def interrupted():
        raise KeyboardInterrupt  # as a SIGTERM that lands while the first frame is written

    monkeypatch.setattr(video_cli, "stop_if_interrupted", interrupted)
    assert main(["video", str(clip), str(style), "-o", f"{tmp_path / 'frames_out'}/", *FAST]) == 130
    err = capsys.readouterr().err
    work = tmp_path / "frames_out.jaxstyle-work"
    assert f"interrupted: 1 finished frame(s) are kept in {work}; run the same command again to resume" in err, err
    assert ".jaxstyle-work" not in err.replace(str(work), ""), err
    assert len(list((work / "pass_0").glob("*.png"))) == 1 and not (tmp_path / "frames_out").exists()


@pytest.mark.parametrize("outcome", [
    {"report": {"stopped": True, "frames_done": 2}},  # the stop in the report dict
    {"report": {}, "stopped": True, "frames_finished": 2},  # or in a field of the outcome
])
def test_stop_on_the_preview_page_exits_130_with_the_jobs_one_line(env, images, tmp_path, capsys, monkeypatch,
                                                                   outcome):
    _, style = images
    said = "stopped from the preview page: 2 finished frame(s) are kept in W; run the same command again to resume"

    def stopped(job, notify, **kwargs):
        notify(said)
        return SimpleNamespace(records=[], cuts=[], output=Path(job.output), **outcome)

    monkeypatch.setattr(video_cli, "run_video", stopped)
    assert main(["video", str(tmp_path / "clip.mp4"), str(style), "-o", str(tmp_path / "out.mp4"), *FAST,
                 "--preview"]) == 130
    assert capsys.readouterr().err.splitlines() == [f"jaxstyle: {said}"]  # said once, and nothing more


def test_a_finished_video_exits_0(env, images, tmp_path, monkeypatch):
    _, style = images
    monkeypatch.setattr(video_cli, "run_video", lambda job, **kwargs: SimpleNamespace(
        records=[], cuts=[], report={"warping_error": {}}, output=Path(job.output)))
    assert main(["video", str(tmp_path / "clip.mp4"), str(style), "-o", str(tmp_path / "o.mp4"), *FAST]) == 0


@pytest.mark.parametrize("summary, code", [
    ({"total": 4, "done": 1, "skipped": 0, "failed": 0, "pending": 3}, 130),  # Stop: three outputs not written
    ({"total": 4, "done": 3, "skipped": 1, "failed": 0, "pending": 0}, 0),
    ({"total": 4, "done": 3, "skipped": 0, "failed": 1, "pending": 0}, 1),
])
def test_a_batch_with_pairs_left_pending_exits_130(env, tmp_path, monkeypatch, summary, code):
    monkeypatch.setattr(batch_cli, "run_batch_job", lambda job, **kwargs: {"summary": summary, "pairs": []})
    assert main(["batch", "--contents", str(tmp_path), "--styles", str(tmp_path), "--out-dir", str(tmp_path / "o"),
                 "--size", "32", "--preview"]) == code


@pytest.mark.slow
def test_stop_on_a_videos_page_exits_130_and_the_same_command_is_told(env, images, tmp_path):
    pytest.importorskip("starlette")
    _, style = images
    clip = make_clip(tmp_path / "clip.mp4", n=6, audio=None)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", "video", str(clip), str(style), "-o", str(out), *FAST,
                             "--iterations", "30", "--first-iterations", "30", "--preview"],
                            cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=subprocess.PIPE, text=True)
    said, seen = [], {}

    def read():
        for line in proc.stderr:
            said.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watcher = threading.Thread(target=drive_preview, args=(said, seen, lambda state: state["step"] >= 2), daemon=True)
    watcher.start()
    try:
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    err = "\n".join(said)
    assert code == 130, err
    stopped = [line for line in said if "stopped from the preview page" in line]
    assert len(stopped) == 1 and stopped[0].startswith("jaxstyle: stopped from the preview page: "), err
    assert f"kept in {out}.jaxstyle-work; run the same command again to resume" in stopped[0], err
    assert "Traceback" not in err and not out.exists()
    assert len(list(Path(f"{out}.jaxstyle-work", "pass_0").glob("*.png"))) >= 2
