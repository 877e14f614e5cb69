"""What ``jaxstyle apply`` reads and writes: its inputs expanded to files, each with its output,
everything that can refuse the run checked before any image is stylized.

Inputs: image files; folders (every image directly inside, sorted by name; other files are
left, and counted); manifests (``.txt``: one path a line, blank lines and ``#`` comments
skipped; ``.csv`` / ``.jsonl``: a ``content`` column, and optionally ``output``, a path inside the
output folder, as ``batch`` reads them); each of them local or a URL (``s3://``, ``gs://``,
``memory://``...; :mod:`jaxstyle.io.storage`), entries relative to their manifest; and video files
(any container FFmpeg reads; local).

Output: for one image or video named on the command line, a file (its format by extension: an
image's .png .jpg .jpeg .tif .tiff, a video's .mp4 .mov .mkv) or a folder; for anything else a
folder, created, holding each output under its input's name (``photo.jpg`` -> ``OUT/photo.jpg``;
an image of a format that cannot be written becomes ``.png``, a video other than .mov/.mkv
``.mp4``). Two inputs of one name (compared ignoring case, as macOS and Windows do): the first in
input order keeps it, the next take ``NAME-2``, ``NAME-3``... (the first number no input's own
name uses), and the run says so.

Checked first, in this order: the inputs exist and are what they seem (an image named on the
command line: its header; a video: its container and first frame); no output is an input (never,
not even with ``overwrite``); no output exists, unless ``overwrite`` (replace) or
``skip_existing`` (leave it, resume a run); the output folder can be written. An image found in a
folder, manifest or bucket is not read here: if it is unreadable the run skips it and says so.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from pathlib import Path

from jaxstyle.io import images as image_io
from jaxstyle.io import storage
from jaxstyle.io import video as video_io
from jaxstyle.io.storage import Location, Url
from jaxstyle.jobs.manifest import confined_output

LISTS = (".txt", ".csv", ".jsonl")
VIDEO_OUTPUTS = tuple(video_io.VIDEO_FORMATS)  # .mp4 .mov .mkv
VIDEO_SUFFIXES = frozenset(".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .flv .wmv .3gp .ogv".split())


@dataclasses.dataclass(frozen=True)
class Item:
    """One input file and its output. kind: "image" or "video"; named: given on the command line
    (else found in a folder, manifest or bucket); entry: a manifest's ``output`` entry, if any."""

    source: Location
    kind: str
    named: bool = True
    output: Location | None = None
    entry: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """The checked run: ``items`` to stylize, ``existing`` (outputs kept under ``skip_existing``),
    ``folder`` (the output folder, None for one output file), ``notes`` (renamed outputs, files
    that are not images left in a folder)."""

    items: list[Item]
    existing: list[Item]
    folder: Location | None
    notes: list[str]


def plan_run(inputs: list[str], output: str, *, overwrite: bool = False, skip_existing: bool = False,
             protected: tuple[str, ...] = ()) -> Plan:
    """The :class:`Plan` of ``inputs`` into ``output`` (see the module docstring); a one-line
    ValueError naming the file for anything that refuses the run. ``protected``: other files no
    output may replace (the model)."""
    if overwrite and skip_existing:
        raise ValueError("give --overwrite or --skip-existing, not both")
    if not inputs:
        raise ValueError("expected at least one input, got none")
    notes: list[str] = []
    items, seen = [], set()
    for item in (item for text in inputs for item in _expand(storage.location(text), notes)):
        if (_key(item.source), item.entry) not in seen:  # an input named twice (alone and in its folder): once
            seen.add((_key(item.source), item.entry))
            items.append(item)
    folder, out = _output_place(output, items)
    items = _named(items, folder, notes) if folder is not None else [dataclasses.replace(items[0], output=out)]
    for item in items:
        if item.named and item.kind == "image":
            image_io.image_size(item.source)
        elif item.kind == "video":
            _check_video(item)
    sources = {_key(place): place for place in (*[item.source for item in items], *map(storage.location, protected))}
    for item in items:
        if _key(item.output) in sources:
            raise ValueError(f"{item.output}: the output would replace {sources[_key(item.output)]}; refused")
    existing = [item for item in items if storage.exists(item.output)]
    if existing and not (overwrite or skip_existing):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0].output}: already exists{more} (pass --overwrite to replace, or "
                         f"--skip-existing to keep what is there and do the rest)")
    if folder is None:
        storage.check_writable_folder(items[0].output.parent, str(items[0].output))
    elif isinstance(folder, Url):
        storage.check_writable_folder(folder, str(folder))
    if skip_existing:
        kept = {_key(item.output) for item in existing}
        items = [item for item in items if _key(item.output) not in kept]
    else:
        existing = []
    return Plan(items, existing, folder, notes)


