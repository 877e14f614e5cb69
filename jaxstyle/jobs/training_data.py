"""The content images of a training run: where they are (:func:`content_sources`) and the batches made
of them (:class:`TrainingData`), decoded and augmented on host threads ahead of the device.

Sources: a folder (every image under it, sub-folders included, sorted; names starting with ``.``
left out), a manifest (``.txt``: one path per line, blank lines and ``#`` comments skipped; ``.csv``
or ``.jsonl``: a ``content`` or ``path`` column, so a ``batch`` manifest serves too), or one image.
Relative entries resolve against the manifest's folder. Any of them may be a URL (``s3://``,
``gs://``, ``memory://``; :mod:`jaxstyle.io.storage`).

Batches are a pure function of (seed, step), so a run resumed at step k sees the batches an
uninterrupted run saw: the sample order is a sequence of epochs, each a permutation of the sources
drawn from (seed, epoch); global batch ``step`` is positions [step * batch, (step + 1) * batch) of it.
Each image is augmented as Johnson et al. (2016) train on random crops: a square crop of 50-100% of
the shorter side at a random place, a horizontal flip half the time, resized to ``size`` x ``size``
(Lanczos), drawn from (seed, step, slot). An unreadable image (corrupt, not an image, missing,
empty, under ``MIN_SIDE`` px) is skipped and counted: its slot takes the next position's image
instead, the same one every time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxstyle.io import storage
from jaxstyle.io.images import IMAGE_SUFFIXES, MAX_PIXELS, TIFF_SUFFIXES, ImageError, from_pil, load_image, resize_to
from jaxstyle.io.storage import Location, Url

MANIFEST_SUFFIXES = (".txt", ".csv", ".jsonl")
PATH_COLUMNS = ("content", "path")  # a manifest's column of content images, first found
MIN_SIDE = 16  # px: a smaller image is skipped (a thumbnail or an icon, no photograph)
CROP_RANGE = (0.5, 1.0)  # the crop's side, as a fraction of the image's shorter side
_ORDER, _AUGMENT = 0, 1  # the two random streams drawn from one seed
_EPOCHS_KEPT = 4  # epoch permutations cached


def content_sources(spec: str | os.PathLike | Url) -> list[Location]:
    """The content images ``spec`` names: a folder, a manifest (.txt, .csv, .jsonl) or one image.
    ValueError (one line, naming ``spec``) when it is missing or names no images."""
    where = storage.location(spec)
    if storage.is_folder(where):
        found = _images_under(where)
        if not found:
            raise ValueError(f"{where}: no images (expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if not storage.exists(where):
        raise ValueError(f"{where}: no such file or folder")
    suffix = where.suffix.lower()
    if suffix in MANIFEST_SUFFIXES:
        found = _manifest_entries(where)
        if not found:
            raise ValueError(f"{where}: the manifest lists no images")
        return found
    if suffix in IMAGE_SUFFIXES:
        return [where]
    raise ValueError(f"{where}: expected a folder, a manifest ({', '.join(MANIFEST_SUFFIXES)}) or an image, "
                     f"got a {suffix or 'extensionless'} file")


def _images_under(folder: Location) -> list[Location]:
    if isinstance(folder, Url):
        files = storage.list_files(folder, recursive=True)
    else:
        files, seen = [], set()
        for root, dirs, names in os.walk(folder, followlinks=True):
            real = os.path.realpath(root)
            dirs[:] = [] if real in seen else [d for d in dirs if not d.startswith(".")]  # a link back up: once
            seen.add(real)
            files += [Path(root, name) for name in names]
    return sorted(f for f in files if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))


def _manifest_entries(manifest: Location) -> list[Location]:
    try:
        data = storage.read_bytes(manifest)
    except OSError as exc:
        raise ValueError(f"{manifest}: cannot read the manifest ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{manifest}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the manifest "
                         f"as UTF-8") from None
    suffix = manifest.suffix.lower()
    if suffix == ".txt":
        lines = (line.strip() for line in re.split(r"\r\n|\r|\n", text))
        entries = [line for line in lines if line and not line.startswith("#")]
    elif suffix == ".csv":
        entries = _csv_entries(text, manifest)
    else:
        entries = _jsonl_entries(text, manifest)
    return [storage.join(manifest.parent, entry) for entry in entries]


def _csv_entries(text: str, manifest: Location) -> list[str]:
    """The path column of a CSV manifest (``,``, ``;`` or tab between cells: the header shows which)."""
    try:
        for delimiter in (",", ";", "\t"):
            rows = [(reader_line, cells) for reader_line, cells in _csv_rows(text, delimiter)]
            header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
            column = next((name for name in PATH_COLUMNS if name in header), None)
            if column:
                break
        else:
            raise ValueError(f"{manifest}: expected a header row with a {' or '.join(PATH_COLUMNS)} column, "
                             f"got {header}")
    except csv.Error as exc:
        raise ValueError(f"{manifest}: not CSV ({exc})") from None
    index, entries = header.index(column), []
    for line, cells in rows[1:]:
        cell = cells[index].strip() if index < len(cells) else ""
        if not cell:
            raise ValueError(f"{manifest}:{line}: expected a path in the {column} column")
        entries.append(cell)
    return entries


def _csv_rows(text: str, delimiter: str):
    """(first line, cells) of each row with a non-empty cell."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    end = 0
    for cells in reader:
        start, end = end + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _jsonl_entries(text: str, manifest: Location) -> list[str]:
    entries = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest}:{number}: not JSON ({exc.msg})") from None
        value = next((row[name] for name in PATH_COLUMNS if name in row), None) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{manifest}:{number}: expected an object with a {' or '.join(PATH_COLUMNS)} path, "
                             f"got {line.strip()[:80]}")
        entries.append(value.strip())
    return entries


