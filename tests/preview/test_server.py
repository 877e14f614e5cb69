"""The preview server: the token, the host and origin checks, the controls, the image on demand."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette")

from jaxstyle.preview.live import LiveRun  # noqa: E402
from jaxstyle.preview.server import PreviewServer  # noqa: E402


@pytest.fixture()
def served():
    live = LiveRun("a test", 100, {"style_weight": 1e-3, "content_weight": 1.0})
    server = PreviewServer(live).start()
    yield live, server
    server.stop()


def get(url, headers=None, data=None):
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(server, body, **headers):
    return get(f"{server.origin}/control?token={server.token}", {"Content-Type": "application/json", **headers},
               json.dumps(body).encode())


def test_every_path_needs_the_token(served):
    live, server = served
    for path in ("/", "/state", "/events", "/image.png", "/recent/0.png"):
        assert get(f"{server.origin}{path}")[0] == 403
        assert get(f"{server.origin}{path}?token=wrong")[0] == 403
    assert get(f"{server.origin}/control", {"Content-Type": "application/json"}, b"{}")[0] == 403
    status, body = get(server.url)
    assert status == 200 and b"<title>jaxstyle preview</title>" in body
    assert get(f"{server.origin}/state", {"X-Jaxstyle-Token": server.token})[0] == 200


def test_other_origins_and_hosts_are_refused(served):
    live, server = served
    assert get(f"{server.origin}/state?token={server.token}", {"Origin": "http://evil.example"})[0] == 403
    assert get(f"{server.origin}/state?token={server.token}", {"Host": "evil.example"})[0] == 403  # DNS rebinding
    assert get(f"{server.origin}/state?token={server.token}", {"Origin": server.origin})[0] == 200
    assert post(server, {"action": "stop"}, Origin="http://evil.example")[0] == 403
    assert not live.take_stop()


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost"])
def test_every_loopback_bind_refuses_a_rebound_host(host):
    server = PreviewServer(LiveRun("a test", 10, {}), host).start()
    try:
        url = f"{server.origin}/state?token={server.token}"
        assert get(url, {"Host": "evil.example"})[0] == 403  # DNS rebinding, whatever loopback name is bound
        assert get(url)[0] == 200
    finally:
        server.stop()


def test_controls_reach_the_run_once_and_bad_ones_are_refused(served):
    live, server = served
    assert post(server, {"action": "weights", "weights": {"style_weight": 0.5}})[0] == 200
    assert live.take_weights() == {"style_weight": 0.5} and live.take_weights() is None
    assert post(server, {"action": "snapshot"})[0] == 200 and live.take_snapshot() and not live.take_snapshot()
    for body in ({"action": "weights", "weights": {"style_weight": -1}}, {"action": "weights", "weights": {"x": 1}},
                 {"action": "weights", "weights": {"style_weight": "1e9999"}}, {"action": "save", "path": "/etc/x"},
                 [1, 2]):
        assert post(server, body)[0] == 400, body
    assert get(f"{server.origin}/control?token={server.token}", {"Content-Type": "text/plain"}, b"stop")[0] == 415
    live.end("done")
    assert post(server, {"action": "stop"})[0] == 400  # the run has ended


def test_the_image_is_encoded_only_when_asked_and_once_per_version(served):
    live, server = served
    calls = []

    def image():
        calls.append(1)
        return np.full((8, 12, 3), 0.5, np.float32)

    live.report(5, terms={"style": 2.0, "total": 3.0}, image=image)
    assert calls == [] and not live.watched()
    for _ in range(2):
        status, data = get(f"{server.origin}/image.png?token={server.token}")
        assert status == 200 and data.startswith(b"\x89PNG")
    assert calls == [1] and live.watched()
    state = json.loads(get(f"{server.origin}/state?token={server.token}")[1])
    assert state["step"] == 5 and state["curves"] == [{"step": 5, "style": 2.0, "total": 3.0}]


def test_a_busy_port_is_a_one_line_error(served):
    live, server = served
    with pytest.raises(ValueError, match=rf"^--preview: cannot listen on 127.0.0.1:{server.port}: "):
        PreviewServer(live, port=server.port)


def test_another_host_is_served_with_a_warning_and_still_needs_the_token():
    from jaxstyle.config import StyleConfig
    from jaxstyle.jobs import live as live_page

    said = []
    page = live_page.start("t", 10, StyleConfig(), "0.0.0.0", 0, said.append)
    try:
        assert said[0].startswith("warning: the preview listens on 0.0.0.0") and "preview: http://0.0.0.0:" in said[1]
        port = page.server.port
        assert get(f"http://127.0.0.1:{port}/state")[0] == 403
        assert get(f"http://127.0.0.1:{port}/state?token={page.server.token}", {"Host": f"myhost:{port}"})[0] == 200
        assert get(f"http://127.0.0.1:{port}/state?token={page.server.token}",
                   {"Host": f"myhost:{port}", "Origin": "http://evil.example"})[0] == 403
    finally:
        page.close("done")
