"""Signals: SIGTERM and SIGINT become a KeyboardInterrupt that the subcommands turn into a kept
result and exit status 130."""

from __future__ import annotations

import signal
import sys
import threading


class Interruptions:
    """SIGTERM (a scheduler's preemption, `kill`) and SIGINT (Ctrl-C) raise KeyboardInterrupt.

    A signal handler raises wherever the main thread is; when that is a garbage-collection
    callback (JAX installs one) or a ``__del__``, Python reports the exception as unraisable
    and carries on. So the request is also remembered, such reports of it are kept quiet, and
    :func:`stop_if_interrupted` (between chunks of steps, after each pair) raises it again.
    Only in the main thread; a SIGINT that the parent shell made ignored stays ignored.
    """

    requested = threading.Event()

    def __enter__(self):
        self.installed = threading.current_thread() is threading.main_thread()
        Interruptions.requested.clear()
        if self.installed:
            self.previous_term = signal.signal(signal.SIGTERM, self.handle)
            self.previous_int = signal.getsignal(signal.SIGINT)
            if self.previous_int is signal.default_int_handler:
                signal.signal(signal.SIGINT, self.handle)
            self.previous_hook, sys.unraisablehook = sys.unraisablehook, self.unraisable
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous_term)
            signal.signal(signal.SIGINT, self.previous_int)
            sys.unraisablehook = self.previous_hook

    @staticmethod
    def handle(signum, frame):
        Interruptions.requested.set()
        raise KeyboardInterrupt

    def unraisable(self, report):
        if not (isinstance(report.exc_value, KeyboardInterrupt) and Interruptions.requested.is_set()):
            self.previous_hook(report)


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a signal that landed where Python swallows exceptions."""
    if Interruptions.requested.is_set():
        raise KeyboardInterrupt
