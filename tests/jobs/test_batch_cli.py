"""`jaxstyle batch` end to end: manifests, folders, bad pairs, resume, two processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.jobs.manifest import Pair, process_share, read_manifest
from tests.helpers import ROOT, smooth_image

FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "3", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet", "--batch-size", "2"]


def save(path, h, w, seed):
    Image.fromarray((smooth_image(h, w, seed) * 255).astype(np.uint8)).save(path)


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "art").mkdir()
    save(tmp_path / "photos" / "a.png", 48, 64, 1)
    save(tmp_path / "photos" / "b.jpg", 64, 48, 2)  # portrait: its own bucket
    save(tmp_path / "photos" / "c.png", 45, 64, 3)  # same bucket as a
    save(tmp_path / "art" / "x.png", 40, 40, 4)
    save(tmp_path / "art" / "y.png", 30, 50, 5)
    return tmp_path


@pytest.fixture()
def env(weights_file, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    return {**os.environ}


def report(out):
    return json.loads((out / "report.json").read_text())


def test_folders_every_pair(env, folder, capsys):
    out = folder / "out"
    assert main(["batch", "--contents", str(folder / "photos"), "--styles", str(folder / "art"),
                 "--out-dir", str(out), *FAST[:-3]]) == 0  # --batch-size auto: 1 on this CPU
    assert "batch size 1 (auto: 1 per CPU device" in capsys.readouterr().err
    rep = report(out)
    assert rep["summary"] == {"total": 6, "done": 6, "skipped": 0, "failed": 0, "pending": 0}
    assert Image.open(out / "a__x.png").size == (32, 24)
    assert Image.open(out / "b__y.png").size == (24, 32)
    assert all(r["final_loss"] > 0 and r["steps"] == 3 for r in rep["pairs"])
    # a re-run redoes nothing
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert main(["batch", "--contents", str(folder / "photos"), "--styles", str(folder / "art"),
                 "--out-dir", str(out), *FAST]) == 0
    assert report(out)["summary"]["skipped"] == 6
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before


def test_what_a_killed_writer_left_goes_when_its_pair_is_run_again(env, folder):
    out = folder / "out"
    out.mkdir()
    stale = out / ".a__x.png.k1ll3d.part"  # a process killed outright while writing a__x.png
    stale.write_bytes(b"half an image")
    other = out / ".keep.png.abc.part"  # not an output of this run: left alone
    other.write_bytes(b"someone else's")
    assert main(["batch", "--contents", str(folder / "photos"), "--styles", str(folder / "art"),
                 "--out-dir", str(out), *FAST]) == 0
    assert not stale.exists() and other.exists() and (out / "a__x.png").exists()


def test_manifest_with_bad_pairs_finishes_the_rest(env, folder, capsys):
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "pairs.csv").write_text("content,style,output,content_weight,style_weight,seed\n"
                                      "photos/a.png,art/x.png,first.png,1.0,2.0,5\n"
                                      "corrupt.png,art/x.png,,,,\n"
                                      "photos/missing.jpg,art/y.png,,,,\n"
                                      "photos/c.png,corrupt.png,c_bad_style.png,,,\n"
                                      "photos/b.jpg,art/y.png,sub/second.jpg,,,\n")
    out = folder / "out"
    assert main(["batch", str(folder / "pairs.csv"), "--out-dir", str(out), *FAST]) == 1
    rep = report(out)
    assert rep["summary"] == {"total": 5, "done": 2, "skipped": 0, "failed": 3, "pending": 0}
    failed = {r["content"].split("/")[-1]: r["reason"] for r in rep["pairs"] if r["status"] == "failed"}
    assert "not an image Pillow can read" in failed["corrupt.png"] or "corrupt" in failed["corrupt.png"]
    assert "missing.jpg: no such file" in failed["missing.jpg"]
    assert "corrupt.png" in failed["c.png"]
    assert (out / "first.png").exists() and Image.open(out / "sub" / "second.jpg").format == "JPEG"
    assert not list(out.rglob(".*.part"))


def test_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("photo,painting\na,b\n")
    with pytest.raises(ValueError, match="expected a header row with columns content,style"):
        read_manifest(tmp_path / "m.csv", tmp_path)
    (tmp_path / "m.jsonl").write_text('{"content": "a.png", "style": "b.png", "seed": "x"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:1: seed 'x' is not an integer"):
        read_manifest(tmp_path / "m.jsonl", tmp_path)
    line = '{"content": "a.png", "style": "b.png"}\n'
    (tmp_path / "d.jsonl").write_text(line * 2)
    with pytest.raises(ValueError, match="two pairs write"):
        read_manifest(tmp_path / "d.jsonl", tmp_path)


def test_process_shares_are_disjoint_and_cover():
    pairs = [Pair(Path(f"c{i}"), Path("s"), Path(f"o{i}.png")) for i in range(11)]
    shares = [process_share(pairs, i, 3) for i in range(3)]
    outputs = [p.output for share in shares for p in share]
    assert sorted(outputs) == sorted(p.output for p in pairs) and len(set(outputs)) == 11


@pytest.mark.slow
def test_sigterm_then_resume_redoes_nothing_finished(env, folder):
    out = folder / "out"
    args = [sys.executable, "-m", "jaxstyle", "batch", "--contents", str(folder / "photos"), "--styles",
            str(folder / "art"), "--out-dir", str(out), *FAST[:-2], "--batch-size", "1",
            "--iterations", "40"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("*.png")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    rep = report(out)
    assert 1 <= rep["summary"]["done"] < 6 and rep["summary"]["pending"] >= 1
    assert len(finished) == rep["summary"]["done"] and not list(out.glob(".*.part")) + list(out.glob(".*.claim"))
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rep = report(out)
    assert rep["summary"]["done"] == 6 - len(finished) and rep["summary"]["skipped"] == len(finished)
    assert all(p.stat().st_mtime_ns == finished[p.name] for p in out.glob("*.png") if p.name in finished)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_cover_the_manifest_once(env, folder):
    out = folder / "out"
    coordinator = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "jaxstyle", "batch", "--contents", str(folder / "photos"),
                               "--styles", str(folder / "art"), "--out-dir", str(out), *FAST, "--distributed",
                               "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env={**env, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    shares = [json.loads((out / f"report.process-{i}-of-2.json").read_text()) for i in range(2)]
    outputs = [r["output"] for share in shares for r in share["pairs"]]
    assert len(outputs) == 6 and len(set(outputs)) == 6
    assert all(share["summary"]["done"] == 3 for share in shares)
    rep = report(out)
    assert rep["summary"] == {"total": 6, "done": 6, "skipped": 0, "failed": 0, "pending": 0}
    assert sorted(r["output"] for r in rep["pairs"]) == sorted(outputs)


@pytest.mark.slow
def test_two_runs_on_one_out_dir_share_the_pairs(env, folder):
    """A restarted job while the old one still runs: every output once and whole, no pair computed twice."""
    out = folder / "out"
    args = [sys.executable, "-m", "jaxstyle", "batch", "--contents", str(folder / "photos"), "--styles",
            str(folder / "art"), "--out-dir", str(out), *[a for a in FAST if a != "--quiet"][:-1], "1"]
    procs = [subprocess.Popen(args, cwd=ROOT, env={**env, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = []
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith(("done: ", "skipped: "))]
        assert len(lines) == 6 and len({line.split(" ", 1)[1] for line in lines}) == 6, err  # each pair once
        done.append({line.split(" ", 1)[1] for line in lines if line.startswith("done: ")})
    assert not done[0] & done[1], "a pair was computed by both runs"
    assert len(done[0] | done[1]) == 6
    rep = report(out)  # the report of the run that ended last
    assert len({r["output"] for r in rep["pairs"]}) == 6 and rep["summary"]["done"] + rep["summary"]["skipped"] == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.json", *{Path(o).name for o in done[0] | done[1]}])
    for path in out.glob("*.png"):
        Image.open(path).load()  # whole files


def test_stale_claim_of_a_dead_run_is_taken_over(env, folder):
    out = folder / "out"
    out.mkdir()
    stale = out / ".a__x.png.claim"
    stale.write_text(json.dumps({"host": "a-host-that-died", "pid": 1, "token": "old"}))
    old = time.time() - 120
    os.utime(stale, (old, old))
    fresh = out / ".b__x.png.claim"
    fresh.write_text(json.dumps({"host": "a-host-that-died", "pid": 1, "token": "old"}))
    assert main(["batch", "--contents", str(folder / "photos"), "--styles", str(folder / "art"),
                 "--out-dir", str(out), *FAST, "--claim-timeout", "3"]) == 0  # the fresh one goes stale too
    assert report(out)["summary"]["done"] == 6 and not list(out.glob(".*.claim"))


def test_manifest_pairs_with_blended_styles(env, folder):
    out = folder / "out"
    manifest = folder / "pairs.jsonl"
    manifest.write_text('{"content": "photos/a.png", "style": "art/x.png|art/y.png", "style_blend": [3, 1]}\n'
                        '{"content": "photos/c.png", "style": "art/x.png"}\n')
    pairs = read_manifest(manifest, out)
    assert pairs[0].styles == (folder / "art" / "x.png", folder / "art" / "y.png")
    assert pairs[0].style_blend == (0.75, 0.25) and pairs[0].output.name == "a__x+y.png"
    assert main(["batch", str(manifest), "--out-dir", str(out), *FAST]) == 0
    rep = report(out)
    assert rep["summary"]["done"] == 2
    assert Image.open(out / "a__x+y.png").size == (32, 24)
    bad = folder / "bad.csv"
    bad.write_text("content,style,style_blend\nphotos/a.png,art/x.png|art/y.png,1|2|3\n")
    with pytest.raises(ValueError, match="expected 2 style_blend weights"):
        read_manifest(bad, out)


def test_manifest_with_masks_and_plots(env, folder):
    out = folder / "out"
    grey = np.zeros((48, 64), np.uint8)
    grey[:, :32] = 255
    Image.fromarray(grey).save(folder / "mask.png")
    Image.fromarray(grey[:40, :40]).save(folder / "half.png")
    manifest = folder / "pairs.csv"
    manifest.write_text("content,style,content_mask,style_masks\n"
                        "photos/a.png,art/x.png|art/y.png,mask.png,half.png|\n"
                        "photos/c.png,art/x.png,,\n")
    pairs = read_manifest(manifest, out)
    assert pairs[0].content_mask == folder / "mask.png" and pairs[0].style_masks == (folder / "half.png", None)
    assert main(["batch", str(manifest), "--out-dir", str(out), *FAST, "--plot"]) == 0
    assert report(out)["summary"]["done"] == 2
    assert Image.open(out / "a__x+y.png").size == (32, 24)
    assert Image.open(out / "a__x+y.loss.png").format == "PNG" and (out / "c__x.loss.png").exists()
    bad = folder / "bad.csv"
    bad.write_text("content,style,content_mask\nphotos/a.png,art/x.png,mask.png\n")
    with pytest.raises(ValueError, match="at least two"):
        read_manifest(bad, out)


def test_manifest_outputs_stay_inside_out_dir(env, folder, tmp_path):
    """A manifest cannot place files outside --out-dir: `..`, absolute paths, drives, schemes and
    symlinked folders pointing out fail their pair with a reason; the others run."""
    out = folder / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "linked").mkdir(parents=True)
    (out / "linked" / "away").symlink_to(outside, target_is_directory=True)
    evil = {"../escape.png": folder / "escape.png", str(outside / "abs.png"): outside / "abs.png",
            "linked/away/via_link.png": outside / "via_link.png", "sub/../../escape2.png": folder / "escape2.png",
            "C:/x.png": None, "s3://bucket/x.png": None, "~/home.png": None}
    rows = ["content,style,output", "photos/a.png,art/x.png,good/ok.png"]
    rows += [f"photos/a.png,art/y.png,{entry}" for entry in evil]
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    assert main(["batch", str(folder / "pairs.csv"), "--out-dir", str(out), *FAST]) == 1
    rep = report(out)
    assert rep["summary"] == {"total": 8, "done": 1, "skipped": 0, "failed": 7, "pending": 0}
    assert (out / "good" / "ok.png").exists()
    failed = [r for r in rep["pairs"] if r["status"] == "failed"]
    assert all("refused" in r["reason"] and "pairs.csv:" in r["reason"] for r in failed), failed
    assert not any(target.exists() for target in evil.values() if target is not None)
    assert list(outside.iterdir()) == []


def test_default_outputs_from_odd_stems_stay_inside(env, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "art").mkdir()
    save(tmp_path / "photos" / "..a b#c.png", 40, 40, 1)
    save(tmp_path / "art" / "x;y.png", 40, 40, 2)
    out = tmp_path / "out"
    assert main(["batch", "--contents", str(tmp_path / "photos"), "--styles", str(tmp_path / "art"),
                 "--out-dir", str(out), *FAST]) == 0
    assert [p.name for p in out.iterdir() if p.suffix == ".png"] == ["a_b_c__x_y.png"]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["worker-dies", "coordinator-dies"])
def test_a_dead_process_stops_the_others_within_seconds_and_a_rerun_resumes(env, folder, victim):
    out = folder / "out"
    coordinator = f"127.0.0.1:{free_port()}"
    # long enough that both are still working when the first output lands (a few seconds a pair)
    slow = [*FAST[:FAST.index("--iterations")], "--iterations", "150", *FAST[FAST.index("--iterations") + 2:]]

    def start(i):
        return subprocess.Popen([sys.executable, "-m", "jaxstyle", "batch", "--contents", str(folder / "photos"),
                                 "--styles", str(folder / "art"), "--out-dir", str(out), *slow, "--distributed",
                                 "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)],
                                cwd=ROOT, env={**env, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = [start(0), start(1)]
    deadline = time.time() + 300
    while not list(out.glob("*.png")) and time.time() < deadline:  # both are working
        time.sleep(0.1)
    procs[victim].kill()
    killed = time.time()
    survivor = procs[1 - victim]
    _, err = survivor.communicate(timeout=120)
    waited = time.time() - killed
    assert waited < 30, f"the survivor took {waited:.0f} s to stop"
    if victim == 1:
        assert survivor.returncode == 1, err[-3000:]
        assert "Traceback" not in err and "to resume" in err and "process 2 of 2 stopped responding" in err
    else:  # JAX itself ends the others at once when the coordinator goes (its fatal error; not catchable)
        assert survivor.returncode != 0 and "another task died" in err, err[-3000:]
    procs[victim].communicate()
    # the survivor leaves nothing half-written; the killed process may have been writing one output (SIGKILL: it
    # cannot clean up), which the rerun removes when it takes that pair
    assert len(list(out.glob(".*.part"))) <= 1
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    coordinator = f"127.0.0.1:{free_port()}"
    procs = [start(0), start(1)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    rep = report(out)
    assert not list(out.glob(".*.part"))
    assert rep["summary"]["done"] + rep["summary"]["skipped"] == 6 and rep["summary"]["skipped"] == len(kept)
    assert all(p.stat().st_mtime_ns == kept[p.name] for p in out.glob("*.png") if p.name in kept)
