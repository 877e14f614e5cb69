"""The only module that reads or writes images.

Reading: anything Pillow decodes becomes RGB float32 [H, W, 3] in [0, 1]:
EXIF orientation applied, the first frame of animations, grayscale expanded,
palette and alpha images composited over white, CMYK converted, 16-bit and
32-bit integer images scaled from 0-65535, float images taken as [0, 1].
Images whose header claims more than ``MAX_PIXELS`` are refused before decoding.

From Python, :func:`as_image` takes what notebook users pass (a path, a PIL image, a float,
uint8 or uint16 array, grey or with alpha) and gives what :func:`load_image` gives for a file.

Reading TIFF goes through tifffile first (Pillow cannot read 16-bit RGB TIFF): 8-bit,
16-bit and float samples, the first page, RGB(A) or grey.

Writing: PNG, JPEG (8-bit) or TIFF (16-bit RGB, keeps the optimiser's precision) by
extension, to a temporary file beside the target that is renamed over it only once
complete (no half-written output on interruption), or as one whole upload to a bucket.

Every path may also be a URL (``s3://``, ``gs://``, ``http(s)://`` for reading, ``memory://``):
the bytes go through :mod:`jaxstyle.io.storage`, the decoding and encoding stay here.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxstyle.io import storage
from jaxstyle.io.storage import Location, Url

MAX_PIXELS = 100_000_000
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_HEADER_BYTES = 1 << 20  # read from a URL to find an image's size; the whole object if the header is longer


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a / 65535.0, 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=-1).astype(np.float32)
    if mode == "F":
        a = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0.0, 1.0)
        return np.repeat(a[..., None], 3, axis=-1)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, *, max_size: int | None = None) -> np.ndarray:
    """Read an image as RGB float32 [H, W, 3] in [0, 1].

    max_size: if given, resize (Lanczos) so that the longer side is ``max_size`` px,
    keeping the aspect ratio (images are scaled up as well as down).
    """
    path = storage.location(path)
    if isinstance(path, Url):
        source = io.BytesIO(storage.read_bytes(path))  # StorageError: no such object, denied, network
    else:
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, expected an image file")
        source = path
    tiff = _read_tiff(source, path) if path.suffix.lower() in TIFF_SUFFIXES else None
    if tiff is not None:
        return resize_image(tiff, max_size) if max_size else tiff
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{path}: {w}x{h} px is larger than the {MAX_PIXELS:,}-pixel limit")
                img.seek(0)
                img.load()
                array = from_pil(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: refused before decoding: its header claims more than the "
                         f"{MAX_PIXELS:,}-pixel limit") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{path}: image has no pixels")
    return resize_image(array, max_size) if max_size else array


def from_pil(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as :func:`load_image` reads one from a file: RGB float32 [H, W, 3] in
    [0, 1], EXIF orientation applied, alpha and palettes composited over white, 16-bit scaled."""
    return _to_rgb_array(ImageOps.exif_transpose(img))


_KINDS = "a float array in [0, 1], a uint8 or uint16 array, a PIL image or a path"
_MASK_KINDS = "a float array in [0, 1], a bool, uint8 or uint16 array, a PIL image or a path"
_SHAPES = "[H, W], [H, W, 1], [H, W, 2] (grey, alpha), [H, W, 3] or [H, W, 4] (RGBA)"


def as_image(value, what: str, *, mask: bool = False) -> np.ndarray:
    """An image as a Python caller passes it, as :func:`load_image` gives a file: RGB float32 [H, W, 3].

    value: a path or URL (``str``, ``os.PathLike``: :func:`load_image`); a PIL image
      (:func:`from_pil`); or an array (NumPy, JAX, anything ``np.asarray`` takes) [H, W],
      [H, W, 1], [H, W, 2] (grey, alpha), [H, W, 3] or [H, W, 4] (RGBA): uint8 as Pillow reads an
      8-bit file of those pixels (bit for bit what a PNG of them loads as), uint16 / 65535, floats
      as they are (their range is the engine's to check); alpha composited over white.
    mask: a mask instead: ``bool`` arrays too (True: 1), and a grey one stays [H, W].
    what: the argument ("the content image"), named with the kinds taken in the ValueError for others.
    """
    if isinstance(value, (str, os.PathLike)):
        return load_image(value)
    if isinstance(value, Image.Image):
        return from_pil(value)
    a = _checked_array(value, what, mask)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype == np.uint8 and not (mask and a.ndim == 2):  # Pillow's path, alpha and all
        return _to_rgb_array(Image.fromarray(np.ascontiguousarray(a)))
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float64) / 65535.0 if a.dtype == np.uint16 else a.astype(np.float64)
    if a.ndim == 2:
        return a.astype(np.float32) if mask else np.repeat(a[..., None], 3, axis=-1).astype(np.float32)
    if a.shape[-1] in (2, 4):  # alpha: composite over white, as the loader does
        a = a[..., :-1] * a[..., -1:] + (1.0 - a[..., -1:])
    return (np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a).astype(np.float32)


def check_image_kind(value, what: str, *, mask: bool = False) -> None:
    """ValueError unless :func:`as_image` takes ``value``, found without decoding it: a path to an
    image (only its header read), a PIL image, or an array of a taken dtype and shape."""
    if isinstance(value, (str, os.PathLike)):
        image_size(value)
    elif not isinstance(value, Image.Image):
        _checked_array(value, what, mask)


