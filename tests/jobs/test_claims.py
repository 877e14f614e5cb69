"""Claim files: two runs on one output folder share the pairs; dead or silent holders are taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from jaxstyle.jobs.claims import BUSY, CLAIMED, Claims, claim_path


def test_second_run_finds_the_pair_busy_until_released(tmp_path):
    output = tmp_path / "sub" / "a.png"
    with Claims() as first, Claims() as second:
        assert first.try_claim(output) == CLAIMED
        assert claim_path(output).exists() and claim_path(output).parent == output.parent
        assert first.try_claim(output) == CLAIMED  # our own claim
        assert second.try_claim(output) == BUSY
        assert second.holder(output)["pid"] == os.getpid()
        first.release(output)
        assert not claim_path(output).exists()
        assert second.try_claim(output) == CLAIMED
    assert not claim_path(output).exists()  # close() released it


def test_release_leaves_a_claim_that_was_taken_over(tmp_path):
    output = tmp_path / "a.png"
    with Claims(stale_seconds=0.5) as slow, Claims(stale_seconds=0.5) as other:
        slow._stop.set()  # no refresh: the claim goes stale
        assert slow.try_claim(output) == CLAIMED
        time.sleep(0.8)
        assert other.try_claim(output) == CLAIMED
        slow.release(output)
        assert other.holder(output)["token"] == other._token


@pytest.mark.slow
def test_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    output = tmp_path / "a.png"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    claim_path(output).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "x"}))
    with Claims(stale_seconds=3600) as claims:
        assert claims.try_claim(output) == CLAIMED


def test_refreshed_claim_of_another_host_stays_busy_until_stale(tmp_path):
    output = tmp_path / "a.png"
    claim_path(output).write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "x"}))
    with Claims(stale_seconds=30) as claims:
        assert claims.try_claim(output) == BUSY
        old = time.time() - 31
        os.utime(claim_path(output), (old, old))
        assert claims.try_claim(output) == CLAIMED


def test_holder_refreshes_its_claims(tmp_path):
    output = tmp_path / "a.png"
    with Claims(stale_seconds=0.6) as holder, Claims(stale_seconds=0.6) as other:
        assert holder.try_claim(output) == CLAIMED
        for _ in range(5):
            time.sleep(0.3)
            assert other.try_claim(output) == BUSY  # 1.5 s > stale_seconds: only the refresh keeps it
