"""Multi-host runs through ``jax.distributed``: start-up, this process's place, liveness, the end.

Each process stylizes a disjoint share of the pairs on its own local devices (data
parallelism by manifest sharding; no cross-host traffic during the optimisation), then
waits (:meth:`PeerWatch.finish`) until all are done, so that process 0 can merge the reports.

A process that dies must not leave the others running blind: JAX's own heartbeat only notices
after ``heartbeat_timeout_seconds`` (100 s) and then aborts the survivors. :class:`PeerWatch`
keeps a counter per process in the coordination service's key-value store, bumped every
``interval`` seconds by a background thread; a peer whose counter stops moving for
``dead_after`` seconds, or one that leaves early (:meth:`PeerWatch.leave`), is reported within
seconds. When process 0 itself dies, the coordination service goes with it and jaxlib ends the
other processes at once with its own fatal error (its ``missed_heartbeat_callback`` cannot be set
from Python in jaxlib 0.10: the status argument fails to convert).
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
from collections.abc import Callable

import jax


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the run; returns (process index, process count).

    With no arguments JAX detects the cluster itself (SLURM, Open MPI, TPU pods, and
    the ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` variables).
    """
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return jax.process_index(), jax.process_count()


def _client():
    from jax._src import distributed  # the coordination client has no public Python API yet

    return distributed.global_state.client


def barrier(name: str, timeout_seconds: float = 24 * 3600) -> None:
    """Wait until every process of the run has reached the barrier ``name`` (each name once)."""
    _client().wait_at_barrier(name, int(timeout_seconds * 1000))


class PeerFailure(RuntimeError):
    """Another process of the run died or the coordinator stopped answering."""


class PeerWatch:
    """Heartbeats of every process of a ``jax.distributed`` run, watched from a background thread.

    On a failure ``on_failure(message)`` is called once from the watch thread (the CLI uses it to
    interrupt the main thread). :meth:`finish` marks this process done and waits for the others,
    raising :class:`PeerFailure` if one of them dies meanwhile.
    """

    def __init__(self, index: int, count: int, *, interval: float = 1.0, dead_after: float = 10.0,
                 on_failure: Callable[[str], None] = lambda message: None, client=None, run: str = "jaxstyle"):
        if not 0 < interval < dead_after:
            raise ValueError(f"expected 0 < interval < dead_after, got {interval} and {dead_after}")
        self.index, self.count, self.interval, self.dead_after = index, count, interval, dead_after
        self.failure: str | None = None
        self._on_failure, self._client, self._run = on_failure, client or _client(), run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jaxstyle-peers", daemon=True)
        self._thread.start()

    def _key(self, kind: str, index: int) -> str:
        return f"{self._run}/{kind}/{index}"

    def _all(self, kind: str) -> dict[int, str]:
        """``{process index: value}`` of every key ``run/kind/*`` (one call to the coordinator)."""
        entries = self._client.key_value_dir_get(f"{self._run}/{kind}/")
        return {int(key.rsplit("/", 1)[1]): value for key, value in entries}

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            self._on_failure(message)

    def _watch(self) -> None:
        seen: dict[int, tuple[str | None, float]] = {i: (None, time.monotonic()) for i in range(self.count)}
        beat = 0
        while not self._stop.is_set():
            try:
                beat += 1
                self._client.key_value_set(self._key("alive", self.index), str(beat), allow_overwrite=True)
                alive, finished, stopped = self._all("alive"), self._all("finished"), self._all("stopped")
            except Exception as exc:  # noqa: BLE001 - the coordinator (process 1) is gone or unreachable
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._fail(f"lost the coordination service on process 1 of {self.count} ({reason})")
                return
            for i, why in sorted(stopped.items()):
                if i != self.index:
                    self._fail(f"process {i + 1} of {self.count} stopped ({why})")
                    return
            now = time.monotonic()
            for i in range(self.count):
                if i == self.index or i in finished:
                    continue
                value, since = seen[i]
                if alive.get(i) != value:
                    seen[i] = (alive.get(i), now)
                elif now - since > self.dead_after:
                    self._fail(f"process {i + 1} of {self.count} stopped responding (no heartbeat for "
                               f"{self.dead_after:g} s)")
                    return
            self._stop.wait(self.interval)

    def finish(self, timeout_seconds: float = 24 * 3600) -> None:
        """Mark this process done, then wait until every process is (PeerFailure if one dies)."""
        self._client.key_value_set(self._key("finished", self.index), "1", allow_overwrite=True)
        deadline = time.monotonic() + timeout_seconds
        while len(self._all("finished")) < self.count:
            if self.failure is not None:
                raise PeerFailure(self.failure)
            if time.monotonic() > deadline:
                raise PeerFailure(f"the other processes did not finish within {timeout_seconds:g} s")
            time.sleep(self.interval)
        self.stop()

    def leave(self, reason: str) -> None:
        """Tell the others this process is stopping early (they stop at once), and stop heartbeats."""
        self.stop()
        try:
            self._client.key_value_set(self._key("stopped", self.index), reason, allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordinator may be the one that is gone
            pass

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


def interrupt_main_then_exit(message: str, *, grace_seconds: float = 5.0, exit_code: int = 1) -> None:
    """``on_failure`` for the CLI: interrupt the main thread (it writes its report and exits through
    :func:`abandon`); if it is stuck in a long device call, exit from here after ``grace_seconds``."""
    _thread.interrupt_main()

    def last_resort():
        time.sleep(grace_seconds)
        abandon(f"{message}; stopping", exit_code)

    threading.Thread(target=last_resort, daemon=True).start()


def abandon(message: str, exit_code: int) -> None:
    """Print ``jaxstyle: error: message`` and end the process now.

    A normal exit would run JAX's shutdown barrier, which waits for the dead process's heartbeat
    timeout (100 s) and then aborts with a fatal error; outputs and reports are already on disk.
    """
    print(f"jaxstyle: error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(exit_code)
