"""The loop hook that tells a user when to stop: at every --val-every step it measures the
deterministic validation loss (validation.py), the vector health and any fidelity scores; keeps
NAME-best.* (and, at the end, the best beside the finished file); stops early after --early-stop
evaluations without improvement; warns on overfitting (validation rising while the training
average falls). It keeps RUN/evaluations.csv; the run report (report.py) shows each evaluation.

Everything it needs on resume is read back from the run folder (evaluations.csv, summary.json,
NAME-best.*): no extra state in state.pt.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..atomic import write_text
from ..config import TrainConfig
from ..embedding.formats import load_embedding, save_embedding
from ..events import Callback, Message, StopToken
from ..hypernetwork import format as hypernetwork_format
from ..runs.folder import best_beside, embedding_finals, final_hypernetwork
from .health import VectorWatch, summary
from .objectives.base import Trainable
from .outputs import TrainingFolder

OVERFIT_WINDOW = 3      # evaluations: validation up at each of them while the training average falls


@dataclass(frozen=True)
class Evaluation:
    step: int
    values: dict   # val_loss, loss_ema, health summary, fidelity scores

    @property
    def val_loss(self) -> float:
        return self.values["val_loss"]


class Validator:
    """`loss()`: the validation loss of the current vectors; `scores()`: the fidelity scores;
    `trained`: what trains (its snapshots are the best files); `watch`: the vectors' health (None
    for a hypernetwork, which has no vectors to measure against the vocabulary; its best is
    RUN/hypernetworks/NAME-best.pt). `previous`: the summary.json of the run being resumed, else {}.
    Under multi-process training every process evaluates (they hold the same vectors, so they stop
    at the same step); only the main one (`writes`) writes files."""

    def __init__(self, cfg: TrainConfig, run: TrainingFolder, *, loss: Callable[[], float],
                 scores: Callable[[], dict], trained: Sequence[Trainable], watch: VectorWatch | None,
                 describe: str, say: Callback, stop: StopToken, writes: bool, start_step: int,
                 previous: dict, resumed: bool):
        self.cfg, self.run = cfg, run
        self.loss, self.scores, self.trained, self.watch = loss, scores, trained, watch
        self.say, self.stop, self.writes = say, stop, writes
        self.hyper = watch is None
        self.names = [e.name for e in trained]
        self.start_step = start_step
        self.initial_val = previous.get("initial_val_loss")
        self.history = self._read_history(start_step) if resumed else []
        self.overfit_steps = [x for x in previous.get("overfitting_warnings", []) if x <= start_step]
        self.best = min(self.history, key=lambda ev: ev.val_loss, default=None)
        self.best_embeddings = self._read_best() if self.best else None
        self.best_files: list[str] = []   # beside the finished file, once the run has ended
        self.listeners: list[Callable[[Evaluation, list], None]] = []   # the run report's `evaluated`
        if not resumed:
            self.initial_val = loss()
            say(Message("info", f"validation: {describe}; loss before training {self.initial_val:.5f}"))

    # -- resume ---------------------------------------------------------------------------------
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

    # -- the hook -------------------------------------------------------------------------------
    def after_step(self, step: int, loss: float, lr: float) -> None:
        if step % self.cfg.val_every == 0:
            self.evaluate(step)

    def at_end(self, result) -> None:
        if result.step > self.start_step and (not self.history or self.history[-1].step != result.step):
            self.evaluate(result.step, final=True)
        self.best_files = self._best_beside_output() if self.best_embeddings and self.writes else []
        if self.best:
            self.say(Message("info", f"best validation loss {self.best.val_loss:.5f} at step {self.best.step}"
                                     + (f": {', '.join(self.best_files)}" if self.best_files else "")))

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, step: int, final: bool = False) -> Evaluation:
        cfg = self.cfg
        val = self.loss()
        self.run.set_val(step, val)
        health = [] if self.hyper else self.watch.measure()
        latest = self.run.latest()
        values = {"val_loss": val, "loss_ema": latest["loss_ema"] if latest else math.nan,
                  **(summary(health) if health else {"max_norm_ratio": math.nan, "mean_drift": math.nan})}
        values.update(self.scores())
        ev = Evaluation(step, values)
        self.history = [h for h in self.history if h.step < step] + [ev]
        improved = self.best is None or val < self.best.val_loss
        if improved:
            self.best = ev
            self._save_best(step)
        scores = "".join(f", {k} {v:.3f}" for k, v in values.items() if k.startswith(("clip_", "toy_")))
        self.say(Message("info", f"step {step}: validation loss {val:.5f} "
                         + ("(best)" if improved else f"(best {self.best.val_loss:.5f} at step {self.best.step})")
                         + ("" if self.hyper else f"; norms up to {values['max_norm_ratio']:.2f}x the "
                            f"vocabulary median, drift {values['mean_drift']:.3f}") + scores))
        if self.watch is not None:
            self.watch.check(step, values["max_norm_ratio"])
        self._check_overfit()
        waited = sum(1 for h in self.history if h.step > self.best.step)
        if not final and cfg.early_stop and waited >= cfg.early_stop:
            self.say(Message("info", f"early stop at step {step}: no better validation loss in {waited} "
                                     f"evaluations; the best is step {self.best.step} "
                                     f"({self.best.val_loss:.5f}), saved as {self.names[0]}-best"))
            self.stop.stop("early-stopped")
        if self.writes:
            self._write_history()
        for listener in self.listeners:
            listener(ev, health)
        return ev

    def _check_overfit(self) -> None:
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
                self.say(Message("warning", f"step {last[-1].step}: overfitting: validation loss rising "
                                            f"({' -> '.join(f'{v:.4f}' for v in vals)}) while the training loss "
                                            f"falls; the best so far is step {self.best.step} "
                                            f"({self.names[0]}-best)"))

    # -- files ----------------------------------------------------------------------------------
    def _save_best(self, step: int) -> None:
        self.best_embeddings = [e.snapshot(step) for e in self.trained]
        for emb in self.best_embeddings if self.writes else ():
            if self.hyper:
                self.run.save_hypernetwork(emb, best=True)
                continue
            for fmt in self.cfg.formats:
                save_embedding(emb, self.run.best(fmt, emb.name), fmt)

    def _best_beside_output(self) -> list[str]:
        """NAME-best.* beside each final embedding (runs/folder.embedding_finals), where the user
        looks for their result."""
        cfg, out = self.cfg, []
        if self.hyper:
            best = best_beside(final_hypernetwork(cfg.output, cfg.hypernetwork), "a1111-pt")
            return [str(hypernetwork_format.save(self.best_embeddings[0], best))]
        for emb, finals in zip(self.best_embeddings, embedding_finals(cfg, self.names)):
            for path, fmt in finals:
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
