"""The loop hook that tells a user when to stop: at every --val-every step it measures the
deterministic validation loss, vector health and any fidelity scores; keeps NAME-best.*; stops
early after --early-stop evaluations without improvement; warns on overfitting (validation rising
while the training average falls) and on runaway norms (after every step when there is no
validation, so with every run); applies --max-norm after every step; and
keeps RUN/loss.png, RUN/tensorboard, RUN/evaluations.csv and RUN/summary.json current, so the run
folder says when the embedding was best and why training stopped.

Everything it needs on resume is read back from the run folder (evaluations.csv, summary.json,
NAME-best.*, NAME-init.safetensors): no extra state in state.pt.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass

from ..atomic import write_text
from ..embedding.formats import load_embedding, save_embedding
from ..events import Message
from ..hypernetwork import format as hypernetwork_format
from ..runs.folder import best_beside, final_hypernetwork, final_paths
from . import fidelity
from .health import WARN_RATIO, cap_norms, max_ratio, measure, summary, vocabulary_medians
from .monitor import Board, write_loss_plot
from .objectives.hypernetwork import TrainableHypernetwork
from .validation import ValidationSet

OVERFIT_WINDOW = 3      # evaluations: validation up at each of them while the training average falls
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


@dataclass(frozen=True)
class Evaluation:
    step: int
    values: dict   # val_loss, loss_ema, health summary, fidelity scores

    @property
    def val_loss(self) -> float:
        return self.values["val_loss"]


class Evaluator:
    def __init__(self, s, val_cache=None, resumed: bool = False):
        cfg, run = s.cfg, s.run
        self.cfg, self.run = cfg, run
        # Under multi-process training every process evaluates (they hold the same vectors, so they
        # stop at the same step and cap norms alike); only the main one writes files.
        self.writes = s.dist.is_main if getattr(s, "dist", None) is not None else True
        self.names = [e.name for e in s.objective.embeddings]
        # A hypernetwork has no vectors to measure against the vocabulary: validation, best and
        # early stopping only; its best is RUN/hypernetworks/NAME-best.pt.
        self.hyper = isinstance(s.objective.embeddings[0], TrainableHypernetwork)
        self.start_step = s.start_step
        self.buckets = s.cache.table()  # training size -> images (data/buckets.py)
        self.started = time.time()
        self.medians = vocabulary_medians(s.c)
        self.start = self._start_vectors(s, resumed)
        self.validation = ValidationSet.build(s, val_cache) if cfg.val_every else None
        self.scorers = fidelity.scorers(s) if cfg.val_every else []
        self.board = (Board(run.board, purge_step=s.start_step + 1 if resumed else None)
                      if cfg.tensorboard and self.writes else None)
        previous = self._read_summary() if resumed else {}
        self.seconds_before = previous.get("seconds") or 0.0
        self.initial_val = previous.get("initial_val_loss")
        self.history = self._read_history(s.start_step) if resumed else []
        self.overfit_steps = [x for x in previous.get("overfitting_warnings", []) if x <= s.start_step]
        self.best = min(self.history, key=lambda ev: ev.val_loss, default=None)
        self.best_embeddings = self._read_best() if self.best else None
        self.norm_warned = False
        # The latest max norm ratio (after every step without validation; summary.json).
        self.last_ratio = self.history[-1].values.get("max_norm_ratio") if self.history else None
        self.pending_preview = None
        if self.validation is not None and not resumed:
            self.initial_val = self.validation.loss(s)
            where = "held-out" if self.validation.held_out else "training (no held-out images: fit, not generalisation)"
            s.callback(Message("info", f"validation: {len(self.validation)} fixed (image, timestep, noise) "
                                       f"triples from {where} images; loss before training {self.initial_val:.5f}"))

    # -- set-up and resume ------------------------------------------------------------------
    def _start_vectors(self, s, resumed: bool) -> dict:
        """The vectors this run began from, kept as NAME-init.safetensors for drift on resume."""
        start = {}
        for e in s.objective.embeddings if not self.hyper else ():
            path = s.run.init_file(e.name)
            if resumed and path.is_file():
                start[e.name] = load_embedding(path).vectors
            else:
                snap = e.snapshot(s.start_step)
                if self.writes:
                    save_embedding(snap, path, "safetensors")
                start[e.name] = snap.vectors
        return start

    def _read_summary(self) -> dict:
        path = self.run.summary
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def _read_history(self, upto: int) -> list[Evaluation]:
        path = self.run.evaluations
        if not path.is_file():
            return []
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [Evaluation(int(r["step"]), {k: float(v) if v else math.nan for k, v in r.items() if k != "step"})
                for r in rows if int(r["step"]) <= upto]

    def _read_best(self) -> list | None:
        if self.hyper:
            path = self.run.hypernetwork_best(self.names[0])
            return [hypernetwork_format.load(path)] if path.is_file() else None
        paths = [self.run.best(self.cfg.formats[0], name) for name in self.names]
        return [load_embedding(p) for p in paths] if all(p.is_file() for p in paths) else None

    # -- the hook ---------------------------------------------------------------------------
    def after_step(self, s, step: int, loss: float, lr: float) -> None:
        cfg = self.cfg
        if cfg.max_norm:
            cap_norms(s.objective, self.medians, cfg.max_norm)
        if self.board:
            latest = s.run.latest()
            self.board.step(step, loss, latest["loss_ema"] if latest else None, lr)
            self._log_preview(s)
            if cfg.preview_every and step % cfg.preview_every == 0:
                self.pending_preview = step  # the loop writes it right after the hooks
        if self.validation is None and not self.hyper:  # vector health is watched with or without validation
            self.last_ratio = max_ratio(s.objective, self.medians)
            self._check_norms(s, step, self.last_ratio)
        if self.validation is not None and step % cfg.val_every == 0:
            self.evaluate(s, step)
        elif self.validation is None and self.writes and step % (cfg.save_every or PLOT_EVERY) == 0:
            self._plot(s)

    def at_end(self, s, result) -> None:
        if (self.validation is not None and result.step > self.start_step
                and (not self.history or self.history[-1].step != result.step)):
            self.evaluate(s, result.step, final=True)
        best_files = self._best_beside_output() if self.best_embeddings and self.writes else []
        if self.best:
            s.callback(Message("info", f"best validation loss {self.best.val_loss:.5f} at step {self.best.step}"
                                       + (f": {', '.join(best_files)}" if best_files else "")))
        if self.board:
            self._log_preview(s)
            self.board.close()
        if self.writes:
            self._plot(s)
            self._write_summary(result.reason, result.step, result.last_loss, best_files)

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, s, step: int, final: bool = False) -> Evaluation:
        cfg = self.cfg
        val = self.validation.loss(s)
        s.run.set_val(step, val)
        health = [] if self.hyper else measure(s.objective, self.start, self.medians)
        latest = s.run.latest()
        values = {"val_loss": val, "loss_ema": latest["loss_ema"] if latest else math.nan,
                  **(summary(health) if health else {"max_norm_ratio": math.nan, "mean_drift": math.nan})}
        for scorer in self.scorers:
            values.update(scorer(s))
        ev = Evaluation(step, values)
        self.history = [h for h in self.history if h.step < step] + [ev]
        improved = self.best is None or val < self.best.val_loss
        if improved:
            self.best = ev
            self._save_best(s, step)
        scores = "".join(f", {k} {v:.3f}" for k, v in values.items() if k.startswith(("clip_", "toy_")))
        s.callback(Message("info", f"step {step}: validation loss {val:.5f} "
                           + ("(best)" if improved else f"(best {self.best.val_loss:.5f} at step {self.best.step})")
                           + ("" if self.hyper else f"; norms up to {values['max_norm_ratio']:.2f}x the "
                              f"vocabulary median, drift {values['mean_drift']:.3f}") + scores))
        self.last_ratio = values["max_norm_ratio"]
        self._check_norms(s, step, values["max_norm_ratio"])
        self._check_overfit(s)
        waited = sum(1 for h in self.history if h.step > self.best.step)
        if not final and cfg.early_stop and waited >= cfg.early_stop:
            s.callback(Message("info", f"early stop at step {step}: no better validation loss in {waited} "
                                       f"evaluations; the best is step {self.best.step} "
                                       f"({self.best.val_loss:.5f}), saved as {self.names[0]}-best"))
            s.stop.stop("early-stopped")
        if self.board:
            self.board.evaluation(step, {k: v for k, v in values.items() if k != "loss_ema"}, health)
            self.board.flush()
        if self.writes:
            self._write_history()
            self._plot(s)
            s.run.flush_loss()
            self._write_summary("running", step, latest["loss"] if latest else math.nan, [])
        return ev

    def _check_norms(self, s, step: int, ratio: float) -> None:
        if ratio > WARN_RATIO and not self.norm_warned:
            s.callback(Message("warning", f"step {step}: a vector's norm is {ratio:.1f}x the vocabulary's median "
                                          "token norm; the embedding may drown out the rest of the prompt "
                                          "(lower --lr or cap it with --max-norm 3)"))
        self.norm_warned = ratio > WARN_RATIO

    def _check_overfit(self, s) -> None:
        """Warn once per onset: validation rose at each of the last evaluations while the training
        moving average fell."""
        last = self.history[-OVERFIT_WINDOW:]
        if len(last) < OVERFIT_WINDOW:
            return
        vals = [h.val_loss for h in last]
        emas = [h.values.get("loss_ema", math.nan) for h in last]
        rising = all(a < b for a, b in zip(vals, vals[1:]))
        falling = all(a > b for a, b in zip(emas, emas[1:]))
        if rising and falling:
            onset = not self.overfit_steps or self.overfit_steps[-1] != self.history[-2].step
            self.overfit_steps.append(last[-1].step)
            if onset:
                s.callback(Message("warning", f"step {last[-1].step}: overfitting: validation loss rising "
                                              f"({' -> '.join(f'{v:.4f}' for v in vals)}) while the training loss "
                                              f"falls; the best so far is step {self.best.step} "
                                              f"({self.names[0]}-best)"))

    # -- files ------------------------------------------------------------------------------
    def _save_best(self, s, step: int) -> None:
        self.best_embeddings = [e.snapshot(step) for e in s.objective.embeddings]
        for emb in self.best_embeddings if self.writes else ():
            if self.hyper:
                s.run.save_hypernetwork(emb, best=True)
                continue
            for fmt in self.cfg.formats:
                save_embedding(emb, self.run.best(fmt, emb.name), fmt)

    def _best_beside_output(self) -> list[str]:
        """NAME-best.* beside the final embedding (DreamArtist's partner beside its own), where the
        user looks for their result."""
        cfg, out = self.cfg, []
        if self.hyper:
            best = best_beside(final_hypernetwork(cfg.output, cfg.hypernetwork), "a1111-pt")
            return [str(hypernetwork_format.save(self.best_embeddings[0], best))]
        for k, emb in enumerate(self.best_embeddings):
            partner = emb.name if k else None
            for path, fmt in final_paths(cfg.output, cfg.embedding, cfg.formats, self.names[0], partner):
                out.append(str(save_embedding(emb, best_beside(path, fmt), fmt)))
        return out

    def _write_history(self) -> None:
        columns = ["step"] + list(dict.fromkeys(k for h in self.history for k in h.values))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for h in self.history:
            # repr: the shortest text that reads back as the same float, so a resume's best is exact.
            writer.writerow([h.step] + [repr(float(h.values[k])) if math.isfinite(h.values.get(k, math.nan)) else ""
                                        for k in columns[1:]])
        write_text(self.run.evaluations, buf.getvalue())

    def _plot(self, s) -> None:
        if self.cfg.plot:
            write_loss_plot(self.run.plot, s.run.records(), title=self.names[0],
                            initial_val=self.initial_val, best_step=self.best.step if self.best else None)

    def _log_preview(self, s) -> None:
        if self.pending_preview is None:
            return
        path = s.run.preview(self.pending_preview)
        if path.is_file():
            self.board.image("preview", path, self.pending_preview)
        self.pending_preview = None

    def _write_summary(self, reason: str, step: int, last_loss: float, best_files: list[str]) -> None:
        latest = self.run.latest() or {}
        last_val = self.history[-1].val_loss if self.history else None
        best = self.best
        why = REASONS.get(reason, reason)
        if reason == "early-stopped" and best:
            why += f": no improvement in {self.cfg.early_stop} evaluations after step {best.step}"
        data = {
            "name": self.names[0],
            "reason": reason,
            "stopped_because": "still training" if reason == "running" else why,
            "steps": step,
            "max_steps": self.cfg.steps,
            "start_step": self.start_step,
            "best_step": best.step if best else None,
            "best_val_loss": _num(best.val_loss) if best else None,
            "initial_val_loss": _num(self.initial_val),
            "final_val_loss": _num(last_val),
            "final_loss": _num(last_loss),
            "final_loss_ema": _num(latest.get("loss_ema")),
            "evaluations": len(self.history),
            "val_every": self.cfg.val_every,
            "early_stop": self.cfg.early_stop,
            "overfitting_warnings": self.overfit_steps,
            "max_norm_ratio": _num(self.last_ratio),
            "best_files": best_files,
            "buckets": self.buckets,
            "seconds": round(self.seconds_before + time.time() - self.started, 1),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_text(self.run.summary, json.dumps(data, indent=2) + "\n")


def hooks_for(s, val_cache=None, resumed: bool = False) -> list:
    """The hooks every run gets (summary.json and the plot are always written)."""
    return [Evaluator(s, val_cache, resumed)]
