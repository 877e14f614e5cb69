"""Two small example images installed with the package, for ``jaxstyle demo`` and first tries.

* ``tubingen.jpg``: the Neckarfront in Tübingen, photograph by Andreas Praefcke, CC BY 3.0
  (https://creativecommons.org/licenses/by/3.0/), via Wikimedia Commons; resized to 512x384.
* ``starry_night.jpg``: Vincent van Gogh, "The Starry Night" (1889), public domain; resized to 512x320.

The same credits are in ``CREDITS.txt`` beside them and in the README.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CONTENT = "tubingen.jpg"
STYLE = "starry_night.jpg"
NAMES = (CONTENT, STYLE)


def example_path(name: str) -> Path:
    """The installed file of an example image (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"expected an example image in {', '.join(NAMES)}, got {name!r}")
    return Path(str(resources.files(__name__) / name))
