"""PeerWatch against an in-memory stand-in for JAX's coordination key-value store."""

from __future__ import annotations

import threading
import time

import pytest

from jaxstyle.jobs.distributed import PeerFailure, PeerWatch


class Store:
    def __init__(self):
        self.values, self.lock, self.down = {}, threading.Lock(), False

    def key_value_set(self, key, value, allow_overwrite=False):
        if self.down:
            raise RuntimeError("UNAVAILABLE: Failed to send RPC to coordination service")
        with self.lock:
            self.values[key] = value

    def key_value_dir_get(self, prefix):
        if self.down:
            raise RuntimeError("UNAVAILABLE: Failed to send RPC to coordination service")
        with self.lock:
            return sorted((k, v) for k, v in self.values.items() if k.startswith(prefix))


def watches(store, count, **kw):
    failures = [[] for _ in range(count)]
    return [PeerWatch(i, count, interval=0.05, dead_after=0.5, client=store, on_failure=failures[i].append, **kw)
            for i in range(count)], failures


def test_all_finish_without_failure():
    store = Store()
    ws, failures = watches(store, 3)
    time.sleep(0.8)  # longer than dead_after: the heartbeats keep everyone alive
    threads = [threading.Thread(target=w.finish) for w in ws]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert failures == [[], [], []] and all(w.failure is None for w in ws)


def test_a_silent_process_is_reported_and_finish_raises():
    store = Store()
    ws, failures = watches(store, 3)
    ws[2].stop()  # dies: no more heartbeats
    start = time.monotonic()
    with pytest.raises(PeerFailure, match="process 3 of 3 stopped responding"):
        ws[0].finish()
    assert time.monotonic() - start < 2
    time.sleep(0.2)
    assert failures[1] == ["process 3 of 3 stopped responding (no heartbeat for 0.5 s)"]


def test_a_finished_process_is_not_waited_for_and_a_leaving_one_is_reported_at_once():
    store = Store()
    ws, failures = watches(store, 3)
    raised = []

    def finish():
        try:
            ws[1].finish()
        except PeerFailure as exc:
            raised.append(str(exc))

    threading.Thread(target=finish, daemon=True).start()
    time.sleep(0.1)
    ws[2].leave("interrupted")
    time.sleep(0.3)  # well under dead_after
    assert failures[0] == ["process 3 of 3 stopped (interrupted)"] and failures[2] == []
    assert raised == ["process 3 of 3 stopped (interrupted)"]  # 2 was waiting for 3, 1 is not waited for
    for w in ws:
        w.stop()


def test_lost_coordinator():
    store = Store()
    ws, failures = watches(store, 2)
    store.down = True
    time.sleep(0.3)
    assert failures[1] and failures[1][0].startswith("lost the coordination service on process 1 of 2 (UNAVAILABLE")


def test_bad_intervals():
    with pytest.raises(ValueError, match="0 < interval < dead_after"):
        PeerWatch(0, 2, interval=2, dead_after=1, client=Store())