def decode_content(where: Location, size: int) -> np.ndarray:
    """A content image as RGB float32 [H, W, 3] in [0, 1], decoded no larger than needed: a shorter
    side above ``2 * size`` is reduced toward it (JPEG's draft mode, then a box filter), never below it.
    ImageError (one line, naming the file) for anything unusable, ``MIN_SIDE`` included."""
    if where.suffix.lower() in TIFF_SUFFIXES:  # tifffile reads the 16-bit RGB TIFF that Pillow cannot
        image = load_image(where)
    else:
        try:
            data = storage.read_bytes(where)
        except storage.StorageError as exc:
            raise ImageError(str(exc)) from None
        except FileNotFoundError:
            raise ImageError(f"{where}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{where}: cannot read ({exc.strerror or exc})") from None
        if not data:
            raise ImageError(f"{where}: empty file (0 bytes)")
        image = _decode(data, where, 2 * size)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{where}: {w}x{h} px, expected at least {MIN_SIDE} px on each side")
    return image


def _decode(data: bytes, where: Location, shorter: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{where}: {w}x{h} px is larger than the {MAX_PIXELS:,}-pixel limit")
                scale = shorter / min(w, h)
                if scale < 1:  # JPEG decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for
                    img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
                img.load()
                factor = min(img.size) // shorter
                if factor >= 2 and img.mode in ("L", "RGB"):
                    img = img.reduce(factor)  # keeps the EXIF orientation for from_pil
                return from_pil(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not an image Pillow can read") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes a decoder raise
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ImageError(f"{where}: corrupt or truncated image ({type(exc).__name__}: {detail})") from None


def _integer(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def augment(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of ``CROP_RANGE`` of the shorter side, flipped left-right half the time,
    resized to float32 [size, size, 3] in [0, 1]. image: float32 [H, W, 3] in [0, 1]."""
    h, w = image.shape[:2]
    side = max(1, round(rng.uniform(*CROP_RANGE) * min(h, w)))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = image[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize_to(np.ascontiguousarray(crop), size, size)


class TrainingData:
    """Batches of augmented content images, deterministic in (seed, step); see the module's docstring.

    ``get(step)`` -> (float32 [batch / process_count, size, size, 3] in [0, 1], the images' names):
    this process's rows [process_index * B / P, (process_index + 1) * B / P) of the global batch.
    Each call starts decoding the next ``prefetch`` steps on ``threads`` host threads. ``skipped``:
    (name, reason) of each unreadable image met so far. ``close()`` (or ``with``) stops the threads.
    """

    def __init__(self, sources, size: int, batch: int, seed: int = 0, threads: int = 4, prefetch: int = 2,
                 process_index: int = 0, process_count: int = 1):
        self.sources = [storage.location(source) for source in sources]
        if not self.sources:
            raise ValueError("expected at least one content image, got none")
        for name, value, least in (("size", size, 1), ("batch", batch, 1), ("threads", threads, 1),
                                   ("prefetch", prefetch, 0), ("process count", process_count, 1)):
            if not _integer(value) or value < least:
                raise ValueError(f"expected {name} >= {least}, got {value!r}")
        if not _integer(seed):
            raise ValueError(f"expected an integer seed, got {seed!r}")
        if batch % process_count:
            raise ValueError(f"expected a batch divisible by the {process_count} processes, got {batch}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"expected 0 <= process index < {process_count}, got {process_index}")
        self.size, self.batch, self.prefetch = int(size), int(batch), int(prefetch)
        self.seed = int(seed) % 2**64  # SeedSequence takes no negative numbers
        share = int(batch) // int(process_count)
        self.slots = range(int(process_index) * share, (int(process_index) + 1) * share)
        self._lock = threading.Lock()
        self._bad: dict[int, str] = {}  # source index -> why it is unreadable
        self._orders: dict[int, np.ndarray] = {}
        self._pending: dict[int, list[Future]] = {}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="jaxstyle-data")

    def get(self, step: int) -> tuple[np.ndarray, list[str]]:
        if not _integer(step) or step < 0:
            raise ValueError(f"expected a step >= 0, got {step!r}")
        window = range(int(step), int(step) + self.prefetch + 1)
        for old in [s for s in self._pending if s not in window]:
            for future in self._pending.pop(old):
                future.cancel()
        for ahead in window:
            if ahead not in self._pending:
                self._pending[ahead] = [self._pool.submit(self._sample, ahead, slot) for slot in self.slots]
        samples = [future.result() for future in self._pending.pop(int(step))]
        return np.stack([image for image, _ in samples]), [name for _, name in samples]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(name, one-line reason) of each unreadable image met so far, each once, sorted by name."""
        with self._lock:
            found = {str(self.sources[index]): reason for index, reason in self._bad.items()}
        return sorted(found.items())

    def epoch(self, step: int) -> float:
        """The epochs completed before global batch ``step`` (fractional)."""
        return step * self.batch / len(self.sources)

    def close(self) -> None:
        for futures in self._pending.values():
            for future in futures:
                future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TrainingData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sample(self, step: int, slot: int) -> tuple[np.ndarray, str]:
        """The image of global batch ``step``'s row ``slot``: the first readable one from its position on."""
        position = step * self.batch + slot
        while True:
            index = self._source_at(position)
            with self._lock:
                known_bad = index in self._bad
                self._check_some_readable()
            if not known_bad:
                try:
                    image = decode_content(self.sources[index], self.size)
                    break
                except ImageError as exc:
                    self._mark_bad(index, str(exc))
            position += 1
        rng = np.random.default_rng([self.seed, _AUGMENT, step, slot])
        return augment(image, self.size, rng), str(self.sources[index])

    def _source_at(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.sources))
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                order = np.random.default_rng([self.seed, _ORDER, epoch]).permutation(len(self.sources))
                self._orders[epoch] = order
                if len(self._orders) > _EPOCHS_KEPT:
                    del self._orders[next(iter(self._orders))]  # the first computed
        return int(order[offset])

    def _mark_bad(self, index: int, message: str) -> None:
        name = str(self.sources[index])
        reason = message.removeprefix(f"{name}: ")
        with self._lock:
            self._bad.setdefault(index, reason)
            self._check_some_readable()

    def _check_some_readable(self) -> None:
        if len(self._bad) == len(self.sources):
            index, reason = next(iter(self._bad.items()))
            raise ValueError(f"all {len(self.sources)} content images are unreadable (e.g. {self.sources[index]}: "
                             f"{reason})")
