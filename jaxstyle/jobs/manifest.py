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
``http(s)://`` for reading, ``memory://``; :mod:`jaxstyle.io.storage`). Relative entries resolve
against the manifest's own folder or URL; an entry that is itself a URL stands for itself.

CSV is read as spreadsheets (Excel, LibreOffice, Google Sheets, Numbers) save it, since that is where
manifests are often written: UTF-8 with or without a byte-order mark, UTF-16 with one, any line ends,
``,``, ``;`` or tab between cells (the header row shows which), header names in any case, blank rows
skipped, and a decimal comma in ``;``-separated files. Numbers must be finite: a NaN weight or seed
would silently spoil a result, so it is refused with the file, line and column like every other error.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import math
import re
from pathlib import Path, PureWindowsPath

from jaxstyle.config import SEED_RANGE, normalized_blend
from jaxstyle.io import storage
from jaxstyle.io.images import IMAGE_SUFFIXES
from jaxstyle.io.storage import Location, Url


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


# Byte-order marks, longest first: UTF-32's little-endian mark starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_DELIMITERS = (",", ";", "\t")  # the header row shows which one a file uses
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")  # "0,5" in a ;-separated file (a European-locale spreadsheet)


def _line_of(before: str) -> int:
    """The number of the line that follows the text ``before``, counting LF, CRLF and CR line ends."""
    return len(re.findall(r"\r\n|\r|\n", before)) + 1


