"""The preview page of `jaxstyle train`: the probe sheet (one row per style, one column per probe), the
loss curves, and Stop, which keeps a checkpoint to resume and writes no model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from jaxstyle.io import images
from jaxstyle.jobs import live as live_page
from jaxstyle.jobs.train import train
from jaxstyle.jobs.train_probes import probe_images, probe_sheet, square
from tests.helpers import drive_preview, smooth_image
from tests.jobs.test_train import CONFIG, OPTIONS, photos  # noqa: F401 - photos is a fixture


def test_the_sheet_has_a_row_per_style_and_a_column_per_probe():
    probes = np.stack([np.full((4, 4, 3), v, np.float32) for v in (0.1, 0.2, 0.3)])
    sheet = probe_sheet(lambda x, mix: x * (1.0 + np.argmax(mix, axis=1))[:, None, None, None], probes, 2)
    assert sheet.shape == (8, 12, 3)
    np.testing.assert_allclose(sheet[::4, ::4, 0], [[0.1, 0.2, 0.3], [0.2, 0.4, 0.6]], rtol=1e-6)


def test_probes_are_the_first_readable_content_images_as_centre_squares(tmp_path):
    wide = smooth_image(40, 80, 1)
    Image.fromarray((wide * 255).astype(np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    probes = probe_images(None, [tmp_path / "a.png", tmp_path / "b.png"], 32)
    assert probes.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(probes[0], square(images.load_image(tmp_path / "a.png"), 32))
    assert probe_images(None, [tmp_path / "b.png"], 32) is None


@pytest.mark.slow
def test_the_page_shows_the_probes_and_its_stop_keeps_a_checkpoint(random_vgg, photos, style, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    pytest.importorskip("starlette")
    model = tmp_path / "m.jaxstyle"
    said, seen, closed = [], {}, []
    close = live_page.Page.close
    monkeypatch.setattr(live_page.Page, "close", lambda page, status: (closed.append(status), close(page, status)))
    watcher = threading.Thread(target=drive_preview, args=(said, seen, lambda s: s["step"] >= 3 and s["has_image"]),
                               daemon=True)
    watcher.start()
    result = train(style, photos, model, vgg=random_vgg, config=CONFIG, steps=100000, preview=0,
                   notify=said.append, **OPTIONS)
    watcher.join(10)
    assert result.status == "stopped" and 3 <= result.steps < 100000 and closed == ["stopped"]
    assert seen["image"] == b"\x89PNG" and seen["total"] == 100000 and seen["label"].startswith("epoch ")
    assert seen["curves"] and {"step", "total", "content", "style", "tv"} <= seen["curves"][-1].keys()
    folder = tmp_path / "m.jaxstyle.jaxstyle-train"
    assert result.checkpoint == folder / f"step-{result.steps:08d}.ckpt" and result.checkpoint.exists()
    assert not model.exists()
    assert said[-1] == (f"stopped from the preview page at step {result.steps}/100000: checkpoint {result.checkpoint}; "
                        f"run the same command to resume (or with --steps {result.steps} to write the model as it is)")

