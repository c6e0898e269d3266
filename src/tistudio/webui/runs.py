"""Reading run folders (LOG_DIR/NAME/ with config.toml, loss.csv, embeddings/, images/) for the Runs tab
and the live chart, and exporting a saved embedding in another format for download."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import TIStudioError
from ..runs.folder import RunFolder


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    steps: int
    final_loss: float | None    # the training loss's moving average at the last step (loss.csv loss_ema)
    best_step: int | None       # by validation loss; None for a run without validation
    best_loss: float | None     # the validation loss at best_step
    reason: str

    def row(self) -> list:
        # A blank would read as "not loaded yet": a dash says the run has no such value.
        fmt = lambda v: NONE if v is None else f"{v:.4f}"  # noqa: E731
        return [self.name, self.steps, fmt(self.final_loss), NONE if self.best_step is None else self.best_step,
                fmt(self.best_loss), self.reason]


NONE = "—"
# "final loss" as `tistudio runs` names the same number.
RUN_COLUMNS = ["run", "steps", "final loss (moving average)", "best step", "best val loss", "stopped"]


def loss_rows(run_dir: Path) -> list[dict]:
    """loss.csv as dicts of floats (empty cells, e.g. val_loss between evaluations, are dropped)."""
    path = RunFolder.open(run_dir).loss_csv
    if not path.is_file():
        return []
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for raw in csv.DictReader(fh):
                row = {}
                for key, value in raw.items():
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):
                        continue
                if "step" in row:
                    rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # a run being written by another tool; the next refresh reads it again
    return rows


def _summary(run_dir: Path) -> dict:
    try:
        return json.loads(RunFolder.open(run_dir).summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_info(run_dir: Path) -> RunInfo:
    """What the Runs table shows, as `tistudio runs` shows it: the final loss is the moving average
    training logs in loss.csv (train/outputs.py is its one owner; the raw loss only for files written
    before it existed), and the best step exists only where validation measured one."""
    rows = loss_rows(run_dir)
    summary = _summary(run_dir)
    last = rows[-1] if rows else {}
    val = [r for r in rows if "val_loss" in r]
    best = min(val, key=lambda r: r["val_loss"], default=None)
    best_step = summary.get("best_step")
    if best_step is None and best is not None:
        best_step = int(best["step"])
    best_loss = summary.get("best_val_loss", best["val_loss"] if best else None) if best_step is not None else None
    return RunInfo(run_dir.name, run_dir, int(last["step"]) if rows else 0, last.get("loss_ema", last.get("loss")),
                   best_step, best_loss, str(summary.get("reason", summary.get("stopped", ""))))


def list_runs(log_dir: Path) -> list[RunInfo]:
    if not log_dir.is_dir():
        raise TIStudioError(f"Log folder {log_dir}: not a folder; train once, or enter the folder your runs are in")
    return [run_info(p) for p in sorted(log_dir.iterdir()) if RunFolder.open(p).config.is_file()]


def chart_rows(runs: dict[str, list[dict]], with_validation: bool = True) -> list[dict]:
    """Long-format points {step, loss, series} for one line chart; series 'NAME' and 'NAME (val)'."""
    points = []
    for name, rows in runs.items():
        points += [{"step": int(r["step"]), "loss": r["loss"], "series": name} for r in rows if "loss" in r]
        if with_validation:
            points += [{"step": int(r["step"]), "loss": r["val_loss"], "series": f"{name} (val)"}
                       for r in rows if "val_loss" in r]
    return points


def snapshots(run_dir: Path) -> list[Path]:
    """Saved embeddings of a run, newest first (NAME-STEP.*, NAME-best.*), the run's starting point
    NAME-init last: it is no result, so never the default download (after a run stopped at step 0
    it is the newest file)."""
    return sorted(RunFolder.open(run_dir).embedding_files(), key=lambda p: p.stem.endswith("-init"))


def previews(run_dir: Path) -> list[tuple[Path, int]]:
    """(image, step) for the run's preview images, in step order."""
    return RunFolder.open(run_dir).previews()


def export(snapshot: Path, fmt: str, out_dir: Path) -> Path:
    """`snapshot` written as `fmt` into out_dir (a fresh folder per download), named like the file."""
    from ..embedding.formats import FORMATS, load_embedding, save_embedding

    if fmt not in FORMATS or fmt == "diffusers":
        raise TIStudioError(f"format {fmt!r}: choose one of a1111-pt, safetensors, a1111-png")
    emb = load_embedding(snapshot)
    target = out_dir / f"{snapshot.stem}{FORMATS[fmt][0]}"
    return save_embedding(emb, target, fmt)


_MARKS = {"loads": "✓", "partly": "◐", "differs": "◐", "refused": "✗"}


def compat_summary(path: Path, show=str) -> str:
    """Markdown for a saved embedding: which programs load it under which trigger, and for the
    others why not and the fix (`inspect --compat` as one line plus exceptions). `show` renders
    paths as the page shows them. A hypernetwork gets its own clients' verdicts."""
    from .. import api
    from ..embedding.compat import Verdict
    from ..hypernetwork import format as hypernetwork_format

    path = Path(path)
    hypernetwork = hypernetwork_format.sniff(path)
    if hypernetwork is not None:
        verdicts = [Verdict(client, verdict, None, why)
                    for client, verdict, why in hypernetwork_format.compatibility(hypernetwork)]
    else:
        verdicts = api.compat(path)
    head = " · ".join(f"{v.client} {_MARKS[v.status]}" + (f" `{v.trigger}`" if v.trigger else "") for v in verdicts)
    lines = [f"`{show(path)}` loads in: {head}"]
    for v in verdicts:
        if v.status != "loads":
            fix = f" Fix: `{v.fix.replace(str(path.parent), show(path.parent))}`" if v.fix else ""
            lines.append(f"- {v.client} ({v.status}): {v.note}.{fix}")
    return "\n".join(lines)

