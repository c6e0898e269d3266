"""Background training for the web UI. A `JobRegistry` (one per app, not a global) owns the loaded
model and the training jobs; each job runs `api.train` in a thread and records its events, so a page
opened later (or reopened after the tab was closed) reads the same progress by polling."""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from .. import api
from ..config import TrainConfig
from ..errors import TIStudioError
from ..events import Caching, Event, Finished, Message, Previewed, Progress, Saved, StopToken
from ..runs.folder import RunFolder
from ..runs.identity import folder_for


class ModelHolder:
    """The one model kept in memory, shared by every tab. Asking for another path replaces it (the
    old one is released first, so two never sit in memory together)."""

    def __init__(self, loader: Callable = api.load_model):
        self._loader = loader
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._components = None

    def get(self, path: str, family: str | None = None, prediction: str | None = None):
        import torch

        with self._lock:
            key = (str(path), family or None, prediction or None)
            c = self._components
            # A run at bf16/fp16 casts the shared modules in place; reload so later work sees fp32.
            stale = c is not None and c.unet.dtype != torch.float32
            if c is None or key != self._key or stale:
                self._components = None
                self._components = self._loader(str(path), family=family or None, prediction=prediction or None)
                self._key = key
            return self._components

    @property
    def loaded(self) -> str | None:
        return self._key[0] if self._key else None


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job's state for one poll of the page."""

    id: int
    name: str
    status: str                        # running | finished | failed
    cfg: TrainConfig
    resume: str | None
    points: tuple[tuple[int, float, float], ...]   # (step, loss, lr)
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
    stop: StopToken = field(default_factory=StopToken)
    status: str = "running"
    points: list = field(default_factory=list)
    last: Progress | None = None
    previews: list = field(default_factory=list)
    saved: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    finished: Finished | None = None
    error: str | None = None
    caching: Caching | None = None
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: Event) -> None:
        """The training thread's callback: only records, so the loop is never slowed by the page."""
        with self._lock:
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

    def view(self) -> JobView:
        with self._lock:
            return JobView(self.id, self.name, self.status, self.cfg, self.resume, tuple(self.points),
                           self.last, tuple(self.previews), tuple(self.saved), tuple(self.messages),
                           self.finished, self.error, self.run_dir, self.stop.stopped, self.caching)


class JobRegistry:
    """Every training started in this process, newest last. One runs at a time: they share the one
    loaded model, whose modules a run moves and casts."""

    def __init__(self, models: ModelHolder | None = None, train: Callable = api.train):
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
        """Load (or reuse) the model, then train in a daemon thread; returns at once. The job's run
        folder is the one training will write (runs/identity.py decides for both)."""
        run = RunFolder.open(resume) if resume else folder_for(cfg.log_dir, cfg.trained_file)
        with self._lock:
            if any(j.status == "running" for j in self._jobs):
                raise TIStudioError("a training run is already going; interrupt it or wait for it to end")
            job = TrainingJob(len(self._jobs) + 1, cfg, resume, str(run.root), run.name)
            self._jobs.append(job)
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"tistudio-train-{job.id}", daemon=True)
        job.thread.start()
        return job

    def _run(self, job: TrainingJob) -> None:
        try:
            m = job.cfg.model
            components = self.models.get(m.model, m.family, m.prediction)
            result = self._train(job.cfg, components=components, callback=job.on_event, stop=job.stop,
                                 progress=False, resume=job.resume)
            job.run_dir = result.run_dir or job.run_dir
            job.status = "finished"
        except TIStudioError as exc:  # the user's input: one line in the server log, as the CLI prints it
            print(f"webui: run {job.id} failed: {exc}", file=sys.stderr, flush=True)
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # the thread must always end in a state the page can show
            traceback.print_exc()
            job.error, job.status = f"{type(exc).__name__}: {exc}", "failed"

    def interrupt(self) -> TrainingJob | None:
        """Ask the running job to save and stop after its current step."""
        job = self.running()
        if job is not None:
            job.stop.stop("interrupted")
        return job

    def model_busy(self) -> bool:
        return self.running() is not None