def _key(where: Location) -> str:
    """A name two locations of one file share: the resolved path or normalised URL, in one case (a
    file system that ignores case sees one file where the names differ by case)."""
    return str(where.normalized() if isinstance(where, Url) else where.expanduser().resolve()).casefold()


def _check_video(item: Item) -> None:
    """The video's container and first frame; a local path for its output."""
    if isinstance(item.output, Url):
        raise ValueError(f"{item.output}: a video is written to a local path, not a URL")
    try:
        video_io.probe_header(item.source)
    except ValueError as exc:
        if item.source.suffix.lower() in VIDEO_SUFFIXES:
            raise
        detail = str(exc).partition(": ")[2]
        raise ValueError(f"{item.source}: expected an image ({', '.join(sorted(image_io.IMAGE_SUFFIXES))}), a "
                         f"folder, a manifest ({', '.join(LISTS)}) or a video ({detail})") from None


def _expand(where: Location, notes: list[str]) -> list[Item]:
    """The files an input stands for."""
    suffix = where.suffix.lower()
    if isinstance(where, Path):
        if not where.exists():
            raise ValueError(f"{where}: no such file or folder")
        if where.is_dir():
            return _folder(where, notes)
    elif suffix not in LISTS and suffix not in image_io.IMAGE_SUFFIXES and storage.is_folder(where):
        return _folder(where, notes)
    if suffix in LISTS:
        return _listed(where)
    if suffix in image_io.IMAGE_SUFFIXES:
        return [Item(where, "image")]
    if isinstance(where, Url):
        raise ValueError(f"{where}: expected an image ({', '.join(sorted(image_io.IMAGE_SUFFIXES))}), a folder or "
                         f"a manifest ({', '.join(LISTS)}); a video must be a local path")
    return [Item(where, "video")]


def _folder(folder: Location, notes: list[str]) -> list[Item]:
    files = [p for p in storage.list_files(folder) if not p.name.startswith(".")]
    found = [Item(p, "image", named=False) for p in files if p.suffix.lower() in image_io.IMAGE_SUFFIXES]
    if not found:
        raise ValueError(f"{folder}: no images (expected files ending in "
                         f"{', '.join(sorted(image_io.IMAGE_SUFFIXES))})")
    if len(found) < len(files):
        left = len(files) - len(found)
        notes.append(f"{folder}: {left} file{'s' if left > 1 else ''} that {'are' if left > 1 else 'is'} not an "
                     f"image left alone (name a video to apply the model to it)")
    return found


def _listed(manifest: Location) -> list[Item]:
    """The images a manifest lists (entries relative to its folder)."""
    try:
        data = storage.read_bytes(manifest)
    except FileNotFoundError:
        raise ValueError(f"{manifest}: no such manifest") from None
    except OSError as exc:
        raise ValueError(f"{manifest}: cannot read the manifest ({exc.strerror or exc})") from None
    text = _decoded(data, manifest)
    suffix = manifest.suffix.lower()
    rows = (_text_rows(text) if suffix == ".txt" else _jsonl_rows(text, manifest) if suffix == ".jsonl"
            else _csv_rows(text, manifest))
    if not rows:
        raise ValueError(f"{manifest}: lists no images")
    items = []
    for line, content, entry in rows:
        source = storage.join(manifest.parent, content)
        if source.suffix.lower() not in image_io.IMAGE_SUFFIXES:
            raise ValueError(f"{manifest}:{line}: expected an image ({', '.join(sorted(image_io.IMAGE_SUFFIXES))}), "
                             f"got {content!r}")
        items.append(Item(source, "image", named=False, entry=entry))
    return items


def _decoded(data: bytes, path: Location) -> str:
    """UTF-8 (a byte-order mark allowed) or UTF-16 with one, as spreadsheets save text."""
    codec = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not {codec.removesuffix('-sig').upper()} text (byte {exc.start}); save it as "
                         f"UTF-8") from None


