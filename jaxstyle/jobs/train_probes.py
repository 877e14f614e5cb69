"""The probe images a training run shows on its preview page: a few fixed pictures, and the sheet
of the network's outputs on them (one row per style, one column per probe) as it trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxstyle.io import images
from jaxstyle.io.images import ImageError
from jaxstyle.jobs.training_data import decode_content

PROBES = 4  # content images shown when none are named
ROWS = 4  # styles shown (the first ones)


def square(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of float [H, W, 3], resized to [size, size, 3]."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return images.resize_to(np.ascontiguousarray(image[top:top + side, left:left + side]), size, size)


def probe_images(named: Sequence[str] | None, sources: Sequence, size: int) -> np.ndarray | None:
    """float32 [P, size, size, 3]: the ``named`` images, else the first readable of the first
    ``PROBES`` content ``sources``; None when none of those is readable."""
    if named:
        return np.stack([square(images.load_image(path), size) for path in named])
    found = []
    for source in sources[:PROBES]:
        try:
            found.append(square(decode_content(source, size), size))
        except ImageError:  # the run reports it when the loader meets it
            continue
    return np.stack(found) if found else None


def probe_sheet(apply: Callable[[np.ndarray, np.ndarray], np.ndarray], probes: np.ndarray, styles: int) -> np.ndarray:
    """float32 [R * size, P * size, 3]: ``apply(probes, one-hot mix)`` for each of the first ``ROWS``
    styles, a row each. apply: the network, float32 [P, size, size, 3] and [P, styles] -> [P, size, size, 3]."""
    rows = []
    for style in range(min(styles, ROWS)):
        mix = np.zeros((len(probes), styles), np.float32)
        mix[:, style] = 1.0
        out = np.asarray(apply(probes, mix), np.float32)
        rows.append(np.concatenate(list(out), axis=1))
    return np.concatenate(rows, axis=0)
