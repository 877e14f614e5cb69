"""What decides a video job's frames, kept in its work folder (``settings.json``) so that a resumed
run mixes in only frames made the same way: every option by name and value (an optimizer by its
name: a built-in's, or a factory's ``module:function``) and the content of everything the run reads
(the input's bytes, the style images' and masks' pixels, the network's parameters, the ``.flo``
files' bytes), so that a file changed between two runs is not resumed into mixed frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxstyle.config import StyleConfig, VideoConfig, optimizer_name
from jaxstyle.io import files
from jaxstyle.io import video as video_io
from jaxstyle.jobs.video_work import finished_frames
from jaxstyle.model.vgg import VGG19

FORMAT = 2  # of settings.json; a work folder of another format is of another version of jaxstyle


def _digest_file(path: Path, h) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


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


def optimizer_setting(optimizer) -> str:
    """An optimizer as runs are compared by: a built-in's name, or a factory's ``module:function``.
    Another object cannot be told from a different one in another process (its hyperparameters are
    inside its functions): it is named by its identity, so only this process resumes with it."""
    if isinstance(optimizer, str):
        return optimizer
    name = getattr(optimizer, "name", None)
    if isinstance(name, str) and ":" in name:
        return name
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


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(map(_shown, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def differences(previous: dict | None, settings: dict, names: dict[str, Sequence[str]]) -> list[str]:
    """What differs between the ``previous`` settings and these, in words. names: the files behind
    "input", "style images" and "style masks" (this run's), to say which one changed."""
    if not isinstance(previous, dict) or previous.get("format") != settings["format"]:
        return ["made by another version of jaxstyle" if isinstance(previous, dict) else "no readable settings.json"]
    said = []
    for key, value in settings.items():
        old = previous.get(key)
        if old == value:
            continue
        if key == "input":
            said.append(f"the input {Path(names['input'][0]).name} changed")
        elif key in ("style images", "style masks"):
            what = key[:-1]
            if not isinstance(old, list) or len(old) != len(value):
                said.append(f"{key} {len(old) if isinstance(old, list) else 'other'}, now {len(value)}")
            else:
                said += [f"{what} {Path(name).name} changed" for name, a, b in zip(names[key], old, value) if a != b]
        elif key == "network":
            said.append("the network's weights changed")
        elif key == ".flo files":
            said.append(f"the .flo files of {settings['flow']} changed")
        elif key in ("config", "video") and isinstance(old, dict):
            said += [f"{name} {_shown(old.get(name))}, now {_shown(v)}" for name, v in value.items()
                     if old.get(name) != v]
        else:
            said.append(f"{key} {_shown(old)}, now {_shown(value)}")
    return said


def read_settings(work: Path) -> dict | None:
    try:
        return json.loads((work / "settings.json").read_text())
    except (OSError, ValueError):
        return None


def prepare(work: Path, settings: dict, *, overwrite: bool, names: dict[str, Sequence[str]],
            notify: Callable[[str], None]) -> None:
    """The work folder: new, or an unfinished run's with the same settings (resumed). Another run's
    finished frames are discarded only with ``overwrite`` (and said so); without, a one-line refusal
    says what differs and what ``--overwrite`` would discard."""
    if work.exists():
        previous = read_settings(work)
        if previous == settings:
            notify(f"resuming from {work}")
        else:
            done = finished_frames(work)
            said = differences(previous, settings, names)
            why = "; ".join(said[:3]) + (f"; {len(said) - 3} more" if len(said) > 3 else "")
            held = f"{done} finished frame{'' if done == 1 else 's'}"
            if done and not overwrite:
                raise ValueError(f"{work}: holds {held} of a run with other settings ({why}); run the original "
                                 f"command to resume, or pass --overwrite to discard them")
            shutil.rmtree(work)
            if done:
                notify(f"--overwrite: discarded {held} of a run with other settings ({why}) in {work}")
    work.mkdir(exist_ok=True)
    files.atomic_write(work / "settings.json", lambda f: f.write(json.dumps(settings, indent=1).encode()))
