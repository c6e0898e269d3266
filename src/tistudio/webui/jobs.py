"""Background training for the web UI. A `JobRegistry` (one per app, not a global) owns the training
jobs; each job runs `api.train` in a child process of its own (worker.py), so the run has its own
interpreter and GIL, as `tistudio train` has, and the server's threads (the page's polling, gradio's
own) never take turns with it. A reader thread per job records the events the child sends, so a
page opened later (or reopened after the tab was closed) reads the same progress by polling."""
from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .. import api
from ..config import TrainConfig
from ..errors import TIStudioError
from ..events import Caching, Event, Finished, Message, Previewed, Progress, Saved
from ..runs.folder import RunFolder
from ..runs.identity import folder_for
from . import worker

# A fresh interpreter, never a fork of the server: its threads (gradio's, torch's OpenMP pool) and
# locks would be copied mid-use.
SPAWN = multiprocessing.get_context("spawn")


class ModelHolder:
    """The one model kept in memory for the tabs that use it in the server (Create, Generate).
    Asking for another path replaces it (the old one is released first, so two never sit in memory
    together); a training run loads its own in its process, and the registry releases this one
    while it trains."""

    def __init__(self, loader: Callable = api.load_model):
        self._loader = loader
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._components = None

    def get(self, path: str, family: str | None = None, prediction: str | None = None):
        with self._lock:
            key = (str(path), family or None, prediction or None)
            if self._components is None or key != self._key:
                self._components = None
                self._components = self._loader(str(path), family=family or None, prediction=prediction or None)
                self._key = key
            return self._components

    def release(self) -> None:
        with self._lock:
            self._components, self._key = None, None

    @property
    def loaded(self) -> str | None:
        return self._key[0] if self._key else None


class Points(Sequence):
    """The first `n` of a job's loss points without copying them: the job only ever appends to its
    list, so those `n` never change."""

    def __init__(self, items: list, n: int):
        self._items, self._n = items, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._items[j] for j in range(self._n)[i]]  # the slice's points only
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._items[i % self._n]


@dataclass(frozen=True)
class JobView:
    """A consistent picture of a job's state for one poll of the page."""

    id: int
    name: str
    status: str                        # running | finished | failed
    cfg: TrainConfig
    resume: str | None
    points: Sequence[tuple[int, float, float]]   # (step, loss, lr)
    last: Progress | None
    previews: tuple[Previewed, ...]
    saved: tuple[Saved, ...]
    messages: tuple[Message, ...]
    finished: Finished | None
    error: str | None
    run_dir: str
    stopping: bool = False
    caching: Caching | None = None     # latent caching before the first step


@dataclass
class TrainingJob:
    id: int
    cfg: TrainConfig
    resume: str | None
    run_dir: str
    name: str
    status: str = "running"
    stopping: bool = False
    points: list = field(default_factory=list)
    last: Progress | None = None
    previews: list = field(default_factory=list)
    saved: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    finished: Finished | None = None
    error: str | None = None
    caching: Caching | None = None
    started: float = field(default_factory=time.time)
    process: multiprocessing.process.BaseProcess | None = None
    thread: threading.Thread | None = None   # reads the child's events; ends after the child does
    _stop: object = None                      # the server's end of the child's stop pipe
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                if isinstance(event, Progress):
                    self.points.append((event.step, event.loss, event.lr))
                    self.last = event
                elif isinstance(event, Previewed):
                    self.previews.append(event)
                elif isinstance(event, Saved):
                    self.saved.append(event)
                elif isinstance(event, Message):
                    self.messages.append(event)
                elif isinstance(event, Finished):
                    self.finished = event
                elif isinstance(event, Caching):
                    self.caching = event

    def request_stop(self) -> None:
        """Ask the child to save and stop after its current step."""
        with self._lock:
            if self.stopping or self.status != "running":
                return
            self.stopping = True
        try:
            self._stop.send("stop")
        except OSError:  # the child has just ended
            pass

    def view(self) -> JobView:
        with self._lock:
            return JobView(self.id, self.name, self.status, self.cfg, self.resume,
                           Points(self.points, len(self.points)), self.last, tuple(self.previews),
                           tuple(self.saved), tuple(self.messages), self.finished, self.error, self.run_dir,
                           self.stopping, self.caching)

    def follow(self, events) -> None:
        """The reader thread: record what the child sends until it ends; the job's final status is
        set once the process has exited, so the next run never starts beside it."""
        outcome = None
        try:
            while True:
                try:
                    kind, payload = events.recv()
                except EOFError:  # the child's end closed: it has ended
                    break
                if kind == "events":
                    self.record(payload)
                else:
                    outcome = (kind, payload)
        finally:
            events.close()
            self.process.join()
            self._stop.close()
        with self._lock:
            if outcome is None:  # killed, out of memory, or a crash below Python
                self.status = "failed"
                self.error = f"the training process ended unexpectedly (exit code {self.process.exitcode})"
            elif outcome[0] == "finished":
                self.status, self.run_dir = "finished", outcome[1] or self.run_dir
            else:
                self.status, self.error = "failed", outcome[1]


class JobRegistry:
    """Every training started by this server, newest last. One runs at a time: the machine's cores
    (and memory for the model) are the run's."""

    def __init__(self, models: ModelHolder | None = None, train: Callable | None = None):
        """`train`: api.train's stand-in for tests, called in the child (a module-level function)."""
        self.models = models or ModelHolder()
        self._train = train
        self._jobs: list[TrainingJob] = []
        self._lock = threading.Lock()

    def running(self) -> TrainingJob | None:
        with self._lock:
            return next((j for j in self._jobs if j.status == "running"), None)

    def latest(self) -> TrainingJob | None:
        with self._lock:
            return self._jobs[-1] if self._jobs else None

    def get(self, job_id: int) -> TrainingJob | None:
        with self._lock:
            return next((j for j in self._jobs if j.id == job_id), None)

    def start(self, cfg: TrainConfig, resume: str | None = None) -> TrainingJob:
        """Train in a child process; returns at once. The job's run folder is the one training will
        write (runs/identity.py decides for both)."""
        run = RunFolder.open(resume) if resume else folder_for(cfg.log_dir, cfg.trained_file)
        with self._lock:
            if any(j.status == "running" for j in self._jobs):
                raise TIStudioError("a training run is already going; interrupt it or wait for it to end")
            job = TrainingJob(len(self._jobs) + 1, cfg, resume, str(run.root), run.name)
            self._jobs.append(job)
        self.models.release()  # the run loads its own: one copy of the weights in memory, not two
        events, child_events = SPAWN.Pipe(duplex=False)
        child_stop, job._stop = SPAWN.Pipe(duplex=False)
        job.process = SPAWN.Process(target=worker.run, args=(job.id, cfg, resume, child_events, child_stop,
                                                             self._train),
                                    name=f"tistudio-train-{job.id}", daemon=True)  # ends with the server
        try:
            job.process.start()
        except OSError as exc:  # out of memory or of processes: no job, and the page says why
            with self._lock:
                self._jobs.remove(job)
            events.close()
            job._stop.close()
            raise TIStudioError(f"Train: could not start the training process ({exc}); free memory and "
                                "try again") from None
        finally:
            child_events.close()  # the child holds these ends now: EOF reaches the reader when it ends
            child_stop.close()
        job.thread = threading.Thread(target=job.follow, args=(events,), name=f"tistudio-job-{job.id}", daemon=True)
        job.thread.start()
        return job

    def interrupt(self) -> TrainingJob | None:
        """Ask the running job to save and stop after its current step."""
        job = self.running()
        if job is not None:
            job.request_stop()
        return job
