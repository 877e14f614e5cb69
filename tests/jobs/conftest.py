"""Fixtures of the job tests: a style image, and a cache folder of each test's own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import smooth_image


@pytest.fixture()
def style(tmp_path):
    path = tmp_path / "painting.png"
    Image.fromarray((smooth_image(40, 40, 2) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
