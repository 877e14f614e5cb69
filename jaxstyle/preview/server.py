"""The preview page's server: Starlette on uvicorn, in a daemon thread beside the run.

Safe by default: it listens on 127.0.0.1 only (another address only when asked, with a warning);
every request, the event stream included, must carry the run's random token (``?token=`` or the
``X-Jaxstyle-Token`` header); a request whose ``Host`` is not the server's own (DNS rebinding) or
whose ``Origin`` is another site's is refused; controls are JSON posts (a cross-site form cannot send
one); and nothing the page sends names a file: it can only ask to stop, to save a snapshot (the
run picks the name) or to change the steerable weights.

Every value a request carries gets a short answer, never a server error: ``/state?since=N`` takes
ASCII digits only (N past the points reported: none; anything else, "²" or "-1" included, is a 400
with a JSON error), ``/recent/N.png`` a 404 for any N that is not a finished item's, and a control
body larger than :data:`MAX_BODY` a 413, one that is not a JSON object a 400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
import socket
import threading
from importlib import resources

from jaxstyle.preview.live import LiveRun

LOOPBACK = "127.0.0.1"
MAX_BODY = 64 * 1024  # a control is a few dozen bytes
MAX_DIGITS = 18  # a longer number is past any count of points or items: it saturates
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() and \d also take "²" and "٣"


def whole_number(text: str | None) -> int | None:
    """``text`` as a whole number >= 0 (ASCII digits, leading zeros allowed; more than
    :data:`MAX_DIGITS` significant ones give ``10 ** MAX_DIGITS``), or None when it is not one."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else 10 ** MAX_DIGITS


def require_server():
    """(starlette, uvicorn), or a one-line hint to install the preview extra."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise ValueError("--preview needs Starlette and uvicorn: pip install 'jaxstyle[preview]'") from None
    return uvicorn


def _page() -> bytes:
    return resources.files("jaxstyle.preview").joinpath("page.html").read_bytes()


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only: a loopback address (127.0.0.0/8, also as
    ``::ffff:127.x.y.z``; ``::1``), or a name that resolves to loopback addresses only (``localhost``).
    A name that does not resolve is not; nor is ``0.0.0.0`` or ``::`` (every interface)."""
    try:
        return _loopback_address(host)
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return False
    return bool(found) and all(_loopback_address(address) for address in found)


def _loopback_address(text: str) -> bool:
    """Whether the address ``text`` is a loopback one (ValueError: it is not an address)."""
    address = ipaddress.ip_address(text.partition("%")[0])  # without an IPv6 scope (fe80::1%eth0)
    mapped = getattr(address, "ipv4_mapped", None)
    return (address if mapped is None else mapped).is_loopback


class PreviewServer:
    """Serves ``live`` on ``host``:``port`` (0: any free port) until :meth:`stop`."""

    def __init__(self, live: LiveRun, host: str = LOOPBACK, port: int = 0):
        uvicorn = require_server()
        self.live, self.host = live, host
        self.token = secrets.token_urlsafe(18)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise ValueError(f"--preview: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._socket.listen(64)  # connections wait in the backlog until the server thread takes them
        self.port = self._socket.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.origin = f"http://{shown}:{self.port}"
        self._loopback = is_loopback(self.host)  # resolved once, not per request
        self._hosts = {f"{shown}:{self.port}", f"localhost:{self.port}", f"127.0.0.1:{self.port}",
                       f"[::1]:{self.port}"}
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="jaxstyle-preview", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.origin}/?token={self.token}"

    def start(self, timeout: float = 10.0) -> PreviewServer:
        """Start serving; returns once the server accepts requests."""
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise ValueError(f"--preview: the server on {self.host}:{self.port} did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def allowed(self, headers: dict, token: str | None) -> str | None:
        """Why a request is refused (None: it is not). On loopback the ``Host`` must be this server's
        (a page of another site that rebinds its name to 127.0.0.1 is refused); anywhere, an
        ``Origin`` must be the page's own, and the token must match."""
        host = headers.get("host", "")
        if self._loopback and host not in self._hosts:
            return "unknown host"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return "another origin"
        if not token or not secrets.compare_digest(token.encode(), self.token.encode()):
            return "no or wrong token"
        return None

    def _app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        live = self.live

        def guard(request: Request) -> Response | None:
            token = request.query_params.get("token") or request.headers.get("x-jaxstyle-token")
            why = self.allowed(dict(request.headers), token)
            return None if why is None else Response(f"forbidden: {why}\n", status_code=403,
                                                     media_type="text/plain")

        async def page(request: Request):
            return guard(request) or Response(_page(), media_type="text/html",
                                              headers={"Cache-Control": "no-store",
                                                       "Content-Security-Policy": "default-src 'self'; "
                                                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                                       "img-src 'self' blob:; connect-src 'self'",
                                                       "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

        async def state(request: Request):
            refused = guard(request)
            if refused:
                return refused
            since = whole_number(request.query_params.get("since", "0"))
            if since is None:
                return JSONResponse({"error": "expected since as a whole number >= 0"}, status_code=400)
            return JSONResponse(live.state(since))

        async def events(request: Request):
            refused = guard(request)
            if refused:
                return refused

            async def stream():
                last = None
                while not await request.is_disconnected():
                    news = live.news(last)
                    if news is not None:
                        last = news
                        yield f"data: {json.dumps(news)}\n\n"
                        if news["status"] != "running":
                            return
                    await asyncio.sleep(0.1)

            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

        async def image(request: Request):
            refused = guard(request)
            if refused:
                return refused
            which = request.path_params.get("index")
            index = None if which is None else whole_number(which)
            if which is not None and index is None:
                return Response("no such image\n", status_code=404, media_type="text/plain")
            data = await asyncio.to_thread(live.image_png if index is None else lambda: live.recent_png(index))
            if data is None:
                return Response("no image yet\n", status_code=404, media_type="text/plain")
            return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

        async def control(request: Request):
            refused = guard(request)
            if refused:
                return refused
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"error": "expected application/json"}, status_code=415)
            data = b""
            async for chunk in request.stream():
                data += chunk
                if len(data) > MAX_BODY:
                    return JSONResponse({"error": f"expected a body of at most {MAX_BODY} bytes"}, status_code=413)
            try:
                body = json.loads(data)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5000-digit number, nested too deep
                return JSONResponse({"error": "expected a JSON body"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "expected a JSON object"}, status_code=400)
            error = live.request(body.get("action"), body.get("weights"))
            return JSONResponse({"error": error} if error else {"ok": True}, status_code=400 if error else 200)

        return Starlette(routes=[Route("/", page), Route("/state", state), Route("/events", events),
                                 Route("/image.png", image), Route("/recent/{index}.png", image),
                                 Route("/control", control, methods=["POST"])])
