"""The run folder a user reads: LOG_DIR/NAME/ with config.toml, loss.csv, embeddings/NAME-STEP.*,
images/NAME-STEP.png, image_embeddings/NAME-STEP.png and state.pt (for --resume)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import write_text
from ..embedding.embedding import Embedding
from ..embedding.formats import FORMATS, save_embedding

LOSS_COLUMNS = ("step", "epoch", "epoch_step", "loss", "learn_rate")


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.embeddings = self.root / "embeddings"
        self.images = self.root / "images"
        self.image_embeddings = self.root / "image_embeddings"
        self.loss_csv = self.root / "loss.csv"
        for d in (self.root, self.embeddings, self.images):
            d.mkdir(parents=True, exist_ok=True)
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
        self._rows.append([step, epoch, epoch_step, f"{loss:.6f}", f"{lr:.8g}"])

    def flush_loss(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(LOSS_COLUMNS)
        writer.writerows(self._rows)
        write_text(self.loss_csv, buf.getvalue())

    def truncate_after(self, step: int) -> None:
        self._rows = [r for r in self._rows if int(r[0]) <= step]

    def save_snapshot(self, emb: Embedding, formats: tuple[str, ...]) -> list[Path]:
        """embeddings/NAME-STEP.<ext> whose stored step equals STEP (A1111 stored STEP-1)."""
        paths = []
        for fmt in formats:
            ext = FORMATS[fmt][0]
            paths.append(save_embedding(emb, self.embeddings / f"{emb.name}-{emb.step}{ext}", fmt))
        return paths
