"""Resuming a video job: what the frames were made with is compared (names, values, the content of
every file read), an optimizer factory resumes, a changed file refuses with a message that says
what --overwrite discards, and the speed counts only the frames computed now (random weights,
64x48 frames, a few steps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io.flo import write_flo
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from jaxstyle.optim import optimizer_from_factory
from tests.clips import make_clip
from tests.helpers import smooth_image

FACTORY = "tests.jobs.test_video_resume:small_adam"


def small_adam():
    """The factory a user names with ``--optimizer module:factory``."""
    import optax

    return optax.adam(0.02)


def save(path, image):
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def style(tmp_path):
    return save(tmp_path / "painting.png", smooth_image(40, 40, 2))


def job(source, style, output, **options):
    return VideoJob(input=str(source), styles=(str(style),), output=str(output),
                    config=options.pop("config", StyleConfig(iterations=2, style_weight=1e-1)),
                    video=VideoConfig(first_iterations=2), size=64, **options)


def stop_after(n):
    seen = []

    def on_frame(record, total):
        seen.append(record)
        if len(seen) == n:
            raise KeyboardInterrupt

    return on_frame


def test_a_factory_optimizer_stopped_and_resumed_resumes_and_counts_only_the_new_frames(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=5, audio=None)
    out = tmp_path / "out.mp4"

    def factory_job(**options):  # a new process names the factory again: new functions, same optimizer
        return job(source, style, out, config=StyleConfig(iterations=2, style_weight=1e-1,
                                                          optimizer=optimizer_from_factory(FACTORY)), **options)

    with pytest.raises(KeyboardInterrupt):
        run_video(factory_job(), vgg=random_vgg, on_frame=stop_after(2))
    starts, said, logged = [], [], []
    outcome = run_video(factory_job(report=str(tmp_path / "r.json")), vgg=random_vgg, notify=said.append,
                        log=logged.append, on_frame=lambda record, total: starts.append(record.start))
    assert starts == ["resumed", "resumed", "warped", "warped", "warped"]
    assert any("resuming from" in m for m in said)
    report = outcome.report
    assert (report["frames_computed"], report["frames_resumed"]) == (3, 2)
    assert report["frames_per_second"] == pytest.approx(3 / report["seconds"])
    line = next(m for m in logged if m.startswith("wrote "))
    pace = 3 / report["seconds"]  # a slow machine (under 0.1 frames/s) is told seconds per frame
    said = f"{pace:.2f} frames/s" if pace >= 0.1 else f"{1 / pace:.1f} s/frame"
    assert "3 computed" in line and "2 resumed" in line and said in line, line


@pytest.mark.parametrize("change", ["style image", "style mask", "flow file", "network"])
def test_a_file_whose_content_changed_refuses_to_resume_and_says_what_overwrite_discards(
        tmp_path, style, random_vgg, random_weights, change):
    source = make_clip(tmp_path / "clip.mp4", n=3, audio=None)
    out = tmp_path / "out.mp4"
    mask = save(tmp_path / "mask.png", np.ones((40, 40, 3), np.float32))
    flows = tmp_path / "flows"
    flows.mkdir()
    for a, b in ((0, 1), (1, 0), (1, 2), (2, 1)):
        write_flo(flows / f"{a}_{b}.flo", np.zeros((48, 64, 2), np.float32))
    options = {"style_masks": (str(mask),), "flow": str(flows / "{a}_{b}.flo")}
    with pytest.raises(KeyboardInterrupt):
        run_video(job(source, style, out, **options), vgg=random_vgg, on_frame=stop_after(1))
    work = work_folder(out)
    finished = sorted(work.rglob("frame_*.png"))
    assert len(finished) == 1
    vgg = random_vgg
    if change == "style image":  # the same name, other pixels
        save(style, smooth_image(40, 40, 3))
    elif change == "style mask":
        save(mask, np.pad(np.ones((40, 20, 3), np.float32), ((0, 0), (0, 20), (0, 0))))
    elif change == "flow file":
        write_flo(flows / "1_2.flo", np.ones((48, 64, 2), np.float32))
    else:
        layers = dict(random_weights.layers)
        kernel, bias = layers["conv1_1"]
        vgg = dataclasses.replace(random_weights, layers={**layers, "conv1_1": (kernel, bias + 1)}).to_vgg("max")
    with pytest.raises(ValueError) as exc:
        run_video(job(source, style, out, **options), vgg=vgg)
    message = str(exc.value)
    assert "\n" not in message
    assert str(work) in message and "holds 1 finished frame" in message, message
    assert message.endswith("or pass --overwrite to discard the 1 finished frame"), message
    named, remedy = {"style image": ("style image painting.png changed", "restore painting.png"),
                     "style mask": ("style mask mask.png changed", "restore mask.png"),
                     "flow file": (".flo files", "restore the .flo files"),
                     "network": ("the network's weights changed", "restore the network's weights")}[change]
    assert named in message and f"; {remedy} to resume, or pass" in message, message
    assert "original command" not in message, message  # the command is the same: a file changed
    assert sorted(work.rglob("frame_*.png")) == finished  # nothing discarded
    said = []
    run_video(job(source, style, out, overwrite=True, **options), vgg=vgg, notify=said.append)
    assert any("discarded 1 finished frame" in m and str(work) in m for m in said), said
    assert out.is_file()


def test_other_values_are_named_in_the_refusal(tmp_path, style, random_vgg):
    source = make_clip(tmp_path / "clip.mp4", n=3, audio=None)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        run_video(job(source, style, out), vgg=random_vgg, on_frame=stop_after(2))
    with pytest.raises(ValueError, match=r"holds 2 finished frames .*\(iterations 2, now 5[;)]"):
        run_video(job(source, style, out, config=StyleConfig(iterations=5, style_weight=1e-1)), vgg=random_vgg)
    with pytest.raises(ValueError, match=r"\(optimizer lbfgs, now tests.jobs.test_video_resume:small_adam[;)]"):
        run_video(job(source, style, out, config=StyleConfig(iterations=2, style_weight=1e-1,
                                                             optimizer=optimizer_from_factory(FACTORY))),
                  vgg=random_vgg)
    with pytest.raises(ValueError, match=r"\(frames 0:3, now 1:3\)"):
        run_video(job(source, style, out, start=1), vgg=random_vgg)
