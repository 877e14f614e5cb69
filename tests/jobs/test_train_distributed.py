"""`jaxstyle train --distributed`: two processes (one CPU device each, gloo between them) train the
parameters one process trains, each decoding its rows of every batch; the model's skipped images are
those of both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from jaxstyle.cli import main
from jaxstyle.io.model_file import read_model
from tests.helpers import ROOT
from tests.jobs.test_train import TINY, assert_same_params, photos  # noqa: F401 - photos is a fixture


@pytest.mark.slow
def test_two_processes_train_the_parameters_of_one(env, photos, style, tmp_path):  # noqa: F811
    (photos / "broken.jpg").write_bytes(b"not an image")  # with seed 1 at position 1 of the order: process 2's row
    argv = ["train", str(style), "--contents", str(photos), *TINY, "--steps", "3", "--quiet", "--pooling", "avg",
            "--seed", "1"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    two = tmp_path / "two.jaxstyle"
    procs = [subprocess.Popen([sys.executable, "-m", "jaxstyle", *argv, "-o", str(two), "--distributed",
                               "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    one = tmp_path / "one.jaxstyle"
    assert main([*argv, "-o", str(one)]) == 0
    (params, metadata, _), (alone, metadata_alone, _) = read_model(two), read_model(one)
    assert metadata["skipped"] == metadata_alone["skipped"] == {"count": 1, "names": [str(photos / "broken.jpg")]}
    # gloo's sums round otherwise than one process's, and Adam's first steps (g / |g|) enlarge that where a
    # gradient is small; the residual blocks' last shifts have no gradient at all beyond rounding (see test_train)
    assert_same_params(params, alone, atol=3e-4, skip=("norm_b']['beta",))
