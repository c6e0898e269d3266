"""What a user looks at while training runs: RUN/loss.png (training loss, its moving average, the
validation loss and the learning rate) and TensorBoard event files under RUN/tensorboard.

matplotlib and tensorboard are imported inside the functions (the CLI's --help stays instant) and
matplotlib is used through Figure objects with the Agg canvas only: no pyplot state shared between
two runs in one process (the web UI).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..atomic import write_with


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records if r.get(key) is not None and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_figure(records: list[dict], title: str = "", initial_val: float | None = None,
                best_step: int | None = None):
    """A Figure: loss axis (training, moving average, validation, best) and a log-scale lr axis.
    `records` are RunFolder.records() rows."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(*_series(records, "loss"), color="tab:blue", alpha=0.3, linewidth=0.8, label="training loss")
    ax.plot(*_series(records, "loss_ema"), color="tab:blue", linewidth=1.8, label="moving average")
    steps, vals = _series(records, "val_loss")
    if initial_val is not None:  # the loss before any training: did training help at all?
        steps, vals = [0, *steps], [initial_val, *vals]
    if vals:
        ax.plot(steps, vals, color="tab:orange", marker="o", markersize=3, linewidth=1.5, label="validation loss")
    if best_step is not None and best_step in steps:
        ax.plot([best_step], [vals[steps.index(best_step)]], linestyle="none", marker="*", markersize=14,
                color="tab:red", label=f"best (step {best_step})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_steps, lrs = _series(records, "learn_rate")
    lr_ax.plot(lr_steps, lrs, color="grey", linestyle="--", linewidth=1, label="learning rate")
    lr_ax.set_ylabel("learning rate")
    if lrs and min(lrs) > 0:
        lr_ax.set_yscale("log")
    handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def write_loss_plot(path: Path, records: list[dict], **kwargs) -> Path | None:
    """RUN/loss.png, replaced atomically (a viewer never sees half a PNG); None before any step."""
    if not records:
        return None
    fig = loss_figure(records, **kwargs)
    return write_with(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


class Board:
    """TensorBoard scalars and images for one run. On resume, events past the resumed step (from
    the interrupted run) are purged so the curves show the run that actually continued."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def step(self, step: int, loss: float, loss_ema: float | None, lr: float) -> None:
        self.writer.add_scalar("loss/train", loss, step)
        if loss_ema is not None:
            self.writer.add_scalar("loss/moving_average", loss_ema, step)
        self.writer.add_scalar("learning_rate", lr, step)

    def evaluation(self, step: int, values: dict[str, float], health) -> None:
        """`values`: val_loss and any scores; `health`: VectorHealth rows (one curve per vector)."""
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"eval/{key}", value, step)
        for h in health:
            tag = f"{h.embedding}/encoder{h.encoder}/vector{h.index}"
            self.writer.add_scalar(f"norm/{tag}", h.norm, step)
            self.writer.add_scalar(f"norm_ratio/{tag}", h.ratio, step)
            if math.isfinite(h.drift):
                self.writer.add_scalar(f"drift/{tag}", h.drift, step)

    def image(self, tag: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            self.writer.add_image(tag, np.asarray(img.convert("RGB")), step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
