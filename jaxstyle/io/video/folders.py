"""Frame folders: a folder of images, one frame each, in natural sort order; and the PNG frames a
job writes one at a time (atomically, so that an interrupted job can resume where it stopped)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxstyle.io import images, storage
from jaxstyle.io.storage import Location
from jaxstyle.io.video.container import local_path
from jaxstyle.io.video.shapes import fit

FRAME_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
FRAME_PNG = "frame_{index:05d}.png"


def _natural_key(name: str) -> tuple:
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder in natural sort order; ValueError if it holds none."""
    folder = local_path(folder, "frame folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise ValueError(f"{folder}: the folder holds no frames ({', '.join(sorted(FRAME_SUFFIXES))} images)")
    return sorted(files, key=lambda p: _natural_key(p.name))


def pil_mode(path: Path) -> tuple[str, bool]:
    """(Pillow mode, has alpha) of an image file, from its header."""
    try:
        with Image.open(path) as img:
            alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            return img.mode, alpha
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    except OSError as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None


def check_same_size(files: list[Path]) -> tuple[int, int]:
    """(h, w) of the frames as displayed; ValueError naming the first frame of another size."""
    first = images.image_size(files[0])
    for file in files[1:]:
        shape = images.image_size(file)
        if shape != first:
            raise ValueError(f"{file}: frame is {shape[1]}x{shape[0]} px, but {files[0].name} is "
                             f"{first[1]}x{first[0]} px; the frames of a folder must all have one size")
    return first


def load_frame_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as a video frame: RGB float32 [H, W, 3] in [0, 1], EXIF orientation applied,
    alpha composited over *black* (other modes as :func:`jaxstyle.io.images.load_image`)."""
    path = local_path(path, "frame")
    _, alpha = pil_mode(path)
    if not alpha:
        return images.load_image(path)
    try:
        with Image.open(path) as img:
            img.load()
            rgba = np.asarray(ImageOps.exif_transpose(img).convert("RGBA"), dtype=np.float32) / 255.0
    except OSError as exc:
        raise ValueError(f"{path}: corrupt or truncated image ({exc})") from None
    return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:])


def read_folder(files: list[Path], size: int | None, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` for the files ``[start, stop)``, fitted to ``size`` (:func:`fit`)."""
    for index in range(start, stop):
        yield index, fit(load_frame_image(files[index]), size)


def frame_png_path(folder: str | os.PathLike, index: int) -> Location:
    """``folder/frame_{index:05d}.png`` (the folder may be a URL)."""
    return storage.join(storage.location(folder), FRAME_PNG.format(index=index))


def write_frame_png(folder: str | os.PathLike, index: int, image: np.ndarray) -> Location:
    """Write frame ``index`` (float [H, W, 3] in [0, 1]) as ``folder/frame_{index:05d}.png``, 8-bit,
    atomically (a temporary file renamed over it; a URL: one upload); the folder is created if it is
    missing. Returns the file's location."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"expected a frame index >= 0, got {index!r}")
    folder = storage.location(folder)
    storage.make_folder(folder)
    target = frame_png_path(folder, index)
    images.save_image(target, image)
    return target


def read_frame_png(folder: str | os.PathLike, index: int) -> np.ndarray:
    """Frame ``index`` written by :func:`write_frame_png`, as RGB float32 [H, W, 3] in [0, 1]."""
    return images.load_image(frame_png_path(folder, index))
