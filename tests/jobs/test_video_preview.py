"""The preview page of a job: a page that cannot start (a busy port, the extra not installed), like a
size that does not fit in memory, stops the job before anything is decoded (a video: beyond its first
frame, the header's look) or created; Stop on a video's page keeps its frames to resume and says so in
the outcome (random weights, 64x48 frames, a few steps)."""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading

import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io import images
from jaxstyle.io import video as video_io
from jaxstyle.jobs import batch as batch_job
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs import single as single_job
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from tests.clips import make_clip, watch_walks
from tests.helpers import drive_preview

pytest.importorskip("starlette")


@pytest.fixture()
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.fixture()
def nothing_read(monkeypatch):
    """Fails the test if a video's frames are walked beyond the first (counted, decoded), an image
    loaded or the network loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("decoded or loaded before the page was started")

    watch_walks(monkeypatch, limit=1)
    monkeypatch.setattr(video_io, "read_frames", refuse)
    monkeypatch.setattr(images, "load_image", refuse)
    for module in (single_job, batch_job):
        monkeypatch.setattr(module, "load_network", refuse)


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output),
                    config=options.pop("config", StyleConfig(iterations=2, style_weight=1e-1)),
                    video=VideoConfig(first_iterations=2), size=64, **options)


def files(tmp_path) -> dict:
    return {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}


@pytest.mark.parametrize("why", ["busy port", "no extra"])
@pytest.mark.parametrize("kind", ["video", "stylize", "batch"])
def test_a_page_that_cannot_start_stops_the_job_before_anything_is_read_or_made(
        tmp_path, style, random_vgg, monkeypatch, busy_port, nothing_read, why, kind):
    source = make_clip(tmp_path / "clip.mp4", n=12, audio=None)
    port = busy_port
    if why == "no extra":
        monkeypatch.setitem(sys.modules, "starlette", None)  # as if not installed
        port = 0
    before = files(tmp_path)
    with pytest.raises(ValueError) as exc:
        if kind == "video":
            run_video(job(source, style, tmp_path / "out.mp4", preview=port), vgg=random_vgg)
        elif kind == "stylize":
            single_job.run_single(single_job.SingleJob(content=str(style), styles=(str(style),),
                                                       output=str(tmp_path / "out.png"), preview=port),
                                  vgg=random_vgg)
        else:
            batch_job.run_batch_job(batch_job.BatchJob(out_dir=str(tmp_path / "outs"), contents=str(tmp_path),
                                                       styles=str(tmp_path), preview=port, size=32))
    message = str(exc.value)
    assert "\n" not in message and ("cannot listen" if why == "busy port" else "pip install") in message, message
    assert files(tmp_path) == before  # no work folder, no output folder, no cache


@pytest.mark.parametrize("end", [None, 6])
def test_a_size_that_does_not_fit_is_refused_before_the_frames_are_walked(tmp_path, style, random_vgg, nothing_read,
                                                                         end):
    source = make_clip(tmp_path / "clip.mp4", n=12, audio=None)
    before = files(tmp_path)
    with pytest.raises(ValueError, match="memory") as exc:
        run_video(dataclasses.replace(job(source, style, tmp_path / "out.mp4", preview=0, end=end), size=12000),
                  vgg=random_vgg)
    assert "\n" not in str(exc.value) and files(tmp_path) == before


def test_stop_on_the_page_keeps_the_frames_and_says_the_run_stopped(tmp_path, style, random_vgg, monkeypatch):
    source = make_clip(tmp_path / "clip.mp4", n=6, audio=None)
    out = tmp_path / "out.mp4"
    said, seen, closed = [], {}, []
    close = live_page.Page.close
    monkeypatch.setattr(live_page.Page, "close", lambda page, status: (closed.append(status), close(page, status)))
    watcher = threading.Thread(target=drive_preview, args=(said, seen, lambda state: state["step"] >= 2,
                                                           "/recent/0.png"), daemon=True)
    watcher.start()
    outcome = run_video(job(source, style, out, preview=0, config=StyleConfig(iterations=30, style_weight=1e-1)),
                        vgg=random_vgg, notify=said.append)
    watcher.join(10)
    work = work_folder(out)
    finished = len(list((work / "pass_0").glob("*.png")))
    assert outcome.stopped and outcome.work == work and 2 <= outcome.frames_finished == finished < 6
    assert [r.index for r in outcome.records] == list(range(finished))  # what this run finished
    assert seen["total"] == 6 and seen["label"].startswith("pass 1 frame") and seen["image"] == b"\x89PNG"
    assert not out.exists() and closed == ["stopped"]
    assert f"stopped from the preview page: {finished} frame(s) finished are kept in {work}; run the same command " \
           f"again to resume" in said, said
    resumed = run_video(job(source, style, out, config=StyleConfig(iterations=30, style_weight=1e-1)),
                        vgg=random_vgg)
    assert not resumed.stopped and [r.start for r in resumed.records][:finished] == ["resumed"] * finished
    assert video_io.probe(out).frames == 6
