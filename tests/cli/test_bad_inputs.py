"""Every kind of image a user may hand over: handled, or one line, exit 2, no output.

Files are generated here (no binary fixtures). Property tests: any bytes given to the image
reader give an RGB float image in [0, 1] or an ImageError, nothing else; any values given to
StyleConfig give a config or a ValueError.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxstyle import StyleConfig
from jaxstyle.cli import main
from jaxstyle.io.images import ImageError, load_image
from tests.helpers import smooth_image

FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "2", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet"]
RNG = np.random.default_rng(0)


def _rgb(h=48, w=64):
    return (smooth_image(h, w, 1) * 255).astype(np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose data is a few bytes (a bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _animated(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (200, 30)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> bytes:
    img = Image.fromarray(_rgb(40, 64))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return _save(img, "JPEG", exif=exif)


CASES = {
    # name: (file name, bytes, expected output size (w, h) or an error fragment)
    "empty": ("e.png", lambda: b"", "not an image Pillow can read"),
    "text": ("t.jpg", lambda: b"Dear diary, today I renamed a text file", "not an image Pillow can read"),
    "truncated-jpeg": ("j.jpg", lambda: _save(Image.fromarray(_rgb()), "JPEG")[:300], "truncated"),
    "truncated-png": ("p.png", lambda: _save(Image.fromarray(RNG.integers(0, 255, (48, 64, 3), np.uint8)),
                                             "PNG")[:500], "truncated"),
    "bomb": ("b.png", lambda: _png_header_only(60000, 60000), "more than the 100,000,000-pixel limit"),
    "rgba": ("a.png", lambda: _save(Image.fromarray(np.dstack([_rgb(), np.full((48, 64), 90, np.uint8)])),
                                    "PNG"), (32, 24)),
    "palette-transparent": ("p.gif", lambda: _save(Image.fromarray(_rgb()).convert("P"), "GIF", transparency=0),
                            (32, 24)),
    "16-bit": ("g.png", lambda: _save(Image.fromarray((smooth_image(48, 64, 2)[..., 0] * 65535).astype(np.uint16)),
                                      "PNG"), (32, 24)),
    "float": ("f.tif", lambda: _save(Image.fromarray(smooth_image(48, 64, 3)[..., 0].astype(np.float32), "F"),
                                     "TIFF"), (32, 24)),
    "cmyk": ("c.jpg", lambda: _save(Image.fromarray(_rgb()).convert("CMYK"), "JPEG"), (32, 24)),
    "exif-rotated": ("r.jpg", _exif_rotated, (20, 32)),
    "animated-gif": ("an.gif", lambda: _animated("GIF"), (32, 32)),
    "animated-webp": ("an.webp", lambda: _animated("WEBP"), (32, 32)),
    "one-pixel": ("o.png", lambda: _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (32, 32)),
    "extreme-aspect": ("x.png", lambda: _save(Image.new("RGB", (2000, 3)), "PNG"), "expected at least 2x2 px"),
}


@pytest.mark.parametrize("role", ["content", "style"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_image_matrix(env, tmp_path, capsys, case, role):
    name, make, expected = CASES[case]
    odd = tmp_path / name
    odd.write_bytes(make())
    ordinary = tmp_path / "ordinary.png"
    Image.fromarray(_rgb()).save(ordinary)
    content, style = (odd, ordinary) if role == "content" else (ordinary, odd)
    out = tmp_path / "out.png"
    code = main(["stylize", str(content), str(style), "-o", str(out), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    if isinstance(expected, str):
        assert code == 2 and len(err) == 1 and err[0].startswith("jaxstyle: error: "), err
        assert str(odd) in err[0] and expected in err[0], err
        assert not out.exists()
    else:
        assert code == 0, err
        if role == "content":
            assert Image.open(out).size == expected
        else:
            assert Image.open(out).size == (32, 24)
    assert not list(tmp_path.glob(".*.part"))


def test_animated_gif_uses_the_first_frame(tmp_path):
    (tmp_path / "a.gif").write_bytes(_animated("GIF"))
    first = load_image(tmp_path / "a.gif")
    assert first.shape == (40, 40, 3) and first.mean() > 0.6  # frame 1 is light, frame 2 dark


@pytest.mark.parametrize("where", ["missing-dir", "is-dir", "read-only"])
def test_unwritable_output(env, tmp_path, capsys, where):
    content = tmp_path / "c.png"
    Image.fromarray(_rgb()).save(content)
    if where == "missing-dir":
        out = tmp_path / "nope" / "out.png"
    elif where == "is-dir":
        out = tmp_path / "adir.png"
        out.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write into read-only folders")
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        out = folder / "out.png"
    assert main(["stylize", str(content), str(content), "-o", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=400).map(lambda b: b"\xff\xd8\xff\xe0" + b),
    st.builds(lambda n, data: data[:n], st.integers(0, 2000),
              st.just(_save(Image.fromarray(RNG.integers(0, 255, (30, 40, 3), np.uint8)), "PNG"))),
    st.builds(lambda i, v, data: data[:i] + bytes([v]) + data[i + 1:], st.integers(0, 1500), st.integers(0, 255),
              st.just(_save(Image.fromarray(_rgb(30, 40)), "JPEG"))),
))
def test_reader_gives_an_image_or_an_image_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "f.img"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "content_weight": st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.text(max_size=3)),
    "style_weight": st.floats(allow_nan=True),
    "iterations": st.one_of(st.integers(-3, 5), st.floats(allow_nan=True, allow_infinity=True)),
    "seed": st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=2)),
    "style_blend": st.one_of(st.none(), st.lists(st.floats(allow_nan=True), max_size=3)),
    "init_noise_blend": st.floats(allow_nan=True),
    "optimizer": st.sampled_from(["lbfgs", "adam", "sgd", ""]),
    "style_layers": st.one_of(st.just("relu1_1,relu2_1"), st.just("relu1_1,relu1_1"), st.just(""),
                              st.just("relu9_9"), st.just("block3_conv1")),
    "scales": st.lists(st.integers(-2, 600), max_size=3),
    "precision": st.sampled_from(["float32", "bfloat16", "float8"]),
    "lbfgs_memory": st.integers(-1, 20),
}))
def test_config_is_valid_or_a_value_error(kwargs):
    try:
        config = StyleConfig(**kwargs)
    except ValueError:
        return
    assert config.iterations >= 0 and config.content_weight >= 0 and config.style_weight >= 0
    assert np.isfinite(config.content_weight) and np.isfinite(config.style_weight)
    assert all(b > a for a, b in zip(config.scales, config.scales[1:])) and all(s >= 1 for s in config.scales)
    assert len(config.style_layer_weights) == len(config.style_layers) >= 1
