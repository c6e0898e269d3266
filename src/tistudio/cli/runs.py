"""`tistudio runs [LOG_DIR]`: one line per run folder: steps, best step and validation loss, final
training loss, time and why it stopped. Reads RUN/summary.json, else RUN/loss.csv (runs written
before summaries existed, or still in progress)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..runs.folder import RunFolder


def register(sub) -> None:
    p = sub.add_parser("runs", help="list training runs: steps, best step and val loss, final loss, time",
                       description="List the run folders under LOG_DIR (default runs/), as written by "
                       "`tistudio train`.")
    p.add_argument("log_dir", nargs="?", default="runs", metavar="LOG_DIR", help="folder of runs (default runs)")
    p.set_defaults(func=run)


def _from_loss_csv(path: Path) -> dict:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    vals = [(float(r["val_loss"]), int(r["step"])) for r in rows if r.get("val_loss")]
    last = rows[-1] if rows else {}
    best = min(vals) if vals else None
    return {"steps": int(last["step"]) if last else 0, "best_step": best[1] if best else None,
            "best_val_loss": best[0] if best else None,
            "final_loss_ema": float(last["loss_ema"]) if last.get("loss_ema") else None,
            "final_loss": float(last["loss"]) if last else None, "reason": "unknown"}


def run_info(folder: Path) -> dict | None:
    """What the listing shows for one run folder, or None when `folder` is not a run."""
    run = RunFolder(folder, folder.name)  # only its file names: no run.json to read
    summary, loss_csv = run.summary, run.loss_csv
    info = None
    if summary.is_file():
        try:
            info = json.loads(summary.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            info = None
    if info is None and loss_csv.is_file():
        info = _from_loss_csv(loss_csv)
    if info is not None:
        info["name"] = folder.name
    return info


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _time(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def run(args) -> int:
    from ..errors import TIStudioError

    root = Path(args.log_dir)
    if not root.is_dir():
        raise TIStudioError(f"LOG_DIR {root}: no such folder; give the folder your runs were written to "
                            "(`tistudio runs DIR`, where DIR is train's --log-dir, default runs)")
    infos = [i for i in (run_info(d) for d in sorted(root.iterdir()) if d.is_dir()) if i]
    if not infos:
        print(f"no runs in {root} (a run folder holds loss.csv or summary.json)")
        return 0
    header = f"{'run':<24} {'steps':>6} {'best step':>9} {'best val':>9} {'final loss':>10} {'time':>8}  stopped"
    print(header)
    for i in infos:
        final = i.get("final_loss_ema") if i.get("final_loss_ema") is not None else i.get("final_loss")
        print(f"{i['name']:<24} {i.get('steps', 0):>6} {_fmt(i.get('best_step'), 'd'):>9} "
              f"{_fmt(i.get('best_val_loss'), '.5f'):>9} {_fmt(final, '.5f'):>10} {_time(i.get('seconds')):>8}  "
              f"{i.get('reason', 'unknown')}")
    return 0
