"""What decides a video job's frames, kept in its work folder (``settings.json``) so that a resumed
run mixes in only frames made the same way: every option by name and value (an optimizer by its
name: a built-in's, or a factory's ``module:function`` with the bytes of the files that define it)
and the content of everything the run reads (the input's bytes, the style images' and masks'
pixels, the network's parameters, the ``.flo`` files' bytes), so that a file changed between two
runs is not resumed into mixed frames. A refusal says what would resume: the files to restore, the
original command, or the version of jaxstyle that made the frames.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxstyle.config import StyleConfig, VideoConfig, optimizer_name
from jaxstyle.io import files
from jaxstyle.io import video as video_io
from jaxstyle.jobs.video_work import finished_frames
from jaxstyle.model.vgg import VGG19

FORMAT = 3  # of settings.json; a work folder of another format is of another version of jaxstyle


def _digest_file(path: Path, h) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def file_digest(path: Path) -> str:
    """A file's bytes' digest (wherever it lies: a copy elsewhere digests alike)."""
    h = hashlib.blake2b(digest_size=16)
    _digest_file(path, h)
    return h.hexdigest()


def input_digest(path: Path) -> str:
    """The input's bytes' digest (a folder's: its frame files' names and bytes, in order)."""
    h = hashlib.blake2b(digest_size=16)
    if path.is_dir():
        for frame in video_io.frame_files(path):
            h.update(frame.name.encode())
            _digest_file(frame, h)
    else:
        _digest_file(path, h)
    return h.hexdigest()


def files_digest(paths: Iterable[Path]) -> str:
    """One digest of the bytes of ``paths``, in order."""
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        h.update(str(path).encode() + b"\0")
        _digest_file(path, h)
    return h.hexdigest()


def array_digest(array) -> str:
    """The digest of an array's shape, dtype and values."""
    array = np.ascontiguousarray(np.asarray(array))
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def network_digest(vgg: VGG19) -> str:
    """The network as the frames see it: every parameter, the preprocessing and the pooling (so a
    weights file, a URL, the cached weights and a network passed in are compared alike)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{vgg.preprocessing!r} {vgg.pooling}".encode())
    leaves = jax.tree_util.tree_flatten_with_path(vgg.params)[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(array_digest(leaf).encode())
    return h.hexdigest()


def _defining_file(thing) -> Path | None:
    """The source file that defines a module, function or class; a module without one (imported from
    a ``.pyc`` or an extension) by its compiled file; None when there is no file (built in, made by
    ``exec``, a notebook cell)."""
    try:
        path = inspect.getsourcefile(thing)  # may name a file that is not there (gone, or a notebook's cell)
    except TypeError:  # built in, or an object that no file defines
        path = None
    if not (path and Path(path).is_file()) and inspect.ismodule(thing):
        path = getattr(thing, "__file__", None)
    return Path(path) if path and Path(path).is_file() else None


def factory_files(spec: str) -> list[list[str]]:
    """The files behind factory ``module:attribute`` (imported in this process), as [name, digest]
    pairs: the module's (its module-level values) and, where another, the file that defines the
    factory (a function imported into the module, the function under a decorator or a
    ``functools.partial``, the class of an object with ``__call__``). What these call in turn is
    not followed. A module with no file (built in) gives none: the factory is compared by name only."""
    module_name, _, attribute = spec.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        return []
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
    things = [module, factory]
    try:
        things.append(inspect.unwrap(factory))
    except ValueError:  # a cycle of __wrapped__
        pass
    if isinstance(factory, functools.partial):
        things.append(factory.func)
    elif callable(factory) and not (inspect.isroutine(factory) or inspect.isclass(factory)):
        things.append(type(factory))  # an object with __call__: its class
    paths = []
    for thing in things:
        path = None if thing is None else _defining_file(thing)
        if path is not None and path not in paths:
            paths.append(path)
    return [[f"{path.parent.name}/{path.name}" if path.name == "__init__.py" else path.name, file_digest(path)]
            for path in paths]


def optimizer_setting(optimizer) -> str | dict:
    """An optimizer as runs are compared by: a built-in's name, or a factory's ``module:function``
    with its files' digests (``{"name": ..., "files": [[name, digest], ...]}``, :func:`factory_files`).
    Another object cannot be told from a different one in another process (its hyperparameters are
    inside its functions): it is named by its identity, so only this process resumes with it."""
    if isinstance(optimizer, str):
        return optimizer
    name = getattr(optimizer, "name", None)
    if isinstance(name, str) and ":" in name:
        return {"name": name, "files": factory_files(name)}
    return f"{optimizer_name(optimizer)} (object {id(optimizer):#x} of process {os.getpid()})"


def options(config: StyleConfig | VideoConfig) -> dict:
    """A config's fields by name, the optimizer by :func:`optimizer_setting`."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if "optimizer" in fields:
        fields["optimizer"] = optimizer_setting(fields["optimizer"])
    return fields


def video_settings(*, input: str, styles: Sequence, masks: Sequence | None, vgg: VGG19, flo: str | None,
                   config: StyleConfig, video: VideoConfig, shape: tuple[int, int], style_size: int,
                   frames: tuple[int, int], flow: str, dis_preset: str) -> dict:
    """What decides the frames (as JSON reads it back). input: the input's digest; styles, masks:
    the loaded images (float [H, W, 3]); flo: the ``.flo`` files' digest (None: flow computed);
    shape: the frames' (height, width); frames: (start, end) of the input."""
    settings = {
        "format": FORMAT, "input": input, "style images": [array_digest(s) for s in styles],
        "style masks": [array_digest(m) for m in masks or ()], "network": network_digest(vgg),
        "flow": flow, "dis_preset": dis_preset if flow == "dis" else None, ".flo files": flo,
        "frames": f"{frames[0]}:{frames[1]}", "frame size": f"{shape[1]}x{shape[0]}", "style size": style_size,
        "config": options(config), "video": options(video),
    }
    return json.loads(json.dumps(settings))


