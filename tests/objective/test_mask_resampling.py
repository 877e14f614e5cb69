"""Masks are resampled with filters that cannot overshoot: a hard edge between two grey levels only gets
values between them (Lanczos rang onto a third style's grey)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.io.images import resize_mask_to
from jaxstyle.objective.resample import resize_mask


@pytest.mark.parametrize("shape", [(13, 17), (64, 80), (7, 40)])
def test_mask_resize_stays_between_the_levels_of_an_edge(shape):
    mask = np.full((40, 50), 0.5, np.float32)
    mask[:, 23:] = 1.0  # a hard edge between the middle style (0.5) and the first (1)
    mask[5:9, 5:40] = 0.5
    for resized in (np.asarray(resize_mask(mask, shape)), resize_mask_to(mask, *shape),
                    resize_mask_to(np.repeat(mask[..., None], 3, -1), *shape)[..., 0]):
        assert resized.shape[:2] == shape
        assert resized.min() >= 0.5 - 1e-6 and resized.max() <= 1.0 + 1e-6, (resized.min(), resized.max())
