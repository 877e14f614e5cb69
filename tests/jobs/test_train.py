"""`jaxstyle train` and jaxstyle.train (jaxstyle.jobs.train): the model file and its metadata, the loss
falls, a kill and resume gives the parameters of an uninterrupted run, a checkpoint of other settings
is refused, unreadable content images are skipped and reported, the output is not overwritten, bad
input is one line, and 2 devices train as 1 (tiny: random VGG weights, 32 px crops, width 4)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.config import StyleConfig
from jaxstyle.io import images
from jaxstyle.io.model_file import read_model
from jaxstyle.jobs import train as train_job
from jaxstyle.jobs.train import train
from jaxstyle.jobs.training_data import TrainingData
from jaxstyle.jobs.video_settings import network_digest
from jaxstyle.model.transformer import TransformerNet, init_network
from tests.helpers import one_line_error, run_on_fake_cpu_devices, smooth_image

LOSS = ["--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1", "--conv", "direct", "--style-weight", "1"]
TINY = ["--size", "32", "--width", "4", "--residual-blocks", "1", "--batch", "2", "--threads", "2", *LOSS]
CONFIG = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), conv="direct",
                     style_weight=1.0)
OPTIONS = dict(size=32, width=4, residual_blocks=1, batch=2, threads=2)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.fromarray((smooth_image(40, 48, 10 + i) * 255).astype(np.uint8)).save(folder / f"p{i}.jpg")
    return folder


def leaves(params) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def assert_same_params(a, b, atol=1e-5, skip=()):
    a, b = leaves(a), leaves(b)
    assert a.keys() == b.keys()
    for name in a:
        if not any(part in name for part in skip):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=atol, err_msg=name)


def test_the_cli_writes_a_model_with_its_metadata_and_plot(env, random_vgg, photos, style, tmp_path, capsys):
    model, plot = tmp_path / "painting.jaxstyle", tmp_path / "loss.png"
    assert main(["train", str(style), "--contents", str(photos), "-o", str(model), *TINY, "--steps", "4",
                 "--checkpoint-every", "2", "--plot", str(plot)]) == 0
    params, metadata, thumbnails = read_model(model)
    assert metadata["architecture"] == {"kind": "johnson2016", "width": 4, "residual_blocks": 1, "styles": 1}
    expected = {"styles": ["painting"], "steps": 4, "size": 32, "style_size": 32, "batch": 2, "seed": 0,
                "learning_rate": 1e-3, "content_images": 5, "skipped": {"count": 0, "names": []}}
    assert {k: metadata[k] for k in expected} == expected
    assert metadata["objective"] == {
        "content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"], "content_layer_weights": [1.0],
        "style_layer_weights": [0.5, 0.5], "content_weight": 1.0, "style_weight": 1.0, "tv_weight": 0.0,
        "style_loss": "w2", "preserve_colors": None, "precision": "float32", "normalize_gradients": False,
        "temporal_weight": 0.0}
    assert metadata["vgg"]["digest"] == network_digest(random_vgg) and metadata["vgg"]["source"] == "random-test"
    assert metadata["training_seconds"] > 0 and metadata["images_per_second"] > 0
    assert np.isfinite(metadata["final_loss"]) and metadata["jaxstyle"]
    fresh = init_network(jax.random.key(0), TransformerNet(4, 1, 1), 32)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, fresh)
    assert len(thumbnails) == 1 and thumbnails[0].shape == (40, 40, 3)
    np.testing.assert_array_equal(thumbnails[0], images.to_uint8(images.load_image(style)))
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "painting.jaxstyle.jaxstyle-train").exists()  # the default checkpoints, put away
    assert f"wrote {model} (4 steps" in capsys.readouterr().err


def test_the_loss_falls(random_vgg, photos, style):
    result = train(style, photos, vgg=random_vgg, config=CONFIG, steps=30, learning_rate=1e-2, **OPTIONS)
    losses = result.loss_history
    assert result.status == "done" and result.steps == 30 and losses.shape == (30,) and np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.8 * losses[:5].mean(), losses
    assert result.checkpoint is None and result.metadata["steps"] == 30  # no output, no folder: nothing written


def test_steps_with_a_non_finite_loss_are_counted_and_reported(random_vgg, photos, style, monkeypatch):
    step = train_job.train_step

    def poisoned(state, *args, **kwargs):  # the engine's report of a step it did not take
        new, metrics = step(state, *args, **kwargs)
        return new, {**metrics, "loss": float("nan"), "finite": False} if len(calls) == 1 else metrics

    calls = []
    monkeypatch.setattr(train_job, "train_step", lambda *a, **k: (calls.append(1), poisoned(*a, **k))[1])
    said = []
    result = train(style, photos, vgg=random_vgg, config=CONFIG, steps=3, notify=said.append, **OPTIONS)
    assert result.metadata["non_finite_steps"] == 1 and np.isnan(result.loss_history[0])
    assert said == ["warning: 1 of 3 steps had a non-finite loss and left the network as it was (a lower "
                    "--learning-rate may help)"]


def test_a_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(random_vgg, photos, style, tmp_path):
    run = dict(vgg=random_vgg, config=CONFIG, steps=6, checkpoint_every=2, **OPTIONS)
    straight = train(style, photos, checkpoints=tmp_path / "a", **run)

    def kill(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    said = []
    with pytest.raises(KeyboardInterrupt):
        train(style, photos, checkpoints=tmp_path / "b", callback=kill, notify=said.append, **run)
    assert said == [f"interrupted at step 3/6: checkpoint {tmp_path / 'b' / 'step-00000003.ckpt'}; run the same "
                    f"command to resume (or with --steps 3 to write the model as it is)"]
    resumed = train(style, photos, checkpoints=tmp_path / "b", notify=said.append, **run)
    assert said[1] == f"resuming from {tmp_path / 'b' / 'step-00000003.ckpt'} (step 3/6)"
    assert_same_params(resumed.params, straight.params)
    np.testing.assert_allclose(resumed.loss_history, straight.loss_history, rtol=1e-5)

    stopped = train(style, photos, tmp_path / "c.jaxstyle", callback=lambda p: p.step == 4, **run)  # the stop hook
    assert stopped.status == "stopped" and stopped.steps == 4 and not (tmp_path / "c.jaxstyle").exists()
    done = train(style, photos, tmp_path / "c.jaxstyle", **run)
    assert done.status == "done" and read_model(tmp_path / "c.jaxstyle")[1]["steps"] == 6
    assert_same_params(done.params, straight.params)


def test_an_interrupted_cli_run_says_where_its_checkpoint_is_and_refuses_other_settings(
        env, photos, style, tmp_path, capsys, monkeypatch):
    model = tmp_path / "m.jaxstyle"
    command = ["train", str(style), "--contents", str(photos), "-o", str(model), *TINY, "--steps", "6", "--quiet"]
    get = TrainingData.get

    def interrupted(self, step):  # a Ctrl-C while the loader decodes step 3's batch
        if step == 3:
            raise KeyboardInterrupt
        return get(self, step)

    monkeypatch.setattr(TrainingData, "get", interrupted)
    assert main(command) == 130
    folder = tmp_path / "m.jaxstyle.jaxstyle-train"
    assert capsys.readouterr().err.splitlines() == [
        f"jaxstyle: interrupted at step 3/6: checkpoint {folder / 'step-00000003.ckpt'}; run the same command to "
        f"resume (or with --steps 3 to write the model as it is)"]
    assert not model.exists()
    monkeypatch.setattr(TrainingData, "get", get)
    assert main([*command, "--size", "48", "--seed", "1"]) == 2
    line = one_line_error(capsys)
    assert line == (f"jaxstyle: error: {folder / 'step-00000003.ckpt'}: a checkpoint at step 3 of a run with other "
                    f"settings (size 32, now 48; style size 32, now 48; seed 0, now 1); run the original command to "
                    f"resume it, or pass --overwrite to start afresh (its checkpoints are discarded)")
    assert main(command) == 0
    assert capsys.readouterr().err.splitlines() == [f"jaxstyle: resuming from {folder / 'step-00000003.ckpt'} "
                                                    f"(step 3/6)"]
    assert read_model(model)[1]["steps"] == 6 and not folder.exists()


def test_a_corrupt_image_is_skipped_counted_and_reported(env, photos, style, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG after all")
    model = tmp_path / "m.jaxstyle"
    # 3 steps of 2 rows walk 6 positions of the 6 images' first epoch: the broken one among them
    assert main(["train", str(style), "--contents", str(photos), "-o", str(model), *TINY, "--steps", "3",
                 "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"jaxstyle: skipped 1 unreadable content image(s): {photos / 'broken.jpg'} (not an image Pillow can read)"]
    assert read_model(model)[1]["skipped"] == {"count": 1, "names": [str(photos / "broken.jpg")]}


def test_an_existing_model_is_refused_without_overwrite_before_anything_is_loaded(env, photos, style, tmp_path,
                                                                                 capsys, monkeypatch):
    model = tmp_path / "m.jaxstyle"
    model.write_bytes(b"the user's")
    monkeypatch.setattr("jaxstyle.jobs.train.load_network", lambda *a, **k: pytest.fail("loaded the network"))
    assert main(["train", str(style), "--contents", str(photos), "-o", str(model), *TINY]) == 2
    assert one_line_error(capsys) == f"jaxstyle: error: {model}: already exists (pass --overwrite to replace it)"
    assert model.read_bytes() == b"the user's" and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.jaxstyle", "painting.png", "photos"]


@pytest.mark.parametrize("change, message", [
    ({"style": "missing.png"}, "missing.png: no such file"),
    ({"--contents": "nowhere"}, "nowhere: no such file or folder"),
    ({"--contents": "empty"}, "empty: no images (expected files ending in"),
    ({"--batch": "0"}, "argument --batch: expected a positive integer, got '0'"),
    ({"--learning-rate": "0"}, "expected learning_rate to be a finite number > 0, got 0.0"),
    ({"--size": "1"}, "a training crop at size 1 is 1x1 px: expected at least"),
    ({"--plot": "loss.jpg"}, "loss.jpg: --plot writes a .png"),
    ({"--probes": "photos/p0.jpg"}, "--probes are shown on the preview page: give --preview too"),
    ({"--preserve-colors": "histogram"}, "argument --preserve-colors: invalid choice: 'histogram'"),
    ({"--style-layers": "relu9_9"}, "relu9_9"),
    ({"--checkpoints": "afile"}, "afile: expected a folder of checkpoints, got a file"),
    ({"--checkpoints": "s3://bucket/run"}, "s3://bucket/run: checkpoints are kept in a local folder, not at a URL"),
    ({"--contents": "broken"}, "all 2 content images are unreadable"),
])
def test_bad_input_is_one_line_and_leaves_nothing(env, photos, style, tmp_path, capsys, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("")
    (tmp_path / "broken").mkdir()
    for name in ("a.jpg", "b.png"):
        (tmp_path / "broken" / name).write_bytes(b"nothing like an image")
    options = {"style": str(style), "--contents": str(photos), "-o": "m.jaxstyle", **change}
    argv = ["train", options.pop("style"), *TINY] + [x for kv in options.items() for x in kv]  # the last wins
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's refusals
        status = exc.code
    assert status == 2
    line = one_line_error(capsys)
    assert message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no model, no checkpoint folder, no plot


@pytest.mark.slow
def test_two_devices_train_the_parameters_of_one_and_refuse_a_batch_they_cannot_split(env, photos, style, tmp_path):
    """As tests/engine/test_training.py's devices test: average pooling (a rounding difference can move
    max pooling's argmax), the Gram loss (W2's Newton-Schulz iterations amplify rounding), and the
    residual blocks' last shifts left out (norm_b beta: the instance norm after them removes any
    constant shift, so their gradient is 0 up to rounding, which Adam makes into steps of up to the
    learning rate; they change no output)."""
    one, two = tmp_path / "one.jaxstyle", tmp_path / "two.jaxstyle"
    argv = ["train", str(style), "--contents", str(photos), *TINY, "--steps", "3", "--quiet", "--pooling", "avg",
            "--style-loss", "gram"]
    script = (f"import sys, jax; from jaxstyle.cli import main; assert jax.device_count() == 2; "
              f"print(main({json.dumps(argv + ['-o', str(tmp_path / 'odd.jaxstyle'), '--batch', '3'])})); "
              f"sys.exit(main({json.dumps(argv + ['-o', str(two)])}))")
    done = run_on_fake_cpu_devices(script, devices=2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"] and done.stderr.splitlines()[0] == (
        "jaxstyle: error: --batch 3: expected a multiple of the 2 devices (each takes an equal share of the global "
        "batch)")
    assert main([*argv, "-o", str(one)]) == 0
    assert_same_params(read_model(two)[0], read_model(one)[0], skip=("norm_b']['beta",))
