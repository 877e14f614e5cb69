"""Per-output claim files, so that two runs on one output folder share the pairs instead of
computing them twice (a restarted cluster job while the old one still runs).

A run claims a pair's output before computing it by creating ``.<output name>.claim`` beside
it with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ filesystems), keeps the claim's
modification time fresh from a background thread while it holds it, and deletes it when the
pair is finished. A claim is *stale*, and may be taken over, when its holder is a process on
this host that no longer exists, or when it has not been refreshed for ``stale_seconds``
(a holder on another host that died or was preempted). Taking over replaces the file with
this run's own claim and reads it back: of two runs taking over the same stale claim at once,
the one whose claim is read back proceeds.

Claims only avoid duplicate work; correctness never depends on them: outputs are written
atomically, so even a pair computed twice leaves one whole file.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

CLAIMED, BUSY = "claimed", "busy"


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.claim")


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


class Claims:
    """The claims one run holds; use as a context manager (``close`` releases them all)."""

    def __init__(self, *, stale_seconds: float = 60.0):
        if stale_seconds <= 0:
            raise ValueError(f"expected stale_seconds > 0, got {stale_seconds}")
        self.stale_seconds = stale_seconds
        self._host, self._pid = socket.gethostname(), os.getpid()
        self._token = uuid.uuid4().hex
        self._held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._refresh, name="jaxstyle-claims", daemon=True)
        self._heartbeat.start()

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _content(self) -> bytes:
        return json.dumps({"host": self._host, "pid": self._pid, "token": self._token,
                           "since": time.time()}).encode()

    def holder(self, output: Path) -> dict | None:
        """Who holds ``output``'s claim (host, pid), or None when nobody does."""
        try:
            return json.loads(claim_path(output).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # being written right now, or garbage: treat as held, unknown holder
            return {}

    def _is_stale(self, path: Path, holder: dict) -> bool:
        if holder.get("host") == self._host and isinstance(holder.get("pid"), int):
            if not _alive_here(holder["pid"]):
                return True
        try:
            return time.time() - path.stat().st_mtime > self.stale_seconds
        except FileNotFoundError:
            return True

    def try_claim(self, output: Path) -> str:
        """``CLAIMED`` (this run may compute ``output``) or ``BUSY`` (another live run holds it)."""
        path = claim_path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a claim released between our open and our read: try again
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.holder(output)
                if holder is None:
                    continue
                if holder.get("token") == self._token:
                    return CLAIMED
                return self._take_over(output) if self._is_stale(path, holder) else BUSY
            with os.fdopen(fd, "wb") as f:
                f.write(self._content())
            with self._lock:
                self._held.add(output)
            return CLAIMED
        return BUSY

    def _take_over(self, output: Path) -> str:
        path = claim_path(output)
        tmp = path.with_name(f"{path.name}.{self._token}")
        tmp.write_bytes(self._content())
        os.replace(tmp, path)
        time.sleep(0.05)  # a rival taking over at the same moment replaces ours now, not after our read
        if (self.holder(output) or {}).get("token") != self._token:
            return BUSY
        with self._lock:
            self._held.add(output)
        return CLAIMED

    def release(self, output: Path) -> None:
        with self._lock:
            self._held.discard(output)
        path = claim_path(output)
        if (self.holder(output) or {}).get("token") == self._token:
            path.unlink(missing_ok=True)

    def _refresh(self) -> None:
        while not self._stop.wait(self.stale_seconds / 6):
            with self._lock:
                held = list(self._held)
            for output in held:
                try:
                    os.utime(claim_path(output))
                except OSError:
                    pass  # taken over after all (we were too slow); the pair's write is still atomic

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = list(self._held)
        for output in held:
            self.release(output)


class NoClaims:
    """The claims interface for outputs in an object store, where a claim file cannot be created
    atomically only-if-absent through fsspec: every pair is this run's. Two runs on one bucket
    prefix at once may then compute a pair twice; each output object is still written whole."""

    def __enter__(self) -> NoClaims:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def try_claim(self, output) -> str:
        return CLAIMED

    def release(self, output) -> None:
        pass
