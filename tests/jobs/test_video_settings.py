"""What a video job's frames were made with (``settings.json``): an optimizer factory is compared by
its name and the content of the files that define it, and a refusal to resume says what would
resume (restore a file, run the original command, the version that made the frames) and how many
finished frames ``--overwrite`` would discard, on one line."""

from __future__ import annotations

import importlib
import json
import py_compile
import sys
import types

import numpy as np
import pytest

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.jobs.video import run_video, work_folder
from jaxstyle.jobs.video_settings import FORMAT, differences, optimizer_setting, prepare, video_settings
from jaxstyle.optim import optimizer_from_factory
from tests.clips import make_clip
from tests.helpers import smooth_image
from tests.jobs.test_video_resume import job, save, stop_after

ADAM = "import optax\n\n\ndef adam():\n    return optax.adam({rate})\n"


@pytest.fixture()
def importable(tmp_path, monkeypatch):
    """tmp_path on sys.path; ``importable(name, source)`` writes ``name.py`` there and forgets any
    earlier import of it (as a new process would)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    names = []

    def write(name, source):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        names.append(name)
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return path

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture()
def style(tmp_path):
    return save(tmp_path / "painting.png", smooth_image(40, 40, 2))


def test_a_factory_resumes_while_its_file_is_the_same_and_refuses_once_it_was_edited(
        tmp_path, style, random_vgg, importable):
    source = make_clip(tmp_path / "clip.mp4", n=3, audio=None)
    out = tmp_path / "out.mp4"

    def factory_job():  # each run imports the factory afresh, as a new process would
        sys.modules.pop("myopt", None)
        return job(source, style, out, config=StyleConfig(iterations=2, style_weight=1e-1,
                                                          optimizer=optimizer_from_factory("myopt:adam")))

    importable("myopt", ADAM.format(rate=0.02))
    with pytest.raises(KeyboardInterrupt):
        run_video(factory_job(), vgg=random_vgg, on_frame=stop_after(1))
    said = []
    with pytest.raises(KeyboardInterrupt):  # the same file: resumed
        run_video(factory_job(), vgg=random_vgg, notify=said.append, on_frame=stop_after(2))
    assert any("resuming from" in m for m in said), said
    work = work_folder(out)
    finished = sorted(work.rglob("frame_*.png"))
    assert len(finished) == 2
    importable("myopt", ADAM.format(rate=0.2))
    with pytest.raises(ValueError) as exc:
        run_video(factory_job(), vgg=random_vgg)
    message = str(exc.value)
    assert "\n" not in message and str(work) in message, message
    assert "optimizer myopt:adam: its file myopt.py changed" in message, message
    assert "restore myopt.py to resume, or pass --overwrite to discard the 2 finished frames" in message, message
    assert "original command" not in message, message
    assert sorted(work.rglob("frame_*.png")) == finished


MYLIB = ("import functools\nimport optax\n\n\ndef adam(rate={rate}):\n    return optax.adam(rate)\n\n\n"
         "def wrapped(f):\n    @functools.wraps(f)\n    def call():\n        return f()\n\n    return call\n\n\n"
         "class Made:\n    def __call__(self):\n        return optax.sgd({rate})\n\n\n"
         "@functools.cache\ndef cached():\n    return optax.adam({rate})\n")
MYOPT = ("import functools\nimport mylib\nfrom mylib import adam, cached\n\nfast = functools.partial(adam, 0.2)\n"
         "made = mylib.Made()\n\n\n@mylib.wrapped\ndef own():\n    return adam(0.1)\n")


def test_a_factory_is_compared_by_the_file_that_defines_it_too(importable):
    """Imported into the module, under a functools.partial, an object with __call__, a decorator
    (a wrapper in another file; a wrapper in C)."""
    specs = ("myopt:adam", "myopt:fast", "myopt:made", "myopt:own", "myopt:cached")

    def settings():  # each time in a new process: both modules imported afresh
        for name in ("myopt", "mylib"):
            sys.modules.pop(name, None)
        return {spec: optimizer_setting(optimizer_from_factory(spec)) for spec in specs}

    importable("mylib", MYLIB.format(rate=0.02))
    importable("myopt", MYOPT)
    before = settings()
    for setting in before.values():
        assert [name for name, _ in setting["files"]] == ["myopt.py", "mylib.py"]
    assert settings() == before
    importable("mylib", MYLIB.format(rate=0.2))
    for spec, new in settings().items():
        old = before[spec]
        assert new["files"][0] == old["files"][0] and new["files"][1] != old["files"][1]
        found = differences(_settings(old), _settings(new), NAMES)
        assert [d.said for d in found] == [f"optimizer {spec}: its file mylib.py changed"]
        assert [d.remedy for d in found] == ["restore mylib.py"]


def test_a_factory_without_a_source_file_is_compared_by_its_compiled_file_or_else_by_name(tmp_path, importable):
    source = importable("compiled", ADAM.format(rate=0.02))
    py_compile.compile(str(source), cfile=str(tmp_path / "compiled.pyc"))
    source.unlink()  # a sourceless module: imported from compiled.pyc
    importlib.invalidate_caches()
    setting = optimizer_setting(optimizer_from_factory("compiled:adam"))
    assert [name for name, _ in setting["files"]] == ["compiled.pyc"]
    module = types.ModuleType("builtin_like")  # no file at all (a built-in module)
    exec(compile(ADAM.format(rate=0.02), "<builtin_like>", "exec"), module.__dict__)
    sys.modules["builtin_like"] = module
    try:
        assert optimizer_setting(optimizer_from_factory("builtin_like:adam")) == {"name": "builtin_like:adam",
                                                                                   "files": []}
    finally:
        del sys.modules["builtin_like"]


# The refusal's advice, kind by kind, through prepare() on a work folder holding finished frames.

NAMES = {"input": ["clip.mp4"], "style images": ["style1.jpg", "style2.jpg"], "style masks": []}


def _settings(optimizer="lbfgs", **changes) -> dict:
    settings = {"format": FORMAT, "input": "1" * 32, "style images": ["a" * 32, "b" * 32], "style masks": [],
                "network": "n" * 32, "flow": "dis", "dis_preset": "medium", ".flo files": None, "frames": "0:3",
                "frame size": "64x48", "style size": 64,
                "config": {"iterations": 2, "optimizer": optimizer}, "video": {"passes": 1}}
    return json.loads(json.dumps({**settings, **changes}))


@pytest.fixture()
def work(tmp_path):
    """A work folder of a run with :func:`_settings` and 2 finished frames."""
    folder = tmp_path / "out.mp4.jaxstyle-work"
    prepare(folder, _settings(), overwrite=False, names=NAMES, notify=lambda m: None)
    (folder / "pass_1").mkdir()
    for i in range(2):
        (folder / "pass_1" / f"frame_{i:05d}.png").write_bytes(b"png")
    return folder


def refusal(work, settings) -> str:
    with pytest.raises(ValueError) as exc:
        prepare(work, settings, overwrite=False, names=NAMES, notify=lambda m: None)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{work}: holds 2 finished frames"), message
    assert message.endswith("pass --overwrite to discard the 2 finished frames"), message
    assert len(list(work.rglob("frame_*.png"))) == 2  # nothing discarded
    return message


def test_a_changed_file_is_resumed_by_restoring_it(work):
    message = refusal(work, _settings(**{"style images": ["a" * 32, "c" * 32]}))
    assert "(style image style2.jpg changed)" in message, message
    assert "; restore style2.jpg to resume, or pass" in message, message
    message = refusal(work, _settings(input="2" * 32, network="m" * 32))
    assert "; restore clip.mp4 and the network's weights to resume, or pass" in message, message


def test_other_options_are_resumed_by_the_original_command(work):
    message = refusal(work, _settings(frames="1:3"))
    assert "(frames 0:3, now 1:3); run the original command to resume, or pass" in message, message
    message = refusal(work, _settings(**{"style images": ["a" * 32, "c" * 32], "frame size": "32x24"}))
    assert "; restore style2.jpg and run the original command to resume, or pass" in message, message


def test_frames_of_another_version_are_resumed_by_that_version(work):
    (work / "settings.json").write_text(json.dumps(_settings(format=1)))
    message = refusal(work, _settings())
    assert "(made by another version of jaxstyle); use the jaxstyle version that made them to resume" in message
    assert "original command" not in message, message


def test_frames_without_readable_settings_cannot_be_resumed(work):
    (work / "settings.json").write_text("{")
    message = refusal(work, _settings())
    assert "no readable settings.json" in message and "cannot be resumed" in message, message
    assert "original command" not in message and "restore" not in message, message


def test_an_optimizer_factory_whose_file_changed_names_the_file(work):
    (work / "settings.json").write_text(json.dumps(_settings({"name": "myopt:adam", "files": [["myopt.py", "d1"]]})))
    message = refusal(work, _settings({"name": "myopt:adam", "files": [["myopt.py", "d2"]]}))
    assert "(optimizer myopt:adam: its file myopt.py changed); restore myopt.py to resume" in message, message
    message = refusal(work, _settings("lbfgs"))
    assert "(optimizer myopt:adam, now lbfgs); run the original command to resume" in message, message


def test_the_same_settings_resume_and_overwrite_says_what_it_discarded(work):
    said = []
    prepare(work, _settings(), overwrite=False, names=NAMES, notify=said.append)
    assert said == [f"resuming from {work}"]
    prepare(work, _settings(frames="1:3"), overwrite=True, names=NAMES, notify=said.append)
    assert "discarded 2 finished frames" in said[-1] and str(work) in said[-1], said
    assert not list(work.rglob("frame_*.png"))


def test_the_settings_of_a_run_name_a_factory_with_its_files(importable, random_vgg):
    importable("myopt", ADAM.format(rate=0.02))
    config = StyleConfig(optimizer=optimizer_from_factory("myopt:adam"))
    settings = video_settings(input="0", styles=[np.zeros((4, 4, 3))], masks=None, vgg=random_vgg, flo=None,
                              config=config, video=VideoConfig(), shape=(48, 64), style_size=64, frames=(0, 3),
                              flow="dis", dis_preset="medium")
    assert settings["config"]["optimizer"]["name"] == "myopt:adam"
    assert [name for name, _ in settings["config"]["optimizer"]["files"]] == ["myopt.py"]
    assert differences(settings, settings, NAMES) == []