def _decode(data: bytes, path: Location) -> str:
    """The manifest's text. UTF-8, with or without the byte-order mark spreadsheets put first, or UTF-16/32 with
    a mark (Excel's "Unicode text"). Anything else (cp1252, Mac Roman, UTF-16 without a mark) is refused naming the
    line rather than guessed at: a wrong guess would turn a path into a different, missing file."""
    codec = next((codec for bom, codec in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = _line_of(data[:exc.start].decode(codec, "replace"))
        raise ValueError(f"{path}:{line}: not {codec.removesuffix('-sig').upper()} text (byte "
                         f"0x{data[exc.start]:02x}); save the manifest as UTF-8 (in Excel: CSV UTF-8)") from None
    if "\0" in text:
        line = _line_of(text[:text.index("\0")])
        raise ValueError(f"{path}:{line}: NUL characters (UTF-16 without a byte-order mark, or not text); "
                         f"save the manifest as UTF-8 (in Excel: CSV UTF-8)")
    return text


def _column(name: str) -> str:
    """A header cell as a column name: spreadsheets' " Content Weight " is ``content_weight``."""
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _csv_cells(text: str, delimiter: str):
    """(first line, cells stripped) of each row that has a non-empty cell: spreadsheets add blank lines and
    rows of bare separators (``;;;``). Quoted fields may hold separators and line breaks; lines may end in
    LF, CRLF or CR (old Mac Excel)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    end = 0
    for cells in reader:
        start, end = end + 1, reader.line_num
        cells = [cell.strip() for cell in cells]
        if any(cells):
            yield start, cells


def _csv_rows(text: str, path: Location) -> tuple[list[tuple[int, dict]], bool]:
    """(line, row) of a CSV manifest, and whether its number cells use a decimal comma (``;``-separated files
    only: there a comma cannot separate cells, and it is what the locales that pick ``;`` write)."""
    text = re.sub(r"\Asep=.[ \t]*(?=\r|\n|\Z)", "", text)  # Excel's "sep=;" first line; the header decides
    try:
        for delimiter in _DELIMITERS:
            first = next(_csv_cells(text, delimiter), (1, []))
            if {"content", "style"} <= {_column(cell) for cell in first[1]}:
                break
        else:
            got = next(_csv_cells(text, ","), (1, []))[1]
            raise ValueError(f"{path}: expected a header row with columns content,style (separated by , ; or tab); "
                             f"got {got}")
        cells = _csv_cells(text, delimiter)
        header_line, header = next(cells)
        names = [_column(cell) for cell in header]
        twice = sorted({name for name in names if name and names.count(name) > 1})
        if twice:
            raise ValueError(f"{path}:{header_line}: column {', '.join(twice)} appears more than once in the header")
        rows = []
        for line, row in cells:
            extra = [cell for cell in row[len(names):] if cell]
            if extra:
                raise ValueError(f"{path}:{line}: {len(names) + len(extra)} cells but {len(names)} columns in the "
                                 f"header (an unquoted {delimiter!r} in a cell?): {extra}")
            rows.append((line, {name: cell for name, cell in zip(names, row) if name}))
    except csv.Error as exc:
        raise ValueError(f"{path}: not CSV ({exc})") from None
    return rows, delimiter == ";"


def _jsonl_rows(text: str, path: Location) -> list[tuple[int, dict]]:
    """(line, object) of a JSONL manifest; blank lines skipped, LF, CRLF or CR line ends (not splitlines:
    a JSON string may hold U+2028 and the like)."""
    rows = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)  # NaN and Infinity parse (Python's json allows them); the columns refuse them
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def _text(row: dict, key: str, where: str) -> str | None:
    """A path cell, stripped; None when absent or empty. JSON numbers, NaN included, are not paths."""
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: expected {key} to be a path (text), got {value!r}")
    return value.strip() if value and value.strip() else None


def _finite(value, key: str, where: str, decimal_comma: bool) -> int | float | None:
    """A number cell as an int or float: None when absent or empty (the default applies); ValueError for
    anything else that is not a finite number: NaN, inf, bools, text that is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = None
    if isinstance(value, str):
        text = value.strip()
        if decimal_comma and _DECIMAL_COMMA.fullmatch(text):
            text = text.replace(",", ".")
        for kind in (int, float):  # int first: a long seed keeps every digit
            try:
                number = kind(text)
                break
            except ValueError:
                pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    if number is None:
        comma = isinstance(value, str) and "," in value
        hint = " (a decimal comma is read only in ;-separated manifests)" if comma else ""
        raise ValueError(f"{where}: {key} {value!r} is not a{'n integer' if key == 'seed' else ' number'}{hint}")
    try:
        finite = math.isfinite(number)
    except OverflowError:  # an int beyond float's range: the seed's range check refuses it, a weight is refused here
        finite = key == "seed"
    if not finite:
        raise ValueError(f"{where}: {key} {value!r} is not a finite number")
    return number


def _weight(row: dict, key: str, where: str, decimal_comma: bool) -> float | None:
    number = _finite(row.get(key), key, where, decimal_comma)
    if number is not None and number < 0:
        raise ValueError(f"{where}: expected {key} >= 0, got {row[key]!r}")
    return None if number is None else float(number)


def _seed(row: dict, where: str, decimal_comma: bool) -> int | None:
    """An integer seed; "5.0" is 5, "1.5" is refused rather than rounded; beyond int64 jax cannot take it."""
    number = _finite(row.get("seed"), "seed", where, decimal_comma)
    if number is None:
        return None
    if number != int(number):
        raise ValueError(f"{where}: seed {row['seed']!r} is not an integer")
    if not SEED_RANGE[0] <= int(number) < SEED_RANGE[1]:
        raise ValueError(f"{where}: expected seed in [-2**63, 2**63), got {row['seed']!r}")
    return int(number)


def _blend(row: dict, styles: int, where: str, decimal_comma: bool) -> tuple[float, ...] | None:
    """``style_blend``: a JSON list, or text split on ``|`` (and ``,``, except where ``,`` is a decimal comma)."""
    value = row.get("style_blend")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, list):
        parts = value
    elif isinstance(value, str):
        parts = (value if decimal_comma else value.replace(",", "|")).split("|")
    else:
        parts = [value]
    if len(parts) != styles:
        raise ValueError(f"{where}: expected {styles} style_blend weights (one per style image), got {len(parts)}")
    numbers = [_finite(part, "style_blend", where, decimal_comma) for part in parts]
    if None in numbers:
        raise ValueError(f"{where}: style_blend {value!r} has an empty weight")
    try:
        return normalized_blend(numbers)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _masks(row: dict, styles: int, base: Location, where: str) -> tuple[Location | None, ...]:
    """``style_masks``: one per style image, ``|``-separated text or a JSON list; an empty entry for none."""
    value = row.get("style_masks")
    if not value:
        return ()
    parts = value if isinstance(value, list) else [value] if not isinstance(value, str) else value.split("|")
    if any(part is not None and not isinstance(part, str) for part in parts):
        raise ValueError(f"{where}: expected style_masks to be paths (text), got {value!r}")
    masks = tuple(storage.join(base, part.strip()) if part and part.strip() else None for part in parts)
    if len(masks) != styles:
        raise ValueError(f"{where}: expected {styles} style_masks (one per style image), got {len(masks)}")
    return masks


def read_manifest(path: str | Path | Url, out_dir: str | Path | Url) -> list[Pair]:
    """Pairs from a ``.csv`` (header row) or ``.jsonl`` (one object per line) manifest.

    CSV as spreadsheets save it: a byte-order mark, CRLF or CR line ends, ``,``, ``;`` or tab between cells
    (whichever makes the header name content and style), Excel's ``sep=`` line, header names in any case and
    spacing, blank rows skipped, cells stripped, and in ``;`` files a decimal comma. Every error is a one-line
    ValueError naming the file and line (and the column)."""
    path, out_dir = storage.location(path), storage.location(out_dir)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: expected a .csv or .jsonl manifest")
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such manifest") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, expected a manifest file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read manifest ({exc})") from None
    text = _decode(data, path)
    if path.suffix.lower() == ".jsonl":
        rows, decimal_comma = _jsonl_rows(text, path), False
    else:
        rows, decimal_comma = _csv_rows(text, path)
    base = path.parent
    pairs = []
    for number, row in rows:
        where = f"{path}:{number}"
        content, style = _text(row, "content", where), _text(row, "style", where)
        styles = [storage.join(base, part.strip()) for part in (style or "").split("|") if part.strip()]
        if content is None or not styles:
            raise ValueError(f"{where}: expected both content and style")
        content = storage.join(base, content)
        error = None
        if entry := _text(row, "output", where):
            try:
                output = confined_output(out_dir, entry)
            except ValueError as exc:
                output, error = storage.join(out_dir, entry), f"{where}: {exc}"
        else:
            output = _default_output(out_dir, content, *styles)
        mask = _text(row, "content_mask", where)
        content_mask = storage.join(base, mask) if mask else None
        if content_mask is not None and len(styles) < 2:
            raise ValueError(f"{where}: a content_mask splits the image between styles: give at least two (a|b)")
        pairs.append(Pair(content, styles[0], output, _weight(row, "content_weight", where, decimal_comma),
                          _weight(row, "style_weight", where, decimal_comma), _seed(row, where, decimal_comma),
                          tuple(styles[1:]), _blend(row, len(styles), where, decimal_comma), content_mask,
                          _masks(row, len(styles), base, where), error))
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
