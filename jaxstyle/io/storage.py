"""Where files live: local paths, or URLs (``s3://``, ``gs://``, ``http(s)://``, ``memory://``) read
and written through fsspec. The only module that knows about URLs and object stores.

A *location* is a :class:`pathlib.Path` or a :class:`Url`; :func:`location` makes one from what
a user typed (``file://`` URLs become paths). ``Url`` offers the part of ``Path``'s interface that
names need (``/``, ``name``, ``stem``, ``suffix``, ``parent``, ``with_name``), so code that builds
output names works on both.

Guarantees, the same on a bucket as on a disk:

* a written file appears whole or not at all: on disk a temporary file renamed over the target,
  in a bucket one upload of the complete bytes (an object store never shows a partial object);
* every failure is a :class:`StorageError` (a ``ValueError``) with one line that names the URL and
  the problem (no such bucket or object, no credentials, access denied, network failure); the
  message never carries credentials;
* transient failures (connection, timeout, server errors) are retried ``len(RETRY_DELAYS)`` times,
  waiting the given seconds between tries; missing objects and denied access are not retried.

URLs need fsspec and the filesystem package of their scheme (s3fs, gcsfs, aiohttp), installed by
``pip install 'jaxstyle[cloud]'``. Credentials are found the providers' usual ways (AWS: the
``AWS_*`` environment variables, ``~/.aws``, instance roles, ``AWS_ENDPOINT_URL`` for other
S3-compatible servers; Google Cloud: application default credentials, the metadata server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from jaxstyle.io.files import atomic_write as _atomic_write_file

CLOUD_EXTRA = "pip install 'jaxstyle[cloud]'"
READ_ONLY_PROTOCOLS = frozenset({"http", "https"})
RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0)  # seconds between tries of a transient failure
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")  # two letters at least: C:\ is a drive, not a scheme
_USERINFO = re.compile(r"//[^/@\s]+@")
_CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "DefaultCredentialsError", "RefreshError", "NoAuthTokenError")
_TRANSIENT_ERRORS = ("BotoCoreError", "ClientError", "TransportError", "HttpError", "ServerDisconnectedError",
                     "ChecksumError")  # names only: botocore, aiohttp and google-auth need not be installed
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)

T = TypeVar("T")


class StorageError(ValueError):
    """A location that cannot be read or written; the message names it and the problem."""


def is_url(text: str | os.PathLike) -> bool:
    return isinstance(text, Url) or (isinstance(text, str) and bool(_URL.match(text)))


@dataclasses.dataclass(frozen=True, order=True)
class Url:
    """A file or folder in a filesystem fsspec reaches: ``protocol://path`` (no trailing slash)."""

    url: str

    def __post_init__(self):
        match = _URL.match(self.url)
        if not match:
            raise ValueError(f"expected a URL like s3://bucket/key, got {self.url!r}")
        rest = self.url[match.end():]
        clean = rest.rstrip("/") or rest
        object.__setattr__(self, "url", f"{match.group(1).lower()}://{clean}")

    def __str__(self) -> str:
        return self.url

    def __fspath__(self):  # a URL must never be opened as a local file by accident
        raise TypeError(f"{self.url} is a URL, not a local path: read it through jaxstyle.io.storage")

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def path(self) -> str:
        """Everything after ``protocol://`` (for buckets: ``bucket/key``)."""
        return self.url.split("://", 1)[1]

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def root(self) -> str:
        """The bucket (or host) part of the path."""
        return self.path.split("/", 1)[0]

    @property
    def parent(self) -> Url:
        head = posixpath.dirname(self.path)
        return Url(f"{self.protocol}://{head}") if head else self

    def with_name(self, name: str) -> Url:
        return self.parent / name

    def normalized(self) -> Url:
        """``..`` and ``.`` folded away (a bucket has no symlinks, so this is where it points)."""
        path = posixpath.normpath(self.path)
        return Url(f"{self.protocol}://{'' if path == '.' else path}")

    def __truediv__(self, entry: str) -> Url | Path:
        return join(self, entry)


Location = Path | Url


def location(text: str | os.PathLike | Url) -> Location:
    """A :class:`Url` for ``scheme://...`` (``file://`` becomes a local path), else a :class:`Path`."""
    if isinstance(text, Url | Path):
        return text
    text = os.fspath(text)
    if is_url(text):
        if text.lower().startswith("file://"):
            parts = urlsplit(text)
            return Path(unquote(parts.path))
        return Url(text)
    return Path(text)


