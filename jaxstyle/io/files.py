"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (an encoder); when the
    block ends without an exception the file is fsynced and renamed to ``path``.

    An exception or interruption (KeyboardInterrupt included) removes the temporary file
    and leaves any existing ``path`` untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left beside ``path`` (``.NAME.*.part``): a
    writer killed outright (SIGKILL, power loss) cannot remove its own. Only for a caller that is
    the one writer of ``path`` (e.g. under a claim): another writer's file in progress would go too.
    Returns the files removed."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file and rename it to ``path`` only if it succeeds
    (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
