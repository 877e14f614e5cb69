"""Fixtures of the command-line tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import smooth_image


@pytest.fixture()
def images(tmp_path):
    """A content photo (48x64 JPEG) and a style painting (40x40 PNG) in the test's folder."""
    content, style = tmp_path / "photo.jpg", tmp_path / "painting.png"
    Image.fromarray((smooth_image(48, 64, 1) * 255).astype(np.uint8)).save(content)
    Image.fromarray((smooth_image(40, 40, 2) * 255).astype(np.uint8)).save(style)
    return content, style
