"""`jaxstyle batch` and `stylize` against a real S3 server on 127.0.0.1 (moto's server mode, started
and stopped here), and against a plain HTTP server for http:// inputs.

The endpoint is given the standard way (``AWS_ENDPOINT_URL``) with dummy credentials, so the
same code path as on AWS runs: botocore signs, s3fs uploads, the server stores.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from jaxstyle.cli import main
from jaxstyle.io import storage
from tests.helpers import ROOT, smooth_image

pytestmark = pytest.mark.slow  # every test here talks to a moto S3 server process on 127.0.0.1

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

FAST = ["--style-loss", "gram",
        "--size", "32", "--iterations", "3", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
        "--quiet", "--batch-size", "1"]
SECRET = "dummy-secret-never-printed"


def png_bytes(h, w, seed) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((smooth_image(h, w, seed) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on 127.0.0.1 and a free port; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_server, weights_file, tmp_path, monkeypatch):
    """Environment of a user with credentials for the local S3 server; returns an s3fs client.
    Buckets ``inputs`` (three photos, two paintings) and ``outputs`` exist and are emptied first."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "dummy-key", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
           "AWS_CONFIG_FILE": str(tmp_path / "no-config"), "AWS_EC2_METADATA_DISABLED": "true",
           "JAXSTYLE_WEIGHTS": str(weights_file), "JAXSTYLE_CACHE": str(tmp_path / "cache")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()  # clients are cached per arguments, not per environment
    fs = s3fs.S3FileSystem()
    for bucket in ("inputs", "outputs"):
        if fs.exists(bucket):
            fs.rm(bucket, recursive=True)
        fs.mkdir(bucket)
    fs.pipe({"inputs/photos/a.png": png_bytes(48, 64, 1), "inputs/photos/b.png": png_bytes(64, 48, 2),
             "inputs/photos/c.png": png_bytes(45, 64, 3), "inputs/art/x.png": png_bytes(40, 40, 4),
             "inputs/art/y.png": png_bytes(30, 50, 5)})
    fs.invalidate_cache()
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


def objects(fs, prefix):
    fs.invalidate_cache()
    return {path: fs.info(path) for path in fs.find(prefix)}


def whole_image(fs, path):
    Image.open(io.BytesIO(fs.cat_file(path))).load()


def report(fs, path="outputs/run/report.json"):
    fs.invalidate_cache()
    return json.loads(fs.cat_file(path))


def test_manifest_in_a_bucket_finishes_the_rest_outputs_land_and_a_rerun_redoes_nothing(s3, capsys):
    s3.pipe_file("inputs/lists/pairs.csv", b"content,style\n../photos/a.png,../art/x.png\n"
                                      b"../photos/missing.png,../art/x.png\n../photos/b.png,../art/y.png\n")
    args = ["batch", "s3://inputs/lists/pairs.csv", "--out-dir", "s3://outputs/run", *FAST]
    assert main(args) == 1  # one pair failed
    err = capsys.readouterr().err
    assert "Traceback" not in err and SECRET not in err
    rep = report(s3)
    assert rep["summary"] == {"total": 3, "done": 2, "skipped": 0, "failed": 1, "pending": 0}
    reasons = {r["content"]: r["reason"] for r in rep["pairs"]}
    assert reasons["s3://inputs/photos/missing.png"] == "s3://inputs/photos/missing.png: no such file or object"
    outputs = objects(s3, "outputs/run")
    assert sorted(outputs) == ["outputs/run/a__x.png", "outputs/run/b__y.png", "outputs/run/report.json"]
    for path in ("outputs/run/a__x.png", "outputs/run/b__y.png"):
        whole_image(s3, path)
    assert main(args) == 1
    rep = report(s3)
    assert rep["summary"]["skipped"] == 2 and rep["summary"]["done"] == 0
    again = objects(s3, "outputs/run")
    for path in ("outputs/run/a__x.png", "outputs/run/b__y.png"):  # not written again
        assert again[path]["ETag"] == outputs[path]["ETag"]
        assert again[path]["LastModified"] == outputs[path]["LastModified"]


