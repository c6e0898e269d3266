"""What runs in a web UI training's child process (jobs.py starts it with multiprocessing's "spawn").

The child is a fresh interpreter, as `tistudio train` is: its own GIL, torch's thread count and
OpenMP's idle policy as the CLI has them, the model loaded and owned by the run. Measured on
the toy model (docs/webui.md), a run trained in a thread of the server was slower than the CLI's;
there it shared the one GIL with gradio's threads and the page's polling.

It talks to the server over two pipes: events go back in batches ("events", [...]), then one last
("finished", run_dir) or ("failed", one line); the server sends "stop" to interrupt, and the run
also stops (saving, so it can be resumed) when the server is gone. This module imports only the
standard library and the leaves at load: torch must load after quiet_openmp()."""
from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, wait

from ..errors import TIStudioError
from ..events import Event, Progress, StopToken

FLUSH_SECONDS = 0.5   # the page polls every second; a toy step takes ~11 ms


class Sender:
    """The run's callback: Progress events are sent at most every FLUSH_SECONDS, in one message
    (one pickle and one write instead of ~45); the first step and any other event go at once, after
    those before them."""

    def __init__(self, conn: Connection, clock=time.monotonic):
        self._conn, self._clock = conn, clock
        self._pending: list[Event] = []
        self._sent = float("-inf")

    def __call__(self, event: Event) -> None:
        self._pending.append(event)
        if not isinstance(event, Progress) or self._clock() - self._sent >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.send(("events", self._pending))
            self._pending = []
        self._sent = self._clock()

    def send(self, message) -> None:
        """A server that is gone hears nothing more; the run goes on to its save (the watcher has
        asked it to stop)."""
        if self._conn is None:
            return
        try:
            self._conn.send(message)
        except OSError:  # BrokenPipeError: the server's end closed
            self._conn = None


def _watch(stop: Connection, token: StopToken) -> None:
    """Blocks (no polling, no GIL) until the server says stop, closes its end, or exits."""
    parent = multiprocessing.parent_process()
    wait([stop] + ([parent.sentinel] if parent is not None else []))
    token.stop("interrupted")


def run(job_id: int, cfg, resume: str | None, events: Connection, stop: Connection, train=None) -> None:
    """The child's entry point: train `cfg` and report. `train` stands in for api.train in tests (it
    must be picklable: a module-level function)."""
    # Ctrl-C in the server's terminal reaches the whole process group: the server ends the run
    # (docs/webui.md), the child must not print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..train.speed import quiet_openmp

    quiet_openmp()  # before torch loads, as cli/main.set_environment does (the server's is inherited too)
    from .. import api

    token = StopToken()
    threading.Thread(target=_watch, args=(stop, token), name="tistudio-stop", daemon=True).start()
    send = Sender(events)
    try:
        result = (train or api.train)(cfg, callback=send, stop=token, progress=False, resume=resume)
        outcome = ("finished", result.run_dir)
    except TIStudioError as exc:  # the user's input: one line in the server log, as the CLI prints it
        print(f"webui: run {job_id} failed: {exc}", file=sys.stderr, flush=True)
        outcome = ("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must always learn how the run ended
        traceback.print_exc()
        outcome = ("failed", f"{type(exc).__name__}: {exc}")
    send.flush()
    send.send(outcome)
    events.close()