def shown_setting(value) -> str:
    """A setting as a refusal says it: lists comma-joined ("none" when empty), floats short, None as
    "none", a factory optimizer by its name."""
    if isinstance(value, list):
        return ",".join(map(shown_setting, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict) and "name" in value:  # a factory optimizer
        return str(value["name"])
    return "none" if value is None else str(value)


COMMAND = "run the original command"
VERSION = "use the jaxstyle version that made them"


class Difference(NamedTuple):
    """One way two settings differ: ``said`` in words, ``remedy`` what would resume (``restore X``,
    :data:`COMMAND`, :data:`VERSION`; None: nothing can)."""

    said: str
    remedy: str | None


def _optimizer_differences(old, new) -> list[Difference]:
    if not (isinstance(old, dict) and isinstance(new, dict) and old.get("name") == new["name"]):
        return [Difference(f"optimizer {shown_setting(old)}, now {shown_setting(new)}", COMMAND)]
    before = [f for f in old.get("files") or [] if isinstance(f, list) and len(f) == 2]
    changed = [name for name, digest in new["files"] if [name, digest] not in before]
    changed += [name for name, _ in before if name not in changed and all(name != n for n, _ in new["files"])]
    return [Difference(f"optimizer {new['name']}: its file {name} changed", f"restore {name}")
            for name in dict.fromkeys(changed)]


def differences(previous: dict | None, settings: dict, names: dict[str, Sequence[str]]) -> list[Difference]:
    """What differs between the ``previous`` settings and these, in words, each with what would
    resume. names: the files behind "input", "style images" and "style masks" (this run's), to say
    which one changed."""
    if previous == settings:
        return []
    if not isinstance(previous, dict):
        return [Difference("no readable settings.json", None)]
    if previous.get("format") != settings["format"] or previous.keys() != settings.keys():
        return [Difference("made by another version of jaxstyle", VERSION)]
    found = []
    for key, value in settings.items():
        old = previous.get(key)
        if old == value:
            continue
        if key == "input":
            name = Path(names["input"][0]).name
            found.append(Difference(f"the input {name} changed", f"restore {name}"))
        elif key in ("style images", "style masks"):
            what = key[:-1]
            if not isinstance(old, list) or len(old) != len(value):
                found.append(Difference(f"{key} {len(old) if isinstance(old, list) else 'other'}, now {len(value)}",
                                        COMMAND))
            else:
                found += [Difference(f"{what} {Path(name).name} changed", f"restore {Path(name).name}")
                          for name, a, b in zip(names[key], old, value) if a != b]
        elif key == "network":
            found.append(Difference("the network's weights changed", "restore the network's weights"))
        elif key == ".flo files":
            found.append(Difference(f"the .flo files of {settings['flow']} changed", "restore the .flo files"))
        elif key in ("config", "video") and isinstance(old, dict):
            for name, v in value.items():
                if old.get(name) == v:
                    continue
                found += (_optimizer_differences(old.get(name), v) if name == "optimizer" else
                          [Difference(f"{name} {shown_setting(old.get(name))}, now {shown_setting(v)}", COMMAND)])
        else:
            found.append(Difference(f"{key} {shown_setting(old)}, now {shown_setting(value)}", COMMAND))
    return found or [Difference("made by another version of jaxstyle", VERSION)]  # nothing this version tells


def _refusal(work: Path, held: str, found: list[Difference]) -> str:
    """One line: what differs, what would resume, and what ``--overwrite`` would discard."""
    why = "; ".join(d.said for d in found[:3]) + (f"; {len(found) - 3} more" if len(found) > 3 else "")
    overwrite = f"pass --overwrite to discard the {held}"
    if any(d.remedy is None for d in found):
        return f"{work}: holds {held} of a run whose settings are unknown ({why}): they cannot be resumed; {overwrite}"
    remedies = list(dict.fromkeys(d.remedy for d in found))
    restore = [r.removeprefix("restore ") for r in remedies if r.startswith("restore ")]
    advice = " and ".join(([f"restore {' and '.join(restore)}"] if restore else [])
                          + [r for r in remedies if r in (COMMAND, VERSION)])
    return f"{work}: holds {held} of a run with other settings ({why}); {advice} to resume, or {overwrite}"


def read_settings(work: Path) -> dict | None:
    try:
        return json.loads((work / "settings.json").read_text())
    except (OSError, ValueError):
        return None


def prepare(work: Path, settings: dict, *, overwrite: bool, names: dict[str, Sequence[str]],
            notify: Callable[[str], None]) -> None:
    """The work folder: new, or an unfinished run's with the same settings (resumed). Another run's
    finished frames are discarded only with ``overwrite`` (and said so); without, a one-line refusal
    says what differs, what would resume and what ``--overwrite`` would discard."""
    if work.exists():
        previous = read_settings(work)
        if previous == settings:
            notify(f"resuming from {work}")
        else:
            done = finished_frames(work)
            found = differences(previous, settings, names)
            held = f"{done} finished frame{'' if done == 1 else 's'}"
            if done and not overwrite:
                raise ValueError(_refusal(work, held, found))
            shutil.rmtree(work)
            if done:
                why = "; ".join(d.said for d in found)
                notify(f"--overwrite: discarded {held} of a run with other settings ({why}) in {work}")
    work.mkdir(exist_ok=True)
    files.atomic_write(work / "settings.json", lambda f: f.write(json.dumps(settings, indent=1).encode()))
