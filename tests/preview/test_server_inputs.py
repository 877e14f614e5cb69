"""The preview server given odd values: every query and body gets a short answer (never a 500), and
nothing reaches the run's stderr."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")

from jaxstyle.preview.live import LiveRun  # noqa: E402
from jaxstyle.preview.server import PreviewServer  # noqa: E402
from tests.preview.test_server import get, post  # noqa: E402


@pytest.fixture()
def served():
    live = LiveRun("a test", 100, {"style_weight": 1e-3})
    for step in range(1, 6):
        live.report(step, terms={"total": float(step)})
    server = PreviewServer(live).start()
    yield live, server
    server.stop()


def state(server, since: str):
    status, body = get(f"{server.origin}/state?token={server.token}&since={since}")
    return status, json.loads(body)


def test_odd_since_values_are_refused_or_clamped_never_a_server_error(served, capfd):
    live, server = served
    for since in ("%C2%B2", "%D9%A3", "%EF%BC%91", "-1", "+1", "1.5", "1e3", "nan", "", "%20", "0x1", "1_0"):
        status, body = state(server, since)  # ², Arabic-Indic 3, fullwidth 1, signs, floats, blanks
        assert status == 400 and body == {"error": "expected since as a whole number >= 0"}, since
    for since, clamped in (("0", 0), ("3", 3), ("5", 5), ("6", 5), ("9" * 5000, 5), ("0" * 5000 + "2", 2)):
        status, body = state(server, since)
        assert status == 200 and body["since"] == clamped and body["points"] == 5, since[:20]
        assert [p["step"] for p in body["curves"]] == list(range(clamped + 1, 6))
    assert capfd.readouterr().err == ""


def test_odd_image_indices_and_bodies_get_short_answers(served, capfd):
    live, server = served
    for index in ("0", "7", "9" * 5000, "-1", "%C2%B2", "1.0"):
        status, _ = get(f"{server.origin}/recent/{index}.png?token={server.token}")
        assert status == 404, index[:20]
    deep = b"[" * 20_000 + b"]" * 20_000  # past the JSON parser's recursion limit
    for body in (deep, b'{"action": "weights", "weights": {"style_weight": NaN}}',
                 b'{"action": "weights", "weights": {"style_weight": Infinity}}',
                 b'{"action": "weights", "weights": {"style_weight": 1' + b"0" * 5000 + b"}}",
                 b'{"action": "weights", "weights": {"style_weight": 1e400}}',
                 b'{"action": "weights", "weights": {"style_weight": [1]}}',
                 b'{"action": "weights", "weights": [["style_weight", 1]]}',
                 b'{"action": "weights"}', b'{"action": ["stop"]}', b'{}', b'"stop"', b"\xff\xfe", b""):
        status, answer = get(f"{server.origin}/control?token={server.token}",
                             {"Content-Type": "application/json"}, body)
        assert status == 400 and set(json.loads(answer)) == {"error"}, body[:60]
        assert len(json.loads(answer)["error"]) < 120
    status, answer = post(server, {"action": "weights", "weights": {"x" * 100_000: 1}})
    assert status == 413 or (status == 400 and len(json.loads(answer)["error"]) < 120)
    assert not live.take_stop() and live.take_weights() is None
    assert capfd.readouterr().err == ""
