"""The network a job runs with: a weights file the user names, else the cached weights,
fetched, verified and converted on first use (:mod:`jaxstyle.weights.fetch`)."""

from __future__ import annotations

from collections.abc import Callable

from jaxstyle.model.vgg import VGG19
from jaxstyle.weights import fetch


def load_network(path: str | None = None, *, pooling: str = "max", preprocessing: str | None = None,
                 log: Callable[[str], None] = lambda message: None) -> VGG19:
    """VGG-19 from ``path`` (any supported format or a URL), else from the cache, fetching it there
    first when it is missing (``log`` hears what the fetch did)."""
    if path is None and not fetch.cached_weights_path().exists():
        fetch.fetch_weights(log=log)
    return fetch.load_vgg19(path, pooling=pooling, preprocessing=preprocessing)
