"""Image reading in every common mode becomes RGB float32 in [0, 1]; writes are atomic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io.files import atomic_write
from jaxstyle.io.images import ImageError, as_image, check_image_kind, load_image, resize_image, save_image


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
    with pytest.raises(ValueError, match=r"expected image to save as \[H, W\].*got shape \(2, 2, 5\)"):
        save_image(tmp_path / "keep.png", np.zeros((2, 2, 5)))

    def interrupted(f):
        f.write(b"half an image")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "keep.png", interrupted)
    assert (tmp_path / "keep.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png", "o.png"]


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 2), (5, 7, 3), (5, 7, 4)])
def test_a_uint8_array_is_what_a_png_of_its_pixels_loads_as(tmp_path, shape):
    pixels = np.random.default_rng(3).integers(0, 256, shape, np.uint8)
    Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels).save(tmp_path / "a.png")
    np.testing.assert_array_equal(as_image(pixels, "x"), load_image(tmp_path / "a.png"))


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_a_uint16_array_is_what_a_16_bit_tiff_of_it_loads_as(tmp_path, shape):
    import tifffile

    pixels = np.random.default_rng(4).integers(0, 65536, shape, np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", pixels, photometric="minisblack" if len(shape) == 2 else "rgb",
                     extrasamples=["unassalpha"] if shape[-1] == 4 else None)
    np.testing.assert_array_equal(as_image(pixels, "x"), load_image(tmp_path / "a.tif"))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1", "CMYK"])
def test_a_pil_image_of_any_mode_is_what_its_file_loads_as(tmp_path, mode):
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    img = Image.fromarray(np.random.default_rng(5).integers(0, 256, (6, 9, 4), np.uint8), "RGBA")
    img = img.convert("RGB").convert("P") if mode == "P" else img.convert(mode)
    img.save(path, **({"transparency": 3} if mode == "P" else {}))
    with Image.open(path) as opened:
        np.testing.assert_array_equal(as_image(opened, "x"), load_image(path))
    np.testing.assert_array_equal(as_image(str(path), "x"), load_image(path))


def test_a_pil_image_is_turned_as_its_exif_says_like_its_file(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (6, 2), (255, 0, 0)).save(tmp_path / "r.jpg", exif=exif)
    with Image.open(tmp_path / "r.jpg") as opened:
        np.testing.assert_array_equal(as_image(opened, "x"), load_image(tmp_path / "r.jpg"))
        assert as_image(opened, "x").shape == (6, 2, 3)


def test_float_arrays_are_taken_as_they_are_grey_and_alpha_too():
    import jax.numpy as jnp

    rgb = np.random.default_rng(6).uniform(size=(4, 5, 3))
    np.testing.assert_array_equal(as_image(rgb, "x"), rgb.astype(np.float32))
    assert as_image(jnp.asarray(rgb, jnp.bfloat16), "x").dtype == np.float32
    np.testing.assert_array_equal(as_image(rgb[..., 0], "x"), np.repeat(rgb[..., :1], 3, -1).astype(np.float32))
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 0.25)], -1)
    np.testing.assert_allclose(as_image(rgba, "x"), rgb * 0.25 + 0.75, atol=1e-7)
    np.testing.assert_array_equal(as_image(rgb * 3, "x"), (rgb * 3).astype(np.float32))  # the engine says
    np.testing.assert_array_equal(as_image(np.eye(3, dtype=bool), "m", mask=True), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(as_image(np.full((2, 3), 255, np.uint8), "m", mask=True), np.ones((2, 3)))


@pytest.mark.parametrize("value,got", [({}, "got dict"), (None, "got NoneType"), (np.zeros((3, 3), np.int64),
                                       r"got an array of int64, shape \(3, 3\)"), ([[1, 2]], "got a list of int64"),
                                       (np.zeros((3, 3), bool), "got an array of bool")])
def test_anything_else_is_one_error_naming_the_argument(value, got):
    with pytest.raises(ValueError, match=rf"^expected the content image as a float array in \[0, 1\], a uint8 or "
                                         rf"uint16 array, a PIL image or a path; {got}"):
        as_image(value, "the content image")
    with pytest.raises(ValueError, match=r"^expected frame 3 as \[H, W\], .* pixels, got shape \(3, 8, 8\)$"):
        check_image_kind(np.zeros((3, 8, 8), np.uint8), "frame 3")
    with pytest.raises(ImageError, match="nope.png: no such file"):
        check_image_kind("nope.png", "frame 0")


def test_save_image_takes_what_the_api_takes_not_only_floats(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    save_image(tmp_path / "u8.png", pixels)  # was clipped to [0, 1] as floats: an all-white file
    assert np.array_equal(np.asarray(Image.open(tmp_path / "u8.png")), pixels)
    save_image(tmp_path / "pil.png", Image.fromarray(pixels))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pil.png")), pixels)
    deep = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    save_image(tmp_path / "u16.tif", deep)
    assert np.array_equal(load_image(tmp_path / "u16.tif"), as_image(deep, "x"))
    save_image(tmp_path / "grey.png", pixels[..., 0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grey.png"))[..., 1], pixels[..., 0])
    with pytest.raises(ValueError, match="expected the image to save as an array or a PIL image"):
        save_image(tmp_path / "p.png", str(tmp_path / "u8.png"))
