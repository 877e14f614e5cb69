"""Image reading in every common mode becomes RGB float32 in [0, 1]; writes are atomic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io.files import atomic_write
from jaxstyle.io.images import ImageError, load_image, resize_image, save_image


def check_rgb(a: np.ndarray, shape):
    assert a.shape == shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_grayscale_is_expanded(tmp_path):
    Image.fromarray(np.full((5, 7), 51, np.uint8), "L").save(tmp_path / "g.png")
    a = load_image(tmp_path / "g.png")
    check_rgb(a, (5, 7, 3))
    np.testing.assert_allclose(a, 0.2, atol=1e-6)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:2, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(a[0, 0], [1, 0, 0])
    np.testing.assert_allclose(a[3, 3], [1, 1, 1])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    img.info["transparency"] = 1
    img.putpixel((0, 0), 1)
    img.save(tmp_path / "p.png", transparency=1)
    a = load_image(tmp_path / "p.png")
    np.testing.assert_allclose(a[0, 0], [1, 1, 1])  # transparent -> white
    np.testing.assert_allclose(a[1, 1], [0, 0, 1])


def test_16_bit_grayscale(tmp_path):
    Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16)).save(tmp_path / "d.png")
    a = load_image(tmp_path / "d.png")
    np.testing.assert_allclose(a, 0.5, atol=1e-4)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    a = load_image(tmp_path / "c.jpg")
    check_rgb(a, (8, 8, 3))
    assert a[..., 0].mean() > 0.8 and a[..., 1].mean() < 0.2  # red


def test_exif_orientation_is_honoured(tmp_path):
    img = Image.new("RGB", (6, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (6, 2, 3)


def test_resize_keeps_aspect(tmp_path):
    a = np.random.default_rng(0).uniform(size=(30, 60, 3)).astype(np.float32)
    check_rgb(resize_image(a, 20), (10, 20, 3))
    check_rgb(resize_image(a, 120), (60, 120, 3))


@pytest.mark.parametrize("content,message", [(b"", "not an image"), (b"hello", "not an image")])
def test_garbage(tmp_path, content, message):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ImageError, match=f"x.png: {message}"):
        load_image(tmp_path / "x.png")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png: corrupt or truncated"):
        load_image(tmp_path / "t.png")


def test_save_round_trip_and_atomicity(tmp_path):
    a = np.random.default_rng(2).uniform(size=(5, 6, 3)).astype(np.float32)
    save_image(tmp_path / "o.png", a)
    np.testing.assert_allclose(load_image(tmp_path / "o.png"), a, atol=0.5 / 255 + 1e-6)
    (tmp_path / "keep.png").write_bytes(b"old")
    with pytest.raises(ValueError, match=r"expected an image float \[H, W, 3\]"):
        save_image(tmp_path / "keep.png", np.zeros((2, 2, 5)))

    def interrupted(f):
        f.write(b"half an image")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "keep.png", interrupted)
    assert (tmp_path / "keep.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png", "o.png"]