def join(base: Location, entry: str) -> Location:
    """``entry`` relative to the folder ``base``: a URL or an absolute path stands for itself; under a
    URL, ``/key`` means the bucket's (host's) root, as in a web page."""
    entry = str(entry)
    if is_url(entry):
        return location(entry)
    if isinstance(base, Path):
        return base / entry
    if entry.startswith("/"):
        return Url(f"{base.protocol}://{base.root}/{entry.lstrip('/')}").normalized()
    return Url(f"{base.url}/{entry}").normalized()  # a key holding ".." would be taken literally by the store


def inside(folder: Location, target: Location) -> bool:
    """Whether ``target`` (``..`` and, on disk, symlinks followed) lies inside ``folder``."""
    if isinstance(folder, Path) and isinstance(target, Path):
        return folder.resolve() in target.resolve().parents
    if isinstance(folder, Url) and isinstance(target, Url):
        root, path = folder.normalized(), target.normalized()
        return path.protocol == root.protocol and path.path.startswith(root.path.rstrip("/") + "/")
    return False


def same_file(a: Location, b: Location) -> bool:
    """Whether ``a`` and ``b`` name one existing file (on disk) or one object (URLs, by name)."""
    if isinstance(a, Url) or isinstance(b, Url):
        return isinstance(a, Url) and isinstance(b, Url) and a.normalized() == b.normalized()
    return a.exists() and b.exists() and a.samefile(b)


def _describe(exc: BaseException, where: Location, attempts: int) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = _USERINFO.sub("//", (str(exc).strip().splitlines() or [""])[0])[:200]
    if isinstance(exc, ImportError):
        scheme = where.protocol if isinstance(where, Url) else "file"
        return f"{where}: {scheme}:// URLs need the cloud extra: {CLOUD_EXTRA} ({detail})"
    if names & set(_CREDENTIAL_ERRORS):
        return f"{where}: no credentials found for {where.protocol}:// (see the README, 'Credentials')"
    if isinstance(exc, FileNotFoundError):
        return f"{where}: {'no such bucket' if 'bucket' in detail.lower() else 'no such file or object'}"
    if isinstance(exc, PermissionError):
        return f"{where}: access denied (check the credentials and the bucket's permissions)"
    if isinstance(exc, IsADirectoryError):
        return f"{where}: is a folder, expected a file"
    tries = f" after {attempts} tries" if attempts > 1 else ""
    return f"{where}: {'network or server failure' if _transient(exc) else 'failed'}{tries} " \
           f"({type(exc).__name__}{': ' + detail if detail else ''})"