def _text_rows(text: str) -> list[tuple[int, str, None]]:
    lines = re.split(r"\r\n|\r|\n", text)
    return [(n, line.strip(), None) for n, line in enumerate(lines, 1) if line.strip() and
            not line.lstrip().startswith("#")]


def _jsonl_rows(text: str, path: Location) -> list[tuple[int, str, str | None]]:
    rows = []
    for n, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        rows.append(_row(row, n, path))
    return rows


def _csv_rows(text: str, path: Location) -> list[tuple[int, str, str | None]]:
    """Rows of a CSV whose header names a ``content`` column (any case), separated by , ; or tab."""
    for delimiter in (",", ";", "\t"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
        header = [re.sub(r"[\s-]+", "_", cell.strip().lower()) for cell in next(reader, [])]
        if "content" in header:
            break
    else:
        raise ValueError(f"{path}: expected a header row with a column content, got {text.splitlines()[:1]}")
    rows = []
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append(_row(dict(zip(header, (c.strip() for c in cells))), reader.line_num, path))
    except csv.Error as exc:
        raise ValueError(f"{path}: not CSV ({exc})") from None
    return rows


def _row(row, line: int, path: Location) -> tuple[int, str, str | None]:
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
    content, entry = row.get("content"), row.get("output") or None
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"{path}:{line}: expected a content path, got {content!r}")
    if entry is not None and not isinstance(entry, str):
        raise ValueError(f"{path}:{line}: expected output to be a path (text), got {entry!r}")
    return line, content.strip(), entry.strip() if entry else None


def _output_place(output: str, items: list[Item]) -> tuple[Location | None, Location | None]:
    """(the output folder, None) or (None, the output file)."""
    out = storage.location(output)
    one = len(items) == 1 and items[0].named
    as_folder = output.endswith(("/", os.sep)) or storage.is_folder(out) or not out.suffix
    if as_folder:
        if isinstance(out, Path) and out.exists() and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a folder")
        return out, None
    if not one:
        raise ValueError(f"{out}: {len(items)} inputs need an output folder, got a file name (a folder is a name "
                         f"without an extension, or one ending in /)")
    if items[0].kind == "image":
        image_io.output_format(out)
    elif out.suffix.lower() not in VIDEO_OUTPUTS:
        raise ValueError(f"{out}: unsupported video output extension {out.suffix!r}, expected one of "
                         f"{', '.join(VIDEO_OUTPUTS)}, or a folder")
    return None, out


def _own_name(item: Item) -> str:
    stem, suffix = item.source.stem or "output", item.source.suffix.lower()
    if item.kind == "video":
        return f"{stem}{suffix if suffix in VIDEO_OUTPUTS else '.mp4'}"
    return f"{stem}{item.source.suffix if suffix in image_io.OUTPUT_FORMATS else '.png'}"


def _named(items: list[Item], folder: Location, notes: list[str]) -> list[Item]:
    """Each item with its output in ``folder``: a manifest's ``output`` entry, else its own name;
    a clash resolved as the module docstring says."""
    taken: dict[str, Item] = {}
    for item in items:  # manifest entries first: they were asked for
        if item.entry is not None:
            key = str(confined_output(folder, item.entry)).casefold()
            if key in taken:
                raise ValueError(f"{folder}: two inputs write {item.entry} ({taken[key].source} and {item.source}); "
                                 f"give them distinct outputs")
            taken[key] = item
    wanted = {_own_name(item).casefold() for item in items if item.entry is None}
    named = []
    for item in items:
        if item.entry is not None:
            named.append(dataclasses.replace(item, output=confined_output(folder, item.entry)))
            continue
        name = _own_name(item)
        path = folder / name
        if str(path).casefold() in taken:
            stem, suffix = os.path.splitext(name)
            k = 2
            while f"{stem}-{k}{suffix}".casefold() in wanted or str(folder / f"{stem}-{k}{suffix}").casefold() in taken:
                k += 1
            first = taken[str(path).casefold()].source
            path = folder / f"{stem}-{k}{suffix}"
            notes.append(f"{item.source} is written as {path.name}: {first} has the same name and comes first")
        taken[str(path).casefold()] = item
        named.append(dataclasses.replace(item, output=path))
    return named
