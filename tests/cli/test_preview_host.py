"""--preview-host: the warning that anyone who reaches the page can steer the run is for hosts other
machines can reach, not for any of this machine's loopback names (127.0.0.0/8, ::1, localhost)."""

from __future__ import annotations

import socket

import pytest

from jaxstyle.config import StyleConfig
from jaxstyle.jobs import live as live_page


def said_on(host: str) -> list[str]:
    said = []
    live_page.start("t", 10, StyleConfig(), host, 0, said.append).close("done")
    return said


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "127.1.2.3"])
def test_a_loopback_host_is_served_without_the_warning(host):
    pytest.importorskip("starlette")
    said = said_on(host)
    assert len(said) == 1 and said[0].startswith("preview: http://"), said


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_every_other_host_is_warned_about(host):
    pytest.importorskip("starlette")
    said = said_on(host)
    assert said[0].startswith(f"warning: the preview listens on {host}, not only this machine"), said


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("0:0:0:0:0:0:0:1", True), ("::ffff:127.0.0.1", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("128.0.0.1", False), ("no-such-host.invalid", False),
])
def test_loopback_addresses_and_names(host, local):
    assert live_page.is_loopback(host) is local


def test_a_name_is_local_only_when_every_address_it_resolves_to_is(monkeypatch):
    addresses = {"both.test": ["127.0.0.1", "192.0.2.7"], "loop.test": ["127.0.0.1", "::1"], "out.test": ["192.0.2.7"]}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in addresses[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert [live_page.is_loopback(h) for h in ("loop.test", "both.test", "out.test", "none.test")] == [
        True, False, False, False]
