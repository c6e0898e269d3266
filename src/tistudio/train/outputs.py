"""The run folder a user reads: LOG_DIR/NAME/ with config.toml, loss.csv, embeddings/NAME-STEP.*,
images/NAME-STEP.png, image_embeddings/NAME-STEP.png and state.pt (for --resume); a hypernetwork
run has hypernetworks/NAME-STEP.pt (A1111's folder name) instead of embeddings/.

loss.csv keeps A1111's five columns first (step, epoch, epoch_step, loss, learn_rate), so tools that
read theirs read ours; loss_ema and val_loss (empty between evaluations) follow."""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from ..atomic import as_user_error, write_text
from ..embedding.embedding import Embedding
from ..embedding.formats import FORMATS, save_embedding
from ..hypernetwork import format as hypernetwork_format
from ..hypernetwork.model import Hypernetwork

LOSS_COLUMNS = ("step", "epoch", "epoch_step", "loss", "learn_rate", "loss_ema", "val_loss")
# loss_ema: exponential moving average of the training loss over about 1 / (1 - beta) = 10 steps. It is
# computed from the previous CSV row, so a resumed run continues the same average.
EMA_BETA = 0.9
# NAME-STEP.ext (ext may be double, e.g. .pt.optim); the name may hold dashes and dots itself.
_SNAPSHOT_RE = re.compile(r"^.+-(\d+)(?:\.[^-]+)?$")


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.embeddings = self.root / "embeddings"
        self.images = self.root / "images"
        self.image_embeddings = self.root / "image_embeddings"
        self.hypernetworks = self.root / "hypernetworks"   # made on the first hypernetwork snapshot
        self.loss_csv = self.root / "loss.csv"
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
        self._rows = [r for r in self._rows if int(r[0]) < step]
        prev = self._rows[-1][5] if self._rows and len(self._rows[-1]) > 5 else ""
        if not prev:
            ema = loss
        elif math.isfinite(loss):
            ema = EMA_BETA * float(prev) + (1 - EMA_BETA) * loss
        else:  # one non-finite step must not poison the average for the rest of the run
            ema = float(prev)
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

    def prune_snapshots(self, keep: int) -> list[Path]:
        """--keep-last N: delete the snapshot files (embeddings/ and image_embeddings/) of all but the
        N latest saved steps, so a long run's disk use stays bounded. Returns the deleted paths."""
        doomed = []
        for folder in (self.embeddings, self.image_embeddings, self.hypernetworks):  # each keeps its own N latest
            by_step: dict[int, list[Path]] = {}
            for path in folder.glob("*-*") if folder.is_dir() and keep > 0 else ():
                found = _SNAPSHOT_RE.match(path.name)
                if found and path.is_file():
                    by_step.setdefault(int(found.group(1)), []).append(path)
            doomed += [p for step in sorted(by_step)[:-keep] for p in by_step[step]]
        for path in doomed:
            path.unlink(missing_ok=True)
        return doomed

    def save_hypernetwork(self, hn: Hypernetwork, tag: str | None = None) -> Path:
        """hypernetworks/NAME-STEP.pt (or NAME-TAG.pt, e.g. NAME-best.pt) whose stored step is STEP."""
        return hypernetwork_format.save(hn, self.hypernetworks / f"{hn.name}-{tag or hn.step}.pt")

    def save_snapshot(self, emb: Embedding, formats: tuple[str, ...]) -> list[Path]:
        """embeddings/NAME-STEP.<ext> whose stored step equals STEP (A1111 stored STEP-1)."""
        paths = []
        for fmt in formats:
            ext = FORMATS[fmt][0]
            paths.append(save_embedding(emb, self.embeddings / f"{emb.name}-{emb.step}{ext}", fmt))
        return paths
