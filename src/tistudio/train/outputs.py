"""What training writes into its run folder (runs/folder.py owns the names): loss.csv rows,
embedding snapshots and, for a hypernetwork run, hypernetwork snapshots.

loss.csv keeps A1111's five columns first (step, epoch, epoch_step, loss, learn_rate), so tools that
read theirs read ours; loss_ema and val_loss (empty between evaluations) follow."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..atomic import as_user_error, write_text
from ..embedding.embedding import Embedding
from ..embedding.formats import save_embedding
from ..hypernetwork import format as hypernetwork_format
from ..hypernetwork.model import Hypernetwork
from ..runs.folder import RunFolder

LOSS_COLUMNS = ("step", "epoch", "epoch_step", "loss", "learn_rate", "loss_ema", "val_loss")
# loss_ema: exponential moving average of the training loss over about 1 / (1 - beta) = 10 steps. It is
# computed from the previous CSV row, so a resumed run continues the same average.
EMA_BETA = 0.9


def moving_average(prev: float | None, loss: float) -> float:
    """The loss_ema after a step of `loss`, given the previous step's (None: the first step). The web
    UI's live chart continues it between flushes of loss.csv."""
    if prev is None:
        return loss
    if math.isfinite(loss):
        return EMA_BETA * prev + (1 - EMA_BETA) * loss
    return prev  # one non-finite step must not poison the average for the rest of the run


class TrainingFolder(RunFolder):
    """The run folder a training process writes (it holds the folder's lock, runs/lock.py)."""

    def __init__(self, root: Path, name: str):
        super().__init__(root, name)
        for d in (self.root, self.embeddings, self.images):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # read-only or full disk: one line, not a traceback
                raise as_user_error(exc, d) or exc from None
        self._rows: list[list] = self._read_rows()

    def _read_rows(self) -> list[list]:
        if not self.loss_csv.is_file():
            return []
        with self.loss_csv.open(newline="") as fh:
            return [row for row in csv.reader(fh)][1:]

    def log_loss(self, step: int, epoch: int, epoch_step: int, loss: float, lr: float) -> None:
        """Append a row; on resume, rows past the resumed step are dropped first so the CSV matches
        the run that actually continued."""
        while self._rows and int(self._rows[-1][0]) >= step:  # rows are in step order: drop from the end only
            self._rows.pop()
        prev = self._rows[-1][5] if self._rows and len(self._rows[-1]) > 5 else ""
        ema = moving_average(float(prev) if prev else None, loss)
        self._rows.append([step, epoch, epoch_step, f"{loss:.6f}", f"{lr:.8g}", f"{ema:.6f}", ""])

    def set_val(self, step: int, val_loss: float) -> None:
        """Fill the val_loss column of the row of `step` (logged by log_loss)."""
        for row in self._rows:
            if int(row[0]) == step:
                row[:] = self._padded(row)
                row[6] = f"{val_loss:.6f}"

    @staticmethod
    def _padded(row: list) -> list:
        """Rows read from a CSV written before loss_ema/val_loss existed get empty cells."""
        return list(row) + [""] * (len(LOSS_COLUMNS) - len(row))

    def records(self) -> list[dict]:
        """The rows as {column: float or None}, for plots and summaries."""
        return [self._record(r) for r in self._rows]

    def latest(self) -> dict | None:
        """The last row as a record (cheap: called every step by monitors)."""
        return self._record(self._rows[-1]) if self._rows else None

    def _record(self, row: list) -> dict:
        return {k: (float(v) if v != "" else None) for k, v in zip(LOSS_COLUMNS, self._padded(row))}

    def flush_loss(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(LOSS_COLUMNS)
        writer.writerows(self._padded(r) for r in self._rows)
        write_text(self.loss_csv, buf.getvalue())

    def truncate_after(self, step: int) -> None:
        self._rows = [r for r in self._rows if int(r[0]) <= step]

    def save_snapshot(self, emb: Embedding, formats: tuple[str, ...]) -> list[Path]:
        """embeddings/NAME-STEP.<ext> whose stored step equals STEP (A1111 stored STEP-1)."""
        return [save_embedding(emb, self.snapshot(emb.step, fmt, emb.name), fmt) for fmt in formats]

    def save_hypernetwork(self, hn: Hypernetwork, best: bool = False) -> Path:
        """hypernetworks/NAME-STEP.pt whose stored step is STEP (or NAME-best.pt)."""
        path = self.hypernetwork_best(hn.name) if best else self.hypernetwork_snapshot(hn.step, hn.name)
        return hypernetwork_format.save(hn, path)