def test_folders_in_a_bucket_to_a_local_out_dir_and_stylize_to_a_bucket(s3, tmp_path, capsys):
    assert main(["batch", "--contents", "s3://inputs/photos", "--styles", "s3://inputs/art", "--out-dir",
                 str(tmp_path / "out"), *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "a__x.png", "a__y.png", "b__x.png", "b__y.png", "c__x.png", "c__y.png"]
    assert main(["stylize", "s3://inputs/photos/a.png", "s3://inputs/art/y.png", "-o", "s3://outputs/one/result.png",
                 *FAST[:-2], "--plot", "s3://outputs/one/loss.png", "--save-every", "2"]) == 0
    for path in ("outputs/one/result.png", "outputs/one/loss.png", "outputs/one/result_steps/step_00002.png"):
        whole_image(s3, path)


def test_bad_buckets_and_credentials_are_one_line_errors_exit_2(s3, monkeypatch, capsys):
    def one_line(args) -> str:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jaxstyle: error: "), err
        assert SECRET not in err[0]
        return err[0]

    manifest = ["batch", "--contents", "s3://inputs/photos", "--styles", "s3://inputs/art"]
    assert one_line([*manifest, "--out-dir", "s3://no-such-bucket/run", *FAST]).endswith(
        "--out-dir: s3://no-such-bucket: no such bucket")
    assert one_line(["batch", "s3://inputs/none.csv", "--out-dir", "s3://outputs/run", *FAST]).endswith(
        "s3://inputs/none.csv: no such file or object")
    assert one_line(["batch", "--contents", "s3://no-such-bucket/photos", "--styles", "s3://inputs/art", "--out-dir",
                     "s3://outputs/run", *FAST]).endswith("s3://no-such-bucket/photos: no such bucket")
    assert one_line(["stylize", "s3://inputs/photos/a.png", "s3://inputs/art/x.png", "-o", "s3://no-such-bucket/o.png",
                     *FAST[:-2]]).endswith("s3://no-such-bucket/o.png: s3://no-such-bucket: no such bucket")
    assert one_line([*manifest, "--out-dir", "https://example.com/out", *FAST]).endswith(
        "https://example.com/out: https:// is read-only here; write to a path, s3://, gs:// or another writable URL")
    import moto.settings

    with monkeypatch.context() as patch:
        patch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks keys: ours is unknown
        s3fs.S3FileSystem.clear_instance_cache()
        assert one_line([*manifest, "--out-dir", "s3://outputs/run", *FAST]).endswith(
            "s3://outputs: access denied (check the credentials and the bucket's permissions)")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    s3fs.S3FileSystem.clear_instance_cache()
    assert one_line(["batch", "s3://inputs/lists/pairs.csv", "--out-dir", "s3://outputs/run", *FAST]).endswith(
        "--out-dir: s3://outputs: no credentials found for s3:// (see the README, 'Credentials')")
    assert one_line(["batch", "s3://inputs/lists/pairs.csv", "--out-dir", "memory://run", *FAST]).endswith(
        "s3://inputs/lists/pairs.csv: no credentials found for s3:// (see the README, 'Credentials')")
    assert not s3.find("outputs")


def test_network_failures_are_retried_then_fail_only_their_pair(s3, tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    local = tmp_path / "x.png"
    local.write_bytes(png_bytes(40, 40, 4))
    (tmp_path / "m.csv").write_text(f"content,style\nfile://{local},x.png\ns3://inputs/photos/a.png,x.png\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries, on top of ours, would take minutes
    monkeypatch.setattr(storage, "RETRY_DELAYS", (0.1, 0.1))
    s3fs.S3FileSystem.clear_instance_cache()
    assert main(["batch", str(tmp_path / "m.csv"), "--out-dir", str(tmp_path / "out"), *FAST]) == 1
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {r["content"]: (r["status"], r["reason"]) for r in rep["pairs"]}
    assert status[str(local)] == ("done", None)
    assert status["s3://inputs/photos/a.png"][0] == "failed"
    assert status["s3://inputs/photos/a.png"][1].startswith("s3://inputs/photos/a.png: network or server failure after "
                                                        "3 tries (EndpointConnectionError")


def test_a_run_killed_midway_leaves_no_partial_object_and_a_rerun_finishes(s3, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [sys.executable, "-m", "jaxstyle", "batch", "--contents", "s3://inputs/photos", "--styles", "s3://inputs/art",
            "--out-dir", "s3://outputs/run", *FAST, "--iterations", "30"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not [p for p in s3.find("outputs/run") if p.endswith(".png")]:
        s3.invalidate_cache()
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no handler runs, an upload in flight is cut off
    proc.communicate(timeout=60)
    left = objects(s3, "outputs/run")
    pngs = [p for p in left if p.endswith(".png")]
    assert 1 <= len(pngs) < 6 and set(left) <= {*pngs, "outputs/run/report.json"}
    for path in pngs:
        whole_image(s3, path)
    finished = {p: left[p]["ETag"] for p in pngs}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = report(s3)
    assert rep["summary"]["done"] == 6 - len(finished) and rep["summary"]["skipped"] == len(finished)
    after = objects(s3, "outputs/run")
    assert all(after[p]["ETag"] == etag for p, etag in finished.items())
    assert len([p for p in after if p.endswith(".png")]) == 6


def test_two_processes_read_their_shares_from_a_bucket_and_process_0_merges(s3):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-m", "jaxstyle", "batch", "--contents", "s3://inputs/photos",
                               "--styles", "s3://inputs/art", "--out-dir", "s3://outputs/run", *FAST, "--distributed",
                               "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    shares = [report(s3, f"outputs/run/report.process-{i}-of-2.json") for i in range(2)]
    assert all(share["summary"]["done"] == 3 for share in shares)
    merged = report(s3)
    assert merged["summary"] == {"total": 6, "done": 6, "skipped": 0, "failed": 0, "pending": 0}
    assert len({r["output"] for r in merged["pairs"]}) == 6
    assert len([p for p in objects(s3, "outputs/run") if p.endswith(".png")]) == 6


@pytest.fixture()
def http_folder(tmp_path):
    """A read-only HTTP server on 127.0.0.1 serving ``tmp_path/site``."""
    site = tmp_path / "site"
    (site / "art").mkdir(parents=True)
    (site / "photo.png").write_bytes(png_bytes(48, 64, 1))
    (site / "art" / "x.png").write_bytes(png_bytes(40, 40, 4))
    (site / "pairs.csv").write_text("content,style\nphoto.png,art/x.png\nphoto.png,art/gone.png\n")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_manifest_and_images(http_folder, weights_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["batch", f"{http_folder}/pairs.csv", "--out-dir", str(out), *FAST]) == 1
    rep = json.loads((out / "report.json").read_text())
    status = {r["style"]: (r["status"], r["reason"]) for r in rep["pairs"]}
    assert status == {f"{http_folder}/art/x.png": ("done", None),
                      f"{http_folder}/art/gone.png": ("failed", f"{http_folder}/art/gone.png: no such file or object")}
    Image.open(out / "photo__x.png").load()
    assert main(["batch", f"{http_folder}/pairs.csv", "--out-dir", f"{http_folder}/out", *FAST]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{http_folder}/out: http:// is read-only here; write to a "
                                                    f"path, s3://, gs:// or another writable URL")
