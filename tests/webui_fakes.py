"""Stand-ins for api.train that the web UI's job registry runs in its child process (so they must
be module-level functions the child can import: tests/ is on the child's sys.path, as on ours)."""
from __future__ import annotations

import os
import time

from tistudio.errors import TIStudioError
from tistudio.events import Caching, Finished, Message, Previewed, Progress


def _wait_for_stop(stop, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not stop.stopped and time.monotonic() < end:
        time.sleep(0.01)


def steps(cfg, components=None, callback=None, stop=None, progress=True, resume=None):
    """Reports where it runs, then emits a step at a time; a new run (not a resume) waits at step
    2, after a preview, until it is interrupted."""
    import torch

    from tistudio.train.loop import TrainResult

    callback(Message("info", f"pid {os.getpid()} threads {torch.get_num_threads()} resume {resume} "
                             f"components {components}"))
    step = 0
    while step < cfg.steps and not stop.stopped:
        step += 1
        callback(Progress(step, cfg.steps, 1.0 / step, 0.01, 0, step - 1, 0.01, 0.01 * (cfg.steps - step)))
        if step == 2 and resume is None:
            callback(Previewed(step, f"p{step}.png"))
            _wait_for_stop(stop)
    reason = stop.reason if stop.stopped else "completed"
    callback(Finished(step, reason, ("out.pt",)))
    return TrainResult(step, reason, ["out.pt"], 1.0 / step, "")


def fails(cfg, **kw):
    raise TIStudioError("--data x: does not exist")


def crashes(cfg, **kw):
    os._exit(3)  # as a kill or the kernel's out-of-memory killer would end it: no word sent


def caches(cfg, callback=None, stop=None, **kw):
    from tistudio.train.loop import TrainResult

    callback(Caching(3, 8, 2.0, 10.0))
    _wait_for_stop(stop)
    return TrainResult(0, "completed", [], 0.0, "")


def paced(cfg, callback=None, **kwargs):
    """The real api.train with a pause after every step (through the public callback), so an
    interrupt lands mid-run however fast the machine trains the tiny model."""
    from tistudio import api

    def on_event(event):
        callback(event)
        if isinstance(event, Progress):
            time.sleep(0.2)
    return api.train(cfg, callback=on_event, **kwargs)
