"""The list of (content, style) pairs of a batch run: a CSV/JSONL manifest or two folders.

Manifest columns: ``content``, ``style`` (paths relative to the manifest), and optionally
``output`` (relative to the output folder), ``content_weight``, ``style_weight``, ``seed``,
``style_blend``, ``content_mask``, ``style_masks``. ``style`` may name several images
separated by ``|`` (``a.jpg|b.jpg``); their Gram targets are blended with ``style_blend``
(``0.7|0.3``, or a JSON list; normalised; default equal), or, with a ``content_mask`` (a grey
image: white takes the first style, black the last), each region takes its own style.
``style_masks`` (``m1.png|m2.png``, an empty entry for none) picks the part of each style image
that counts. Without ``output`` a pair is written to
``OUT_DIR/<content stem>__<style stem>[+<style stem>...].png`` (stems with characters other
than letters, digits, ``.``, ``-``, ``+`` and ``_`` have them replaced by ``_``).

Outputs stay inside the output folder: manifests are often written by someone else or sit in
a shared place, so an ``output`` entry that is absolute, has a drive or URL scheme, or resolves
(after ``..`` and symlinked folders) outside ``OUT_DIR`` makes that pair fail with the reason
(:attr:`Pair.error`); the other pairs run. Inputs may live anywhere the manifest names.

The manifest, the folders, the images and the output folder may be URLs (``s3://``, ``gs://``,
``http(s)://`` for reading, ``memory://``; :mod:`jaxstyle.storage`). Relative entries resolve
against the manifest's own folder or URL; an entry that is itself a URL stands for itself.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path, PureWindowsPath

from jaxstyle import storage
from jaxstyle.config import normalized_blend
from jaxstyle.image_io import IMAGE_SUFFIXES
from jaxstyle.storage import Location, Url


@dataclasses.dataclass(frozen=True)
class Pair:
    content: Location
    style: Location
    output: Location
    content_weight: float | None = None
    style_weight: float | None = None
    seed: int | None = None
    more_styles: tuple[Location, ...] = ()  # blended with ``style`` (see ``style_blend``)
    style_blend: tuple[float, ...] | None = None
    content_mask: Location | None = None
    style_masks: tuple[Location | None, ...] = ()
    error: str | None = None  # why this pair cannot run (e.g. an output outside the output folder)

    @property
    def styles(self) -> tuple[Location, ...]:
        return (self.style, *self.more_styles)

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # asdict would unpack a Url
        record = {k: (str(v) if isinstance(v, Path | Url) else v) for k, v in fields.items()}
        record["more_styles"] = [str(p) for p in self.more_styles]
        record["style_masks"] = [None if p is None else str(p) for p in self.style_masks]
        return record


def _safe_stem(path: Location) -> str:
    stem = re.sub(r"[^\w.+-]", "_", path.stem).lstrip(".")
    return stem or "image"


def _default_output(out_dir: Location, content: Location, *styles: Location) -> Location:
    return out_dir / f"{_safe_stem(content)}__{'+'.join(_safe_stem(s) for s in styles)}.png"


def check_inside(out_dir: Location, path: Location) -> None:
    """ValueError unless ``path`` resolves (``..`` and symlinks followed) to a file inside ``out_dir``."""
    if not storage.inside(out_dir, path):
        target = path.normalized() if isinstance(path, Url) else Path(path).resolve()
        raise ValueError(f"output {path} resolves to {target}, outside the output folder {out_dir}: refused")


def confined_output(out_dir: Location, entry: str) -> Location:
    """``out_dir / entry``, or ValueError when the manifest's ``output`` entry would put the file
    anywhere but inside ``out_dir``."""
    absolute = entry.startswith(("/", "\\", "~")) or Path(entry).is_absolute()
    if absolute or "://" in entry or PureWindowsPath(entry).drive:
        raise ValueError(f"output {entry!r} is absolute or names a drive or scheme: outputs are paths inside "
                         f"the output folder {out_dir}; refused")
    path = out_dir / entry
    check_inside(out_dir, path)
    return path


def _blend(row: dict, styles: int, where: str) -> tuple[float, ...] | None:
    value = row.get("style_blend")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value if isinstance(value, list) else str(value).replace(",", "|").split("|")
    if len(parts) != styles:
        raise ValueError(f"{where}: expected {styles} style_blend weights (one per style image), got {len(parts)}")
    try:
        return normalized_blend(parts)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _number(row: dict, key: str, where: str, kind=float):
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key} {value!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not (number >= 0 and number != float("inf")):
        raise ValueError(f"{where}: expected {key} >= 0, got {value!r}")
    return number


def read_manifest(path: str | Path | Url, out_dir: str | Path | Url) -> list[Pair]:
    """Pairs from a ``.csv`` (header row) or ``.jsonl`` (one object per line) manifest."""
    path, out_dir = storage.location(path), storage.location(out_dir)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: expected a .csv or .jsonl manifest")
    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such manifest") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, expected a manifest file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read manifest ({exc})") from None
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append((number, row))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"content", "style"} <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{path}: expected a header row with columns content,style; got {reader.fieldnames}")
        rows = [(n, {k.strip(): v for k, v in row.items() if k}) for n, row in enumerate(reader, start=2)]
    base = path.parent
    pairs = []
    for number, row in rows:
        where = f"{path}:{number}"
        if not row.get("content") or not row.get("style"):
            raise ValueError(f"{where}: expected both content and style")
        content = storage.join(base, str(row["content"]).strip())
        styles = [storage.join(base, part.strip()) for part in str(row["style"]).split("|") if part.strip()]
        if not styles:
            raise ValueError(f"{where}: expected both content and style")
        error = None
        if row.get("output"):
            entry = str(row["output"]).strip()
            try:
                output = confined_output(out_dir, entry)
            except ValueError as exc:
                output, error = storage.join(out_dir, entry), f"{where}: {exc}"
        else:
            output = _default_output(out_dir, content, *styles)
        content_mask = storage.join(base, str(row["content_mask"]).strip()) if row.get("content_mask") else None
        if content_mask is not None and len(styles) < 2:
            raise ValueError(f"{where}: a content_mask splits the image between styles: give at least two (a|b)")
        style_masks = ()
        if row.get("style_masks"):
            parts = row["style_masks"] if isinstance(row["style_masks"], list) else str(row["style_masks"]).split("|")
            style_masks = tuple(storage.join(base, str(m).strip()) if m and str(m).strip() else None for m in parts)
            if len(style_masks) != len(styles):
                raise ValueError(f"{where}: expected {len(styles)} style_masks (one per style image), "
                                 f"got {len(style_masks)}")
        pairs.append(Pair(content, styles[0], output, _number(row, "content_weight", where),
                          _number(row, "style_weight", where), _number(row, "seed", where, int),
                          tuple(styles[1:]), _blend(row, len(styles), where), content_mask, style_masks, error))
    return _check_unique(pairs, str(path))


def _images_in(folder: Location) -> list[Location]:
    if isinstance(folder, Path) and not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    return [p for p in storage.list_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def cross_product(contents: str | Path | Url, styles: str | Path | Url, out_dir: str | Path | Url) -> list[Pair]:
    """Every image in ``contents`` with every image in ``styles``."""
    out_dir = storage.location(out_dir)
    content_images, style_images = _images_in(storage.location(contents)), _images_in(storage.location(styles))
    for folder, found in ((contents, content_images), (styles, style_images)):
        if not found:
            raise ValueError(f"{folder}: no images (expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))})")
    pairs = [Pair(c, s, _default_output(out_dir, c, s)) for c in content_images for s in style_images]
    return _check_unique(pairs, f"{contents} x {styles}")


def _check_unique(pairs: list[Pair], where: str) -> list[Pair]:
    seen: dict[Location, Pair] = {}
    for pair in pairs:
        if pair.output in seen:
            raise ValueError(f"{where}: two pairs write {pair.output} "
                             f"({seen[pair.output].content.name}+{seen[pair.output].style.name} and "
                             f"{pair.content.name}+{pair.style.name}); give them distinct outputs")
        seen[pair.output] = pair
    return pairs


def process_share(pairs: list[Pair], process_index: int, process_count: int) -> list[Pair]:
    """This process's deterministic, disjoint share: every ``process_count``-th pair by output path."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"expected 0 <= process index < {process_count}, got {process_index}")
    return sorted(pairs, key=lambda p: str(p.output))[process_index::process_count]
