"""jaxstyle.load_model: a model file as a callable over float32 [B, H, W, 3]; its mixes, its colour
mode, and the files it refuses in one line. ``tiny_model`` writes the file the other apply tests use."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxstyle
from jaxstyle.engine.training import apply_network
from jaxstyle.io.model_file import ModelFileError, read_model, write_model
from jaxstyle.model.transformer import TransformerNet, init_network
from tests.helpers import smooth_image

STYLES = ("starry", "wave")


def metadata(styles=STYLES, *, width: int = 4, preserve_colors=None) -> dict:
    """What ``jaxstyle train`` writes (the parts loading reads, and a few it only shows)."""
    return {"architecture": {"kind": "johnson2016", "width": width, "residual_blocks": 1, "styles": len(styles)},
            "objective": {"content_layers": ["relu4_2"], "style_layers": ["relu1_1", "relu2_1"],
                          "content_weight": 1.0, "style_weight": 0.001, "tv_weight": 0.0, "style_loss": "gram",
                          "preserve_colors": preserve_colors},
            "vgg": {"digest": "0" * 32, "source": "random-test", "pooling": "max"}, "styles": list(styles),
            "steps": 12, "size": 32, "seed": 0, "images_per_second": 3.5, "jaxstyle": "0.1.0"}


def tiny_model(path, styles=STYLES, *, preserve_colors=None, seed: int = 0):
    """A model file of an untrained width-4 network with one residual block (its norms' scales and
    shifts made to differ per style, so that styles give different outputs)."""
    net = TransformerNet(width=4, styles=len(styles), residual_blocks=1)
    params = jax.tree.map(np.asarray, init_network(jax.random.key(seed), net, 16))
    rng = np.random.default_rng(seed)
    for name in ("conv_in_norm", "up_2_norm"):
        params[name] = {k: v + rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in params[name].items()}
    thumbnails = [np.full((4, 6, 3), 40 * i, np.uint8) for i in range(len(styles))]
    write_model(path, params, metadata(styles, preserve_colors=preserve_colors), thumbnails)
    return path


@pytest.fixture()
def model_file(tmp_path):
    return tiny_model(tmp_path / "model.safetensors")


def batch(b: int, h: int, w: int) -> np.ndarray:
    return np.stack([smooth_image(h, w, seed) for seed in range(b)])


def test_load_model_round_trips_and_stylizes_any_size(model_file):
    model = jaxstyle.load_model(model_file)
    params, meta, thumbnails = read_model(model_file)
    assert model.styles == STYLES and model.metadata == meta and model.preserve_colors is None
    assert [t.shape for t in model.thumbnails] == [t.shape for t in thumbnails]
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(model.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(path))
    for shape in ((2, 5, 7), (1, 13, 9), (3, 1, 2)):
        images = batch(*shape)
        out = np.asarray(model(images, "wave"))
        assert out.shape == images.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        want = apply_network(model.params, model.network, images, np.tile([[0.0, 1.0]], (shape[0], 1)))
        np.testing.assert_array_equal(out, np.asarray(want))
    one = np.asarray(model(batch(1, 6, 5)[0], 0))
    assert one.shape == (6, 5, 3)


def test_a_mix_of_s_weights_is_every_image_s_and_rows_are_per_image(model_file):
    model = jaxstyle.load_model(model_file)
    images = batch(2, 9, 11)
    shared = np.asarray(model(images, [0.3, 0.7]))
    np.testing.assert_allclose(np.asarray(model(images, [[0.3, 0.7], [0.3, 0.7]])), shared, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(images, [3.0, 7.0])), shared, atol=1e-6)  # normalised
    rows = np.asarray(model(images, [[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(rows[0], np.asarray(model(images[:1], "starry"))[0], atol=1e-6)
    np.testing.assert_allclose(rows[1], np.asarray(model(images[1:], 1))[0], atol=1e-6)
    assert np.abs(rows[0] - np.asarray(model(images[:1], "wave"))[0]).max() > 1e-3  # the styles differ


@pytest.mark.parametrize(("mix", "expected"), [
    ([0.2, 0.3, 0.5], "expected 2 style weights"), ([1.0, -1.0], ">= 0"), ([0.0, 0.0], "positive sum"),
    (None, "holds 2 styles (starry, wave)"), ("monet", "one of starry, wave"), (2, "index 0..1"),
    ([[1.0, 0.0]] * 3, "[2, 2]"), ([np.nan, 1.0], "finite")])
def test_bad_mixes_are_one_line_errors(model_file, mix, expected):
    model = jaxstyle.load_model(model_file)
    with pytest.raises(ValueError) as caught:
        model(batch(2, 5, 5), mix)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_colour_mode_defaults_to_the_training_objective_s(tmp_path):
    model = jaxstyle.load_model(tiny_model(tmp_path / "grey.safetensors", preserve_colors="luminance"))
    assert model.preserve_colors == "luminance"
    images = batch(1, 12, 10)
    default = np.asarray(model(images, 0))
    np.testing.assert_array_equal(default, np.asarray(model(images, 0, preserve_colors="luminance")))
    assert np.abs(default - np.asarray(model(images, 0, preserve_colors=None))).max() > 1e-3
    with pytest.raises(ValueError, match="expected preserve_colors"):
        model(images, 0, preserve_colors="histogram")


def test_an_altered_model_file_is_refused_in_one_line(model_file):
    data = bytearray(model_file.read_bytes())
    data[-10] ^= 0xFF  # a parameter's byte
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as caught:
        jaxstyle.load_model(model_file)
    message = str(caught.value)
    assert message.startswith(str(model_file)) and "altered" in message and "\n" not in message


def test_parameters_that_do_not_fit_the_stated_architecture_are_refused(tmp_path):
    params, meta, _ = read_model(tiny_model(tmp_path / "model.safetensors"))
    path = tmp_path / "wider.safetensors"
    write_model(path, params, metadata(width=8))  # a well-formed file whose metadata lies about the network
    with pytest.raises(ModelFileError) as caught:
        jaxstyle.load_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: its parameters do not fit its architecture (width 8, styles 2")
    assert "conv_in/kernel is [9, 9, 3, 4], expected [9, 9, 3, 8]" in message and "\n" not in message
    del params["residual_0"]
    write_model(path, params, meta)
    with pytest.raises(ModelFileError, match="missing residual_0/conv_a/kernel"):
        jaxstyle.load_model(path)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda m: m.pop("architecture"), "not a feed-forward style model"),
    (lambda m: m["architecture"].update(kind="unet"), "a network of kind 'unet', expected 'johnson2016'"),
    (lambda m: m.update(styles=["only one"]), "expected 2 style names"),
    (lambda m: m["objective"].update(preserve_colors="histogram"), "preserve_colors None or 'luminance'")])
def test_metadata_that_cannot_describe_the_network_is_refused(tmp_path, change, expected):
    params, meta, _ = read_model(tiny_model(tmp_path / "model.safetensors"))
    change(meta)
    path = tmp_path / "odd.safetensors"
    write_model(path, params, meta)
    with pytest.raises(ModelFileError, match=expected):
        jaxstyle.load_model(path)


def test_one_program_per_shape_and_float_images_only(model_file):
    model = jaxstyle.load_model(model_file)
    images = batch(2, 6, 7)
    model(images, 0)
    compiled = apply_network._cache_size()
    model(batch(2, 6, 7) * 0.5, [0.5, 0.5])  # other values and mix, the same shapes
    assert apply_network._cache_size() == compiled
    with pytest.raises(ValueError, match=r"expected images float \[B, H, W, 3\] or \[H, W, 3\] in \[0, 1\], got uint8"):
        model((images * 255).astype(np.uint8), 0)
