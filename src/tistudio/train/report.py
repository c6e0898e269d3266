"""The run report, the hook every run gets: keeps RUN/loss.png, RUN/tensorboard and RUN/summary.json
current (shows each of the validator's evaluations), and watches vector health after every step
when no validation measures it, so the run folder says when the embedding was best and why
training stopped. `hooks_for` builds it, and the validator (validator.py) with --val-every.

On resume it reads back what it showed from the run folder (summary.json, NAME-init.safetensors).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

from ..atomic import write_text
from ..config import TrainConfig
from ..embedding.formats import load_embedding, save_embedding
from ..runs.folder import embedding_finals
from . import fidelity
from .health import VectorWatch
from .monitor import Board, write_loss_plot
from .objectives.hypernetwork import TrainableHypernetwork
from .outputs import TrainingFolder
from .setup import Hook, Setup
from .validation import ValidationSet
from .validator import Evaluation, Validator

PLOT_EVERY = 100        # steps between plot refreshes when there is no validation (nor --save-every)
REASONS = {
    "completed": "reached --steps",
    "schedule-ended": "the --lr schedule ended",
    "early-stopped": "the validation loss stopped improving (--early-stop)",
    "interrupted": "interrupted (Ctrl-C or a stop request)",
}


def _num(x) -> float | None:
    """JSON has no NaN: a missing or non-finite number is null."""
    return float(x) if x is not None and math.isfinite(x) else None


class RunReport:
    """`validator`: None without --val-every; `watch`: None for a hypernetwork; `board`: None
    without --tensorboard (or in a process that does not write); `writes`: this process writes the
    run folder's files; `buckets`: training size -> images (data/buckets.py), `embeddings`: what
    each trained embedding is and where its files go (trained_embeddings), for summary.json."""

    def __init__(self, cfg: TrainConfig, run: TrainingFolder, name: str, *, validator: Validator | None,
                 watch: VectorWatch | None, board: Board | None, writes: bool, start_step: int, previous: dict,
                 buckets: dict[str, int] | None = None, embeddings: list[dict] | None = None):
        self.cfg, self.run, self.name = cfg, run, name
        self.embeddings = embeddings or []
        self.validator, self.watch, self.board, self.writes = validator, watch, board, writes
        self.start_step = start_step
        self.buckets = buckets
        self.started = time.time()
        self.seconds_before = previous.get("seconds") or 0.0
        self.pending_preview = None
        if validator is not None:
            validator.listeners.append(self.evaluated)

    # -- the hook ---------------------------------------------------------------------------
    def after_step(self, step: int, loss: float, lr: float) -> None:
        cfg = self.cfg
        if self.board:
            latest = self.run.latest()
            self.board.step(step, loss, latest["loss_ema"] if latest else None, lr)
            self._log_preview()
            if cfg.preview_every and step % cfg.preview_every == 0:
                self.pending_preview = step  # the loop writes it right after the hooks
        if self.validator is None and self.watch is not None:  # health is watched with or without validation
            self.watch.watch(step)
        if self.validator is None and self.writes and step % (cfg.save_every or PLOT_EVERY) == 0:
            self._plot()

    def evaluated(self, ev: Evaluation, health: list) -> None:
        """After each of the validator's evaluations."""
        if self.board:
            self.board.evaluation(ev.step, {k: v for k, v in ev.values.items() if k != "loss_ema"}, health)
            self.board.flush()
        if self.writes:
            self._plot()
            self.run.flush_loss()
            latest = self.run.latest()
            self._write_summary("running", ev.step, latest["loss"] if latest else math.nan)

    def at_end(self, result) -> None:
        if self.board:
            self._log_preview()
            self.board.close()
        if self.writes:
            self._plot()
            self._write_summary(result.reason, result.step, result.last_loss)

    # -- files ------------------------------------------------------------------------------
    def _plot(self) -> None:
        if self.cfg.plot:
            v = self.validator
            write_loss_plot(self.run.plot, self.run.records(), title=self.name,
                            initial_val=v.initial_val if v else None,
                            best_step=v.best.step if v and v.best else None)

    def _log_preview(self) -> None:
        if self.pending_preview is None:
            return
        path = self.run.preview(self.pending_preview)
        if path.is_file():
            self.board.image("preview", path, self.pending_preview)
        self.pending_preview = None

    def _write_summary(self, reason: str, step: int, last_loss: float) -> None:
        latest = self.run.latest() or {}
        v = self.validator
        history = v.history if v else []
        best = v.best if v else None
        why = REASONS.get(reason, reason)
        if reason == "early-stopped" and best:
            why += f": no improvement in {self.cfg.early_stop} evaluations after step {best.step}"
        data = {
            "name": self.name,
            "embeddings": self.embeddings,
            "reason": reason,
            "stopped_because": "still training" if reason == "running" else why,
            "steps": step,
            "max_steps": self.cfg.steps,
            "start_step": self.start_step,
            "best_step": best.step if best else None,
            "best_val_loss": _num(best.val_loss) if best else None,
            "initial_val_loss": _num(v.initial_val) if v else None,
            "final_val_loss": _num(history[-1].val_loss) if history else None,
            "final_loss": _num(last_loss),
            "final_loss_ema": _num(latest.get("loss_ema")),
            "evaluations": len(history),
            "val_every": self.cfg.val_every,
            "early_stop": self.cfg.early_stop,
            "overfitting_warnings": v.overfit_steps if v else [],
            "max_norm_ratio": _num(self.watch.last_ratio) if self.watch else None,
            "best_files": v.best_files if v and reason != "running" else [],
            "buckets": self.buckets,
            "seconds": round(self.seconds_before + time.time() - self.started, 1),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_text(self.run.summary, json.dumps(data, indent=2) + "\n")


def read_summary(run: TrainingFolder) -> dict:
    path = run.summary
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def start_vectors(s: Setup, start_step: int, resumed: bool, writes: bool) -> dict:
    """The vectors this run began from, kept as NAME-init.safetensors for drift on resume."""
    start = {}
    for e in s.objective.embeddings:
        path = s.run.init_file(e.name)
        if resumed and path.is_file():
            start[e.name] = load_embedding(path).vectors
        else:
            snap = e.snapshot(start_step)
            if writes:
                save_embedding(snap, path, "safetensors")
            start[e.name] = snap.vectors
    return start


def trained_embeddings(s: Setup) -> list[dict]:
    """summary.json's "embeddings": each trained embedding's name, learning-rate multiplier, stop step
    (null: it trains to --steps) and finished files, in run order; [] for a hypernetwork."""
    embeddings = s.objective.embeddings
    if isinstance(embeddings[0], TrainableHypernetwork):
        return []
    finals = embedding_finals(s.cfg, [e.name for e in embeddings])
    return [{"name": e.name, "lr_scale": e.lr_weight, "stop_step": e.stop_step or None,
             "final_files": [str(path) for path, _ in files]} for e, files in zip(embeddings, finals)]


def validation_names(s: Setup, val_cache=None) -> Callable[[int], str]:
    """The trigger of validation item i's prompts: its image's concept's embedding (several embeddings,
    docs/multi-embedding.md), as in training. A held-out image belongs to the concept whose folder
    holds it; one of --val-data, to none: those take the first embedding."""
    first = s.objective.embeddings[0].name
    if s.concepts is None:
        return lambda i: first
    if val_cache is None:
        return lambda i: s.concepts.names_of(s.cache.records_of([i]), first)[0]
    folders = {Path(k.config.path).resolve(): k.config.embedding or first for k in s.concepts.concepts}
    return lambda i: folders.get(Path(val_cache.records[i].path).resolve().parent, first)


def hooks_for(s: Setup, start_step: int, defer, val_cache=None, resumed: bool = False) -> list[Hook]:
    """The hooks every run gets (summary.json and the plot are always written): the validator
    (with --val-every) first, so the report shows its evaluation of a step; then the report.
    `defer`: TrainState.defer, through which the health watch reads its values."""
    cfg, run, objective = s.cfg, s.run, s.objective
    writes = s.dist.is_main
    previous = read_summary(run) if resumed else {}
    watch = None
    if not isinstance(objective.embeddings[0], TrainableHypernetwork):
        watch = VectorWatch(objective, start_vectors(s, start_step, resumed, writes), s.medians,
                            s.callback, defer)
    validator = None
    if cfg.val_every:
        validation = ValidationSet.build(cfg, s.c, s.cache if val_cache is None else val_cache,
                                         validation_names(s, val_cache), s.prompts.lines, held_out=val_cache is not None,
                                         training=s.cache.indices_of(s.concepts.training_indices()) if s.concepts else None)
        scorers = fidelity.scorers(s)
        where = "held-out" if validation.held_out else "training (no held-out images: fit, not generalisation)"
        validator = Validator(
            cfg, run, loss=lambda: validation.loss(objective, s.c, s.device, cfg.batch_size, (s.height, s.width)),
            scores=lambda: {k: v for scorer in scorers for k, v in scorer(s).items()},
            trained=objective.embeddings, watch=watch, say=s.callback, stop=s.stop, writes=writes,
            describe=f"{len(validation)} fixed (image, timestep, noise) triples from {where} images",
            start_step=start_step, previous=previous, resumed=resumed)
        if watch is not None and validator.history:  # the latest ratio a resumed run's summary shows
            watch.last_ratio = validator.history[-1].values.get("max_norm_ratio")
    board = (Board(run.board, purge_step=start_step + 1 if resumed else None)
             if cfg.tensorboard and writes else None)
    report = RunReport(cfg, run, objective.embeddings[0].name, validator=validator, watch=watch, board=board,
                       writes=writes, start_step=start_step, previous=previous, buckets=s.cache.table(),
                       embeddings=trained_embeddings(s))
    return [h for h in (validator, report) if h is not None]
