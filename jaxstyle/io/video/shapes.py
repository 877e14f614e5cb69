"""The size frames are read at: the longer side ``size`` px and both sides even (H.264 4:2:0)."""

from __future__ import annotations

import numpy as np

from jaxstyle.io import images


def fitted_video_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(h, w) for a frame displayed ``height`` x ``width`` read at ``size``: the longer side ``size``
    px, up or down (as :func:`jaxstyle.io.images.fitted_shape`), the aspect ratio kept, and then both
    sides *even* (H.264 4:2:0 needs them even): the longer one rounded down, so it never exceeds
    ``size``, the shorter one to the nearest even number, at least 2. ``size=None``: the frame's own
    size, an odd side one pixel shorter (cropped, not resampled)."""
    if size is None:
        return max(2, height - height % 2), max(2, width - width % 2)
    check_size(size)
    longer = size - size % 2
    scale = longer / max(height, width)

    def even(side: int) -> int:
        return longer if side == max(height, width) else min(longer, max(2, 2 * round(side * scale / 2)))

    return even(height), even(width)


def check_size(size) -> None:
    """ValueError unless ``size`` is an integer >= 2."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2:
        raise ValueError(f"expected a frame size: an integer >= 2 px (or None), got {size!r}")


def fit(image: np.ndarray, size: int | None) -> np.ndarray:
    """float [H, W, 3] resized (Lanczos) or, for ``size=None``, cropped to even sides."""
    height, width = image.shape[:2]
    h, w = fitted_video_shape(height, width, size)
    if size is None:
        return np.ascontiguousarray(image[:h, :w])
    return images.resize_to(np.ascontiguousarray(image), h, w)
