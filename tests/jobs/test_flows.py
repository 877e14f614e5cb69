"""The flow provider: computed ahead in the run's order but boundedly, cached, errors in one line."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from jaxstyle.jobs.flows import FlowProvider, needed_flows


def frames(n=30, h=8, w=8):
    return [np.full((h, w, 3), i, np.uint8) for i in range(n)]


def test_needed_flows_cover_neighbours_and_long_term_frames_in_order():
    assert needed_flows(3, (1,), 1, False) == [(1, 0), (0, 1), (2, 1), (1, 2)]
    assert needed_flows(4, (1, 2), 1, False)[-4:] == [(3, 2), (2, 3), (3, 1), (1, 3)]
    assert needed_flows(4, (1, 2), 3, False) == needed_flows(4, (1,), 1, False)  # multi-pass: neighbours only


def test_computes_ahead_but_no_further_than_asked_plus_the_window(tmp_path):
    calls = []
    lock = threading.Lock()

    def flow(a, b):
        with lock:
            calls.append((int(a[0, 0, 0]), int(b[0, 0, 0])))
        return np.full((8, 8, 2), float(a[0, 0, 0]) - float(b[0, 0, 0]), np.float32)

    provider = FlowProvider(frames(), compute=flow, cache=tmp_path / "cache", ahead=4, keep=3)
    order = needed_flows(30, (1,), 1, False)
    provider.prefetch(order)
    np.testing.assert_array_equal(provider(1, 0), 1.0)
    time.sleep(0.3)
    assert len(calls) <= 1 + 4 + 1  # the first pair and the window after it
    for a, b in order[:10]:
        assert provider(a, b)[0, 0, 0] == a - b
    provider.close()
    assert provider.held <= 3  # memory holds the newest few only
    # a new provider on the same cache computes nothing
    again = FlowProvider(frames(), compute=lambda a, b: pytest.fail("computed again"), cache=tmp_path / "cache")
    again.prefetch(order[:10])
    assert again(5, 4)[0, 0, 0] == 1.0 and again.computed == 0
    again.close()


def test_an_error_in_the_flow_thread_reaches_the_run_as_one_line():
    def broken(a, b):
        raise RuntimeError("OpenCV(5.0) error: (-215:Assertion failed)\nsecond line")

    provider = FlowProvider(frames(4), compute=broken)
    provider.prefetch(needed_flows(4, (1,), 1, False))
    with pytest.raises(ValueError, match=r"^the optical flow from frame 1 to 0 failed: second line$"):
        provider(1, 0)
    provider.close()


def test_a_flow_of_the_wrong_shape_is_refused():
    provider = FlowProvider(frames(2), compute=lambda a, b: np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="expected finite"):
        provider(1, 0)
    provider.close()
