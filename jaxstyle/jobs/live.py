"""A job's live preview page (``--preview``): the server started beside the run, what the run reports
to it after every chunk, and the page's requests carried out between chunks: stop and save, a
snapshot, and new loss weights (which the engine takes without compiling anything: they are traced
inputs of the compiled loop; the optimizer starts afresh from the current image).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jaxstyle.config import StyleConfig
from jaxstyle.engine import memory
from jaxstyle.engine.stylize import STEERABLE
from jaxstyle.io import images, storage
from jaxstyle.preview.live import LiveRun
from jaxstyle.preview.server import PreviewServer, is_loopback


class StopRequested(BaseException):
    """The page asked the run to stop and save what it has (a BaseException, like KeyboardInterrupt:
    a batch's handler of failed pairs must not take it for one)."""


class Page:
    """A started page: its :class:`LiveRun`, its server, and the run's side of the controls."""

    def __init__(self, live: LiveRun, server: PreviewServer, notify: Callable[[str], None]):
        self.live, self.server, self.notify = live, server, notify
        self.closed = False
        self.changes: list[dict] = []  # the weights changed, and when: for a report
        self.steered: dict[str, float] = {}  # the weights changed so far, their newest values

    def progressed(self, progress, image: Callable, output: storage.Location, label: str | None = None) -> None:
        """After a chunk: report it; save a snapshot, or stop, if the page asked."""
        self.live.report(progress.step, terms=progress.terms, image=progress.image, label=label,
                         memory=memory.in_use())
        self.controls(progress.step, image, output)

    def controls(self, step: int, image: Callable | None, output: storage.Location) -> None:
        """Carry out the page's snapshot (``image()`` saved beside ``output``) and stop requests."""
        if self.live.take_snapshot() and image is not None:
            path = snapshot_path(output, step)
            images.save_image(path, image())
            self.live.say(f"step {step}: snapshot saved ({path.name})")
            self.notify(f"snapshot at step {step}: {path}")
        if self.live.take_stop():
            self.live.say(f"step {step}: stopping")
            raise StopRequested

    def steer(self, step: int, log: Callable[[str], None]) -> dict | None:
        """The weights the page changed since the last chunk (recorded in the log and on the page)."""
        change = self.live.take_weights()
        if change:
            said = ", ".join(f"{name} {value:.4g}" for name, value in change.items())
            message = f"step {step}: {said} from the preview page; the optimizer starts afresh"
            self.live.say(message)
            log(message)
            self.changes.append({"step": step, **change})
            self.steered.update(change)
        return change

    def close(self, status: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.live.end(status)
        if self.live.watched():  # let a watching page fetch the last image and status
            time.sleep(1.0)
        self.server.stop()


def snapshot_path(output: storage.Location, step: int) -> storage.Location:
    """``<output stem>_snapshot_<step>.png`` beside the output, never one that exists."""
    n, path = 0, output.with_name(f"{output.stem}_snapshot_{step:05d}.png")
    while storage.exists(path):
        n += 1
        path = output.with_name(f"{output.stem}_snapshot_{step:05d}_{n}.png")
    return path


def start(title: str, total: int, config: StyleConfig, host: str, port: int, notify: Callable[[str], None],
          steerable: bool = True) -> Page:
    """Serve the page for a run of ``total`` steps and say where (a warning off loopback)."""
    weights = {name: getattr(config, name) for name in STEERABLE} if steerable else {}
    live = LiveRun(title, total, weights)
    server = PreviewServer(live, host, port).start()
    if not is_loopback(host):
        notify(f"warning: the preview listens on {host}, not only this machine: anyone who can reach it and has "
               f"the URL can watch and steer the run")
    notify(f"preview: {server.url}")
    return Page(live, server, notify)
