"""`jaxstyle apply` on videos: every frame stylized in batches, each at its input frame's time (a
variable rate kept), the audio kept; a video and an image into one folder; a truncated video fails
alone, leaving no output."""

from __future__ import annotations

import numpy as np
import pytest

import jaxstyle
from jaxstyle.cli import main
from jaxstyle.io import video as video_io
from tests.clips import RATE, cut_inside, decoded_audio, make_clip
from tests.jobs.test_apply_job import photo
from tests.jobs.test_apply_model import tiny_model

av = pytest.importorskip("av")

TICKS = (0, 1, 2, 3, 6, 9, 12, 13, 14, 20)  # of 1/24 s: a variable rate, as phones record


@pytest.fixture()
def model(tmp_path):
    return tiny_model(tmp_path / "model.safetensors")


def frames_of(path) -> np.ndarray:
    return np.stack([frame for _, frame in video_io.read_frames(path, None)])


def test_a_video_keeps_its_frames_times_and_audio(tmp_path, model):
    source = make_clip(tmp_path / "phone.mp4", n=len(TICKS), ticks=TICKS)
    out = tmp_path / "styled.mp4"
    assert main(["apply", str(model), str(source), "-o", str(out), "--style-mix", "1,3", "--batch", "4",
                 "--crf", "0", "-q"]) == 0  # batches of 4, 4 and 2 (padded to 4)
    given, made = video_io.probe(source), video_io.probe(out)
    assert made.frames == given.frames == len(TICKS)
    assert (made.width, made.height) == (given.width, given.height) == (64, 48)
    np.testing.assert_allclose(made.timestamps, given.timestamps, atol=2e-3)
    np.testing.assert_allclose(given.timestamps, np.array(TICKS) / 24, atol=2e-3)  # the clip is what the test means
    assert made.has_audio and abs(len(decoded_audio(out)) - len(decoded_audio(source))) / RATE < 0.03
    want = np.asarray(jaxstyle.load_model(model)(frames_of(source), [0.25, 0.75]))
    got = frames_of(out)
    errors = np.abs(got[:, None] - want[None]).mean(axis=(2, 3, 4))  # [output frame, model's frame]
    assert np.abs(got - want).mean() < 0.03  # the model's frames through H.264 4:2:0
    assert np.array_equal(errors.argmin(axis=1), np.arange(len(TICKS)))  # each in its place
    assert np.abs(got - frames_of(source)).mean() > 0.06  # not the input's


def test_a_video_and_an_image_into_one_folder_and_a_truncated_video_fails_alone(tmp_path, model, capsys):
    clip = make_clip(tmp_path / "clip.mkv", n=6)
    image = photo(tmp_path / "photo.jpg", 10, 12)
    whole = make_clip(tmp_path / "whole.mp4", n=8, audio=None, container_options={"movflags": "+faststart"})
    half = cut_inside(whole, tmp_path, 5)
    out = tmp_path / "out"
    assert main(["apply", str(model), str(clip), str(image), str(half), "-o", str(out), "--style", "wave"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["clip.mkv", "photo.jpg"]  # nothing of the truncated one
    assert video_io.probe(out / "clip.mkv").frames == 6
    err = capsys.readouterr().err
    assert f"jaxstyle: failed: {half}: truncated or corrupt video" in err and "2 written" in err
