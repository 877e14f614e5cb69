"""The live page of a batch: the pair being worked on, the pairs finished, and Stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import StyleConfig
from jaxstyle.jobs.batch import BatchJob, run_batch_job
from tests.helpers import drive_preview, smooth_image

pytest.importorskip("starlette")


def test_a_batch_shows_its_pairs_and_stops_with_the_report_written(env, tmp_path):
    photos, art = tmp_path / "photos", tmp_path / "art"
    photos.mkdir(), art.mkdir()
    for i in range(4):
        Image.fromarray((smooth_image(24, 32, i) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    Image.fromarray((smooth_image(32, 32, 9) * 255).astype(np.uint8)).save(art / "a.png")
    said, seen = [], {}
    watcher = threading.Thread(target=drive_preview, args=(said, seen, lambda s: s["step"] >= 1 and s["recent"]),
                               daemon=True)
    watcher.start()
    report = run_batch_job(BatchJob(out_dir=str(tmp_path / "out"), contents=str(photos), styles=str(art),
                                    config=StyleConfig(iterations=300, style_loss="gram"), size=32, batch_size=1,
                                    preview=0),
                           notify=said.append)
    watcher.join(10)
    assert seen["total"] == 4 and seen["label"].endswith("/300") and seen["image"] == b"\x89PNG"
    assert any("stopped from the preview page" in m for m in said)
    summary = report["summary"]
    assert 1 <= summary["done"] < 4 and summary["pending"] == 4 - summary["done"]
