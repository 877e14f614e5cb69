"""The Python API takes images as notebook users have them (paths, PIL images, uint8, uint16 and float
arrays, grey or with alpha) everywhere an image or mask goes in, as the CLI reads the same file;
anything else is one error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import jaxstyle
from jaxstyle import api
from jaxstyle.config import StyleConfig
from jaxstyle.engine import batch, problem, video
from jaxstyle.engine import stylize as single
from jaxstyle.io.images import ImageError, load_image
from tests.helpers import smooth_image

VGG = object()  # the engine is stood in for below: any network object


def png(path, array) -> str:
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture()
def kinds(tmp_path):
    """Several kinds of one image each: (value, the float32 array the engine must get)."""
    rng = np.random.default_rng(0)
    rgb8 = (smooth_image(12, 16, 1) * 255).astype(np.uint8)
    rgba8 = np.concatenate([rgb8, rng.integers(0, 256, (12, 16, 1), np.uint8)], -1)
    grey16 = rng.integers(0, 65536, (10, 10), np.uint16)
    path = png(tmp_path / "style.png", rgba8)
    return {"uint8": (rgb8, rgb8.astype(np.float32) / 255), "path": (path, load_image(path)),
            "pil": (Image.fromarray(rgba8), load_image(path)), "pathlib": (tmp_path / "style.png", load_image(path)),
            "uint16": (grey16, np.repeat((grey16 / 65535.0)[..., None], 3, -1).astype(np.float32)),
            "float": (smooth_image(8, 8, 2), smooth_image(8, 8, 2)),
            "mask": (np.eye(12, 16, dtype=bool), np.eye(12, 16, dtype=np.float32))}


def recorder(monkeypatch, module, name):
    calls = []
    monkeypatch.setattr(module, name, lambda *args, **kw: calls.append((args, kw)) or "result")
    return calls


def same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.float32


@pytest.mark.parametrize("entry,module,name", [(jaxstyle.stylize, single, "stylize"),
                                               (jaxstyle.style_problem, problem, "style_problem")])
def test_stylize_and_style_problem_convert_every_image_and_mask(monkeypatch, kinds, entry, module, name):
    calls = recorder(monkeypatch, module, name)
    assert entry(kinds["uint8"][0], [kinds["pil"][0], kinds["path"][0], kinds["pathlib"][0]], vgg=VGG,
                 init_image=kinds["uint16"][0], content_mask=kinds["mask"][0],
                 style_masks=[kinds["uint8"][0], None, kinds["path"][0]], config=StyleConfig(iterations=3)) == "result"
    (content, styles), options = calls[0]
    same(content, kinds["uint8"][1])
    for got, kind in zip(styles, ("pil", "path", "pathlib")):
        same(got, kinds[kind][1])
    same(options["init_image"], kinds["uint16"][1])
    same(options["content_mask"], kinds["mask"][1])
    same(options["style_masks"][0], kinds["uint8"][1])
    assert options["style_masks"][1] is None
    same(options["style_masks"][2], kinds["path"][1])
    assert options["vgg"] is VGG and options["config"] == StyleConfig(iterations=3)
    entry(kinds["path"][0], kinds["pil"][0], vgg=VGG)  # one style image stays one
    (content, style), options = calls[1]
    same(content, kinds["path"][1])
    same(style, kinds["pil"][1])
    assert options["init_image"] is options["content_mask"] is options["style_masks"] is None


def test_stylize_batch_converts_each_pair(monkeypatch, kinds, tmp_path):
    calls = recorder(monkeypatch, batch, "stylize_batch")
    second = png(tmp_path / "content.png", (smooth_image(12, 16, 5) * 255).astype(np.uint8))
    jaxstyle.stylize_batch([kinds["uint8"][0], second], [kinds["path"][0], [kinds["pil"][0], kinds["uint16"][0]]],
                           vgg=VGG, content_masks=[None, kinds["mask"][0]],
                           style_masks=[None, [kinds["mask"][0], None]], seeds=[1, 2])
    (contents, styles), options = calls[0]
    same(contents, np.stack([kinds["uint8"][1], load_image(second)]))
    same(styles[0], kinds["path"][1])
    same(styles[1][0], kinds["pil"][1])
    same(styles[1][1], kinds["uint16"][1])
    assert options["content_masks"][0] is None and options["style_masks"][0] is None
    same(options["content_masks"][1], kinds["mask"][1])
    same(options["style_masks"][1][0], kinds["mask"][1])
    assert options["style_masks"][1][1] is None and options["seeds"] == [1, 2]
    stack = np.stack([kinds["uint8"][0]] * 3)  # a uint8 array [B, H, W, 3]
    jaxstyle.stylize_batch(stack, [kinds["float"][0]] * 3, vgg=VGG)
    same(calls[1][0][0], np.stack([kinds["uint8"][1]] * 3))
    with pytest.raises(ValueError, match=r"^expected contents of one shape \(a batch runs one shape\), got "):
        jaxstyle.stylize_batch([kinds["uint8"][0], kinds["float"][0]], [kinds["path"][0]] * 2, vgg=VGG)
    with pytest.raises(ValueError, match="^expected style image 2 of pair 1 as a float array"):
        jaxstyle.stylize_batch([kinds["uint8"][0]] * 2, [kinds["path"][0], [kinds["path"][0], {}]], vgg=VGG)


def test_stylize_video_converts_frames_as_the_run_takes_them(monkeypatch, kinds, tmp_path):
    calls = recorder(monkeypatch, video, "stylize_video")
    paths = [png(tmp_path / f"f{i}.png", (smooth_image(12, 16, i) * 255).astype(np.uint8)) for i in range(3)]
    frames_in = [paths[0], Image.open(paths[1]), np.asarray(Image.open(paths[2]))]
    jaxstyle.stylize_video(frames_in, kinds["pil"][0], vgg=VGG, flow=lambda a, b: None,
                           style_masks=[kinds["mask"][0]])
    (frames, style), options = calls[0]
    assert isinstance(frames, api.Frames) and len(frames) == 3
    for i in (0, 1, 2, -1):
        same(frames[i], load_image(paths[i]))
    assert [f.shape for f in frames[1:]] == [(12, 16, 3)] * 2
    same(style, kinds["pil"][1])
    same(options["style_masks"][0], kinds["mask"][1])
    with pytest.raises(IndexError):
        frames[3]
    with pytest.raises(ImageError, match="f9.png: no such file"):  # up front, before any frame is run
        jaxstyle.stylize_video([paths[0], str(tmp_path / "f9.png")], kinds["path"][0], vgg=VGG)
    with pytest.raises(ValueError, match="^expected frame 1 as a float array in"):
        jaxstyle.stylize_video([paths[0], {"frame": 1}], kinds["path"][0], vgg=VGG)
    assert len(calls) == 1


@pytest.mark.parametrize("call,message", [
    (lambda k: jaxstyle.stylize({}, k["path"][0], vgg=VGG), "^expected the content image as a float array in "
                                                             r"\[0, 1\], a uint8 or uint16 array, a PIL image or a "
                                                             "path; got dict$"),
    (lambda k: jaxstyle.stylize("no-such-photo.jpg", k["path"][0], vgg=VGG), "^no-such-photo.jpg: no such file$"),
    (lambda k: jaxstyle.stylize(k["path"][0], [k["path"][0], 3], vgg=VGG), "^expected style image 2 as a float"),
    (lambda k: jaxstyle.stylize(k["path"][0], k["path"][0], vgg=VGG, init_image=np.zeros((4, 4), np.int32)),
     r"^expected the init image as .* got an array of int32, shape \(4, 4\)$"),
    (lambda k: jaxstyle.style_problem(k["path"][0], k["path"][0], vgg=VGG, style_masks=[np.zeros((2, 2), "U1")]),
     "^expected style mask 1 as a float array in .0, 1., a bool, uint8 or uint16 array"),
    (lambda k: jaxstyle.stylize(k["path"][0], k["path"][0], vgg=VGG, style_masks=k["pil"][0]),
     "^expected the style masks as a list, got Image$")])
def test_anything_else_is_one_error_naming_the_argument(monkeypatch, kinds, call, message):
    recorder(monkeypatch, single, "stylize")
    recorder(monkeypatch, problem, "style_problem")
    with pytest.raises(ValueError, match=message):
        call(kinds)


def test_a_path_runs_as_the_cli_reads_it(random_vgg, tmp_path):
    content = png(tmp_path / "c.png", (smooth_image(32, 40, 10) * 255).astype(np.uint8))
    style = png(tmp_path / "s.jpg", (smooth_image(36, 36, 11) * 255).astype(np.uint8))
    config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=2)
    by_path = jaxstyle.stylize(content, style, vgg=random_vgg, config=config)
    with Image.open(style) as pil:
        by_kind = jaxstyle.stylize(np.asarray(Image.open(content)), pil, vgg=random_vgg, config=config)
    by_array = jaxstyle.stylize(load_image(content), load_image(style), vgg=random_vgg, config=config)
    np.testing.assert_array_equal(by_path.image, by_array.image)
    np.testing.assert_array_equal(by_kind.image, by_array.image)
    assert by_path.steps == 2


def test_video_frames_given_as_uint8_run_as_their_float_arrays(random_vgg, tmp_path):
    from jaxstyle.config import VideoConfig

    frames = [(smooth_image(32, 32, i) * 255).astype(np.uint8) for i in range(3)]
    style = png(tmp_path / "s.png", (smooth_image(32, 32, 11) * 255).astype(np.uint8))
    config = StyleConfig(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), iterations=2)

    def flow(a, b):
        return np.zeros((32, 32, 2), np.float32)

    runs = [jaxstyle.stylize_video(given, style_given, vgg=random_vgg, flow=flow, config=config, video=video_config)
            for video_config in (VideoConfig(), VideoConfig(mode="parallel"))
            for given, style_given in ((frames, style), ([f.astype(np.float32) / 255 for f in frames],
                                                         load_image(style)))]
    for by_kind, by_array in (runs[:2], runs[2:]):
        for a, b in zip(by_kind.frames(3), by_array.frames(3)):
            np.testing.assert_array_equal(a, b)
