"""`jaxstyle video` from the command line: options, errors, the progress lines, interrupts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from jaxstyle.cli import main
from jaxstyle.io import video as video_io
from tests.clips import make_clip
from tests.helpers import ROOT, one_line_error

FAST = ["--style-loss", "gram", "--size", "64", "--iterations", "2", "--first-iterations", "2", "--style-weight", "0.1"]


@pytest.fixture()
def clip(tmp_path):
    return make_clip(tmp_path / "clip.mp4", n=4)


def test_video_writes_the_stylized_clip_and_says_what_it_did(env, images, clip, tmp_path, capsys):
    _, style = images
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), str(style), "-o", str(out), *FAST, "--report", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "pass 1 frame 0: content, 2 steps" in err and "pass 1 frame 3: warped" in err
    assert f"wrote {out} (4 frames, 64x48" in err and "warping error" in err
    info = video_io.probe(out)
    assert (info.frames, info.has_audio) == (4, True)


def test_parallel_mode_runs_its_passes(env, images, clip, tmp_path, capsys):
    _, style = images
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), str(style), "-o", str(out), *FAST, "--parallel", "--passes", "2",
                 "--frames", "1:4"]) == 0
    err = capsys.readouterr().err
    assert "pass 2 frame 2: blend" in err
    assert video_io.probe(out).frames == 3


@pytest.mark.parametrize("args, expected", [
    (["--frames", "5:2"], "expected START:END"),
    (["--frames", "x"], "expected START:END"),
    (["--scales", "32,64"], "one scale"),
    (["--distributed"], "--distributed needs --parallel"),
    (["--temporal-weight", "nan"], "finite"),
    (["--cut-threshold", "2"], "cut_threshold"),
    (["--long-term", "0,1"], "positive integers"),
    (["--long-term", "1,1"], "relative_frames"),
    (["--crf", "99"], "--crf"),
])
def test_bad_options_are_one_line_errors(env, images, clip, tmp_path, capsys, args, expected):
    _, style = images
    try:
        code = main(["video", str(clip), str(style), "-o", str(tmp_path / "out.mp4"), *FAST, *args])
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    assert code == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_a_missing_video_extra_is_named(env, images, clip, tmp_path, capsys, monkeypatch):
    _, style = images
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert main(["video", str(clip), str(style), "-o", str(tmp_path / "out.mp4"), *FAST]) == 2
    assert "pip install 'jaxstyle[video]'" in one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stop_or_a_crash_keeps_the_finished_frames_and_the_same_command_resumes(env, images, tmp_path, how):
    _, style = images
    clip = make_clip(tmp_path / "clip.mp4", n=5)
    out = tmp_path / "out.mp4"
    args = [sys.executable, "-m", "jaxstyle", "video", str(clip), str(style), "-o", str(out), *FAST,
            "--iterations", "15"]
    import os

    env = {**os.environ, "JAXSTYLE_XLA_CACHE": str(tmp_path / "xla")}  # the resumed run loads the programs
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    for line in proc.stderr:  # wait for the second finished frame
        if line.startswith("pass 1 frame 1:") or time.time() > deadline:
            break
    proc.send_signal(how)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    if how == signal.SIGTERM:
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "finished frame(s) are kept in" in err
    else:  # killed outright: nothing said, nothing cleaned up, and still nothing lost
        assert proc.returncode == -signal.SIGKILL
    done = sorted(p.name for p in (tmp_path / "out.mp4.jaxstyle-work" / "pass_0").glob("*.png"))
    assert done[:2] == ["frame_00000.png", "frame_00001.png"] and not out.exists()
    resumed = subprocess.run(args, cwd=ROOT, stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "pass 1 frame 0: resumed" in resumed.stderr
    assert video_io.probe(out).frames == 5


@pytest.mark.slow
def test_two_processes_share_the_frames_of_every_pass(env, images, tmp_path):
    import os
    import socket

    _, style = images
    clip = make_clip(tmp_path / "clip.mp4", n=4)
    out = tmp_path / "out.mp4"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    procs = [subprocess.Popen([sys.executable, "-m", "jaxstyle", "video", str(clip), str(style), "-o", str(out),
                               *FAST, "--parallel", "--passes", "2", "--distributed", "--coordinator", coordinator,
                               "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    errs = []
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        errs.append(err)
    for i, err in enumerate(errs):  # each process computed its own frames of each pass, and only those
        computed = {line.split(":")[0] for line in err.splitlines() if line.startswith("pass ")
                    and "resumed" not in line}
        assert computed == {f"pass {p} frame {k}" for p in (1, 2) for k in range(4) if k % 2 == i}, err
    assert "wrote" in errs[0] and video_io.probe(out).frames == 4


def test_importing_the_cli_touches_no_device():
    """jax.distributed.initialize (--distributed) must come before any JAX backend is made."""
    code = "import jaxstyle.cli; from jax._src import xla_bridge; assert not xla_bridge._backends, xla_bridge._backends"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).returncode == 0