def _checked_array(value, what: str, mask: bool) -> np.ndarray:
    """``value`` as a NumPy array of a taken dtype (a mask's bools as float) and shape; ValueError if not."""
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - what NumPy cannot take is no image
        a = np.asarray(None)
    if mask and a.dtype == bool:
        a = a.astype(np.float32)
    if not ("float" in a.dtype.name or a.dtype in (np.uint8, np.uint16)):  # "float": bfloat16, float8 too
        got = type(value).__name__
        if a.dtype != object and a.ndim > 0:
            got = f"an array of {a.dtype}, shape {a.shape}" if hasattr(value, "dtype") else f"a {got} of {a.dtype}"
        raise ValueError(f"expected {what} as {_MASK_KINDS if mask else _KINDS}; got {got}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4)):
        raise ValueError(f"expected {what} as {_SHAPES} pixels, got shape {a.shape}")
    return a


def _read_tiff(source: Path | io.BytesIO, path: Location) -> np.ndarray | None:
    """RGB float32 [H, W, 3] in [0, 1] from a TIFF via tifffile; None to let Pillow try."""
    import tifffile

    try:
        with tifffile.TiffFile(source) as tif:
            page = tif.pages[0]
            shape = page.shape
            if page.imagewidth * page.imagelength > MAX_PIXELS:
                raise ImageError(f"{path}: refused before decoding: its header claims more than the "
                                 f"{MAX_PIXELS:,}-pixel limit")
            if page.photometric not in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.MINISBLACK) or len(
                    shape) not in (2, 3) or page.planarconfig != tifffile.PLANARCONFIG.CONTIG:
                return None
            array = page.asarray()
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 - anything tifffile cannot read is Pillow's to judge
        return None
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / np.iinfo(array.dtype).max
    array = np.clip(np.nan_to_num(np.asarray(array, np.float64)), 0.0, 1.0)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] in (2, 4):  # alpha: composite over white, like Pillow's path
        alpha = array[..., -1:]
        array = array[..., :-1] * alpha + (1.0 - alpha)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[-1] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        return None
    return array.astype(np.float32)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) as displayed (EXIF orientation applied), read from the header only."""
    path = storage.location(path)
    if isinstance(path, Url):
        head = storage.read_bytes(path, limit=_HEADER_BYTES)
        try:
            return _image_size(io.BytesIO(head), path)
        except ImageError:
            if len(head) < _HEADER_BYTES:
                raise
            return _image_size(io.BytesIO(storage.read_bytes(path)), path)  # a header longer than we read
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, expected an image file")
    return _image_size(path, path)


def _image_size(source: Path | io.BytesIO, path: Location) -> tuple[int, int]:
    try:
        with Image.open(source) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: {w}x{h} px is larger than the {MAX_PIXELS:,}-pixel limit")
            if img.getexif().get(0x0112) in _ROTATED_ORIENTATIONS:
                w, h = h, w
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: refused before decoding: its header claims more than the "
                         f"{MAX_PIXELS:,}-pixel limit") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from None
    return h, w


def fitted_shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the longer side ``max_size`` and the aspect ratio kept."""
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, max_size: int) -> np.ndarray:
    """Resize float [H, W, 3] so the longer side is ``max_size``, keeping the aspect ratio."""
    return resize_to(image, *fitted_shape(*image.shape[:2], max_size))


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float [H, W, 3] to [height, width, 3] (Lanczos, per channel, in float)."""
    if image.shape[:2] == (height, width):
        return image
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F")
                           .resize((width, height), Image.LANCZOS)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_mask_to(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a mask float [H, W] or [H, W, 3] to ``height`` x ``width`` with a filter that cannot
    overshoot (bilinear, widened when shrinking: a triangle filter, every weight >= 0), so a hard
    edge between two grey levels only gets values between them. Lanczos rings there, and with three
    or more styles the ringing lands on the grey of another style (:mod:`jaxstyle.objective.masks`)."""
    if mask.shape[:2] == (height, width):
        return mask
    planes = mask[..., None] if mask.ndim == 2 else mask
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], np.float32), mode="F")
                           .resize((width, height), Image.BILINEAR)) for c in range(planes.shape[-1])]
    out = np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)
    return out[..., 0] if mask.ndim == 2 else out


def check_output_path(path: str | os.PathLike) -> str:
    """The Pillow format for an output path; ImageError if the extension or folder is unusable."""
    path = storage.location(path)
    fmt = output_format(path)
    storage.check_writable_folder(path.parent, str(path))
    if isinstance(path, Path) and path.is_dir():
        raise ImageError(f"{path}: is a directory")
    return fmt


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format for an output name, by extension; ImageError if there is none."""
    path = storage.location(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output extension {path.suffix or '(none)'!r}, "
                         f"expected one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike, image) -> None:
    """Write an image as PNG/JPEG (8-bit) or TIFF (16-bit), by extension, atomically (a URL: one
    upload of the whole file). image: float [H, W, 3] in [0, 1] (clipped), or any other kind
    :func:`as_image` takes but a path (a uint8 or uint16 array, grey or with alpha, a PIL image)."""
    if isinstance(image, str | os.PathLike):
        raise ValueError(f"{path}: expected the image to save as an array or a PIL image, got the path {image!r}")
    path = storage.location(path)
    fmt = output_format(path) if isinstance(path, Url) else check_output_path(path)
    array = None if isinstance(image, Image.Image) else np.asarray(image)
    if array is None or not np.issubdtype(array.dtype, np.floating) or array.ndim != 3 or array.shape[-1] != 3:
        array = as_image(image, "image to save")
    image = array
    if fmt == "TIFF":
        import tifffile

        data = (np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, data, photometric="rgb", compression="zlib")
        storage.atomic_write(path, lambda f: f.write(buffer.getvalue()))
        return
    pil = Image.fromarray(to_uint8(image), mode="RGB")
    options = {"quality": 95} if fmt == "JPEG" else {}
    storage.atomic_write(path, lambda f: pil.save(f, format=fmt, **options))