def _transient(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(_CREDENTIAL_ERRORS) or isinstance(exc, (*_PERMANENT_OS_ERRORS, ImportError)):
        return False
    return isinstance(exc, OSError | TimeoutError | ConnectionError) or bool(names & set(_TRANSIENT_ERRORS))


def retrying(operation: Callable[[], T], where: Location, *, delays: tuple[float, ...] | None = None) -> T:
    """``operation()``, tried again after each of ``delays`` (default :data:`RETRY_DELAYS`) seconds
    while it fails transiently; any failure ends as a one-line :class:`StorageError`."""
    delays = RETRY_DELAYS if delays is None else delays
    for attempt in range(len(delays) + 1):
        try:
            return operation()
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
            if _transient(exc) and attempt < len(delays):
                time.sleep(delays[attempt])
                continue
            raise StorageError(_describe(exc, where, attempt + 1)) from None
    raise AssertionError("unreachable")


def _filesystem(url: Url):
    """(fsspec filesystem, path inside it); StorageError naming the extra when it is missing."""
    def open_fs():
        import fsspec

        return fsspec.core.url_to_fs(url.url)

    try:
        return open_fs()
    except ImportError as exc:
        raise StorageError(_describe(exc, url, 1)) from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise StorageError(f"{url}: {exc}") from None


# ----------------------------------------------------------------------------- reading

def read_bytes(where: Location, *, limit: int | None = None) -> bytes:
    """The file's bytes (only the first ``limit`` if given)."""
    if isinstance(where, Path):
        with open(where, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    fs, path = _filesystem(where)
    return retrying(lambda: fs.cat_file(path, start=None if limit is None else 0, end=limit), where)


def read_text(where: Location) -> str:
    data = read_bytes(where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StorageError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def exists(where: Location) -> bool:
    if isinstance(where, Path):
        return where.exists()
    fs, path = _filesystem(where)
    fs.invalidate_cache(posixpath.dirname(path))  # another process may have written it since we listed
    return retrying(lambda: fs.exists(path), where)


def is_folder(where: Location) -> bool:
    if isinstance(where, Path):
        return where.is_dir()
    fs, path = _filesystem(where)
    return retrying(lambda: fs.isdir(path), where)


def modified(where: Location) -> float | None:
    """Last modification as a POSIX timestamp; None if it does not exist (or the store cannot say)."""
    if isinstance(where, Path):
        try:
            return where.stat().st_mtime
        except FileNotFoundError:
            return None
    fs, path = _filesystem(where)

    def stamp():
        try:
            return fs.modified(path).timestamp()
        except FileNotFoundError:
            return None
        except NotImplementedError:  # http: no modification times
            return None

    return retrying(stamp, where)


def list_files(folder: Location, *, recursive: bool = False) -> list[Location]:
    """The files directly in ``folder`` (``recursive``: in it and every folder under it), sorted by name."""
    if isinstance(folder, Path):
        found = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in found if p.is_file())
    fs, path = _filesystem(folder)
    if recursive:
        entries = list(retrying(lambda: fs.find(path, detail=True), folder).values())
    else:
        entries = retrying(lambda: fs.ls(path, detail=True), folder)
    files = [e["name"] for e in entries if e.get("type") == "file"]
    if folder.protocol in READ_ONLY_PROTOCOLS:  # http listings hold whole URLs
        return sorted(Url(name) for name in files)
    return sorted(Url(f"{folder.protocol}://{name.split('://', 1)[-1].lstrip('/')}") for name in files)


@contextlib.contextmanager
def local_copy(where: Location) -> Iterator[Path]:
    """A local file with ``where``'s bytes (``where`` itself if it is local), removed afterwards."""
    if isinstance(where, Path):
        yield where
        return
    fs, path = _filesystem(where)
    folder = tempfile.mkdtemp(prefix="jaxstyle-download-")
    try:
        local = Path(folder) / (where.name or "download")
        retrying(lambda: fs.get_file(path, str(local)), where)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- writing

def _check_writable_protocol(where: Url) -> None:
    if where.protocol in READ_ONLY_PROTOCOLS:
        raise StorageError(f"{where}: {where.protocol}:// is read-only here; write to a path, s3://, gs:// "
                           f"or another writable URL")


def atomic_write(where: Location, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a buffer and put the result at ``where`` only if it succeeds: nobody
    ever sees a partial file (on disk: a temporary file renamed over the target; in a bucket: one
    upload of the whole object, which the store shows all at once or not at all)."""
    if isinstance(where, Path):
        _atomic_write_file(where, write)
        return
    _check_writable_protocol(where)
    buffer = io.BytesIO()
    write(buffer)
    data = buffer.getvalue()
    fs, path = _filesystem(where)
    retrying(lambda: fs.pipe_file(path, data), where)


def write_bytes(where: Location, data: bytes) -> None:
    atomic_write(where, lambda f: f.write(data))


def make_folder(where: Location) -> None:
    """Create a local folder (and its parents); object stores have no folders to make."""
    if isinstance(where, Path):
        where.mkdir(parents=True, exist_ok=True)
    elif where.protocol == "memory":
        fs, path = _filesystem(where)
        fs.makedirs(path, exist_ok=True)


def check_writable_folder(where: Location, what: str) -> None:
    """Fail now, not after a long run, when nothing could be written into ``where``: a read-only
    scheme, a missing bucket, no credentials, access denied (a bucket is probed by reading, never by
    writing). ``what`` names the location in the message (e.g. the output file)."""
    if isinstance(where, Path):
        if not where.is_dir():
            raise StorageError(f"{what}: folder {where} does not exist")
        if not os.access(where, os.W_OK):
            raise StorageError(f"{what}: folder {where} is not writable")
        return
    _check_writable_protocol(where)
    if where.protocol == "memory":
        return
    fs, _ = _filesystem(where)
    bucket = Url(f"{where.protocol}://{where.root}")

    def probe():
        try:
            fs.info(where.root)
        except FileNotFoundError:
            raise FileNotFoundError("no such bucket") from None

    try:
        retrying(probe, bucket)
    except StorageError as exc:
        raise StorageError(f"{what}: {exc}") from None
