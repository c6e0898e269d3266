"""The Train tab's live side: status line, loss chart (training loss, its moving average, validation
points), the latest preview and the previews by step, messages. A timer polls the job registry, every
second while a run trains and every IDLE_SECONDS otherwise, so a reopened page picks up a run that
kept going.

Training runs in a process of its own (jobs.py), so the poll never holds up a step's Python; it
still shares the machine's cores with the run, and so does the browser handling what it sends. In the
browser the cost of a tick is mostly gradio's own: every event's status changes walk every component
that was ever an event's input or output (the Train click's form fields among them), unchanged
outputs or not. So the ticks are few and light: outside the queue (3 status changes each, not 5), slow
while nothing trains, and each sends only what changed since the last one (loss.csv is read only when
the file changed, each saved file judged once, a long chart redrawn only every few seconds, at most
MAX_POINTS points per series)."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import in_labels
from ..errors import TIStudioError
from ..runs.folder import LOSS_FILE
from ..train.outputs import moving_average
from . import runs as run_files
from .jobs import JobView

POLL_SECONDS = 1.0
# While nothing trains a tick only notices a run started from another page (this page's Train and
# Resume switch to POLL_SECONDS at once): every 10 s instead of every second.
IDLE_SECONDS = 10.0
# Drawing the chart is the browser's costliest work per tick, growing with its points (up to
# MAX_POINTS per series): a chart is redrawn at most every CHART_SECONDS x points / MAX_POINTS, so a
# short one still follows every tick and a long one (a toy run makes ~90 points a second) every 5 s.
CHART_SECONDS = 5.0
MAX_POINTS = 1000   # per series: a 3000-step run still draws its shape, at a third of the bytes per tick
SERIES = {"training": "#fdba74", "moving average": "#ea580c", "validation": "#2563eb"}
# Tiny previews (the toy model draws 32 px) are scaled up with hard pixels instead of shown as a dot;
# the form scrolls while the live side stays in view.
CSS = """
#latest-preview img, #preview-gallery img { image-rendering: pixelated; }
#latest-preview img { width: 100%; height: 100%; object-fit: contain; }
#train-live { position: sticky; top: 8px; align-self: flex-start; }
"""


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def status_text(v: JobView | None) -> str:
    if v is None:
        return "No training run in this session yet."
    head = f"**{v.name}** (run {v.id}{', resumed' if v.resume else ''}): "
    if v.status == "failed":
        return head + f"failed: {in_labels(v.error or '')}"  # the form's labels, not the CLI's flags
    if v.last is None:
        state = "preparing (loading the model, caching latents)..." if v.status == "running" else v.status
        if v.status == "running" and v.caching is not None:
            c = v.caching
            state = f"caching latents: **{c.done}/{c.total}** images | ETA {_eta(c.eta_seconds)}"
        elif v.finished:
            state = v.finished.reason
        return head + state
    p = v.last
    if v.status == "running":
        state = "stopping after this step" if v.stopping else "training"
    else:
        state = v.finished.reason if v.finished else v.status
    speed = f"{1 / p.seconds_per_step:.2f} it/s" if p.seconds_per_step > 0 else "-"
    return (f"{head}{state} | step **{p.step}/{p.max_steps}** | loss {p.loss:.4f} | lr {p.lr:.3g} | "
            f"{speed} | ETA {_eta(p.eta_seconds) if v.status == 'running' else '0:00:00'}")


def saved_text(v: JobView | None) -> str:
    """The files a finished run wrote and which programs load them (below the chart: the status
    stays one line)."""
    if v is None or not (v.finished and v.finished.outputs):
        return ""
    text = "Saved: " + ", ".join(f"`{o}`" for o in v.finished.outputs)
    # An .optim is a side file no program loads by itself: nothing to judge.
    return text + "".join(f"\n\n{_compat(o, os.stat(o).st_mtime_ns)}" for o in v.finished.outputs
                          if os.path.isfile(o) and not o.endswith(".optim"))


@functools.lru_cache(maxsize=64)
def _compat(path: str, mtime_ns: int) -> str:
    """The page polls every second: judge each saved file once (per version of it)."""
    try:
        return run_files.compat_summary(Path(path))
    except TIStudioError as exc:
        return f"`{path}`: {exc}"


@functools.lru_cache(maxsize=8)
def _loss_rows(path: str, mtime_ns: int) -> tuple[dict, ...]:
    """loss.csv, read again only when training flushed it."""
    return tuple(run_files.loss_rows(Path(path)))


def _rows(run_dir: str) -> tuple[dict, ...]:
    csv_path = Path(run_dir) / LOSS_FILE  # not RunFolder.open: it reads run.json, at every redraw
    try:
        mtime = csv_path.stat().st_mtime_ns
    except OSError:
        return ()
    return _loss_rows(run_dir, mtime)


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most MAX_POINTS of them, evenly spaced, the last one always kept."""
    if len(points) <= MAX_POINTS:
        return points
    stride = -(-len(points) // MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def chart(v: JobView | None):
    """Loss points for the chart: the run's loss.csv history before this job's first step (a resumed
    run shows its whole curve), this job's live steps, their moving average (loss.csv's loss_ema,
    continued live with the same formula) and validation loss where the run logs it. None while
    there is nothing to draw: the plot fixes its axis types from the first frame it gets, so it must
    never be handed an empty one."""
    import pandas as pd

    if v is None:
        return None
    rows = _rows(v.run_dir)
    live = {step: loss for step, loss, _ in v.points}
    first = min(live, default=float("inf"))
    before = [r for r in rows if "loss" in r and r["step"] < first]
    train = {int(r["step"]): r["loss"] for r in before}
    ema = {int(r["step"]): r["loss_ema"] for r in before if "loss_ema" in r}
    avg = ema[max(ema)] if ema else None
    for step in sorted(live):
        avg = moving_average(avg, live[step])
        train[step], ema[step] = live[step], avg
    if not train:
        return None
    series = {"training": sorted(train.items()), "moving average": sorted(ema.items()),
              "validation": [(int(r["step"]), r["val_loss"]) for r in rows if "val_loss" in r]}
    points = [{"step": step, "loss": loss, "series": name}
              for name, values in series.items() for step, loss in _thin(values)]
    return pd.DataFrame(points, columns=["step", "loss", "series"])


def _gallery(v: JobView) -> list[tuple[str, str]]:
    """Every preview of the run folder up to the current step (a resumed run keeps its earlier ones),
    newest first."""
    step = v.last.step if v.last else 0
    shown = {s: str(p) for p, s in run_files.previews(Path(v.run_dir)) if s <= step}
    shown.update({p.step: p.path for p in v.previews})
    return [(path, f"step {s}") for s, path in sorted(shown.items(), reverse=True)]


def _redraw(now: dict, seen: dict, clock) -> bool:
    """Whether the chart is drawn again this tick: there are new points and it shows another run,
    another status (the last points of a finished run come at once), or is old enough for its size."""
    drawn = seen.get("drawn")  # (run, points, status) the chart shows
    key = (now["id"], now["points"], now["status"])
    if key == drawn:
        return False
    return drawn is None or drawn[0] != key[0] or drawn[2] != key[2] or \
        clock() - seen.get("drawn_at", 0.0) >= CHART_SECONDS * min(1.0, drawn[1] / MAX_POINTS)


def poll(jobs, seen: dict | None, clock=time.monotonic):
    """Outputs for one timer tick; pieces that did not change are skipped so images do not flicker,
    and the timer's interval is sent when it changes (fast while the latest run trains)."""
    import gradio as gr

    job = jobs.latest()
    v = job.view() if job else None
    seen = seen or {}
    now = {"id": v.id if v else None, "status": v.status if v else None, "points": len(v.points) if v else 0,
           "previews": len(v.previews) if v else 0, "messages": len(v.messages) if v else 0,
           "stopping": v.stopping if v else False, "caching": v.caching.done if v and v.caching else 0,
           "interval": POLL_SECONDS if v and v.status == "running" else IDLE_SECONDS}
    if all(seen.get(k) == value for k, value in now.items()) and seen:
        return (gr.skip(),) * 7 + (seen,)
    images_changed = (now["id"], now["previews"]) != (seen.get("id"), seen.get("previews"))
    latest = v.previews[-1].path if v and v.previews else None
    # Messages come a few per run while the status changes every step: the box is rewritten only
    # when one is added (or another run is shown); the saved files only when the status changes.
    messages = ("\n".join(f"{m.level}: {m.text}" for m in v.messages) if v else "") \
        if (now["id"], now["messages"]) != (seen.get("id"), seen.get("messages")) else gr.skip()
    saved = saved_text(v) if (now["id"], now["status"]) != (seen.get("id"), seen.get("status")) else gr.skip()
    timer = gr.Timer(now["interval"]) if now["interval"] != seen.get("interval") else gr.skip()
    frame = chart(v) if _redraw(now, seen, clock) else None
    drawn = {"drawn": (now["id"], now["points"], now["status"]), "drawn_at": clock()} if frame is not None else \
        {k: seen[k] for k in ("drawn", "drawn_at") if k in seen}
    return (status_text(v), gr.skip() if frame is None else frame,
            latest if images_changed else gr.skip(), (_gallery(v) if v else []) if images_changed else gr.skip(),
            messages, saved, timer, {**now, **drawn})


@dataclass(frozen=True)
class Live:
    """The live side's components, for the form's buttons to write into."""
    action: object
    status: object
    timer: object
    seen: object

    def follow(self, dependency) -> None:
        """Once `dependency` (a Train or Resume click) has started a run, the timer polls every
        POLL_SECONDS at once, not at its next idle tick; the poll's record of the interval says so,
        so that it slows the timer again even if the run has ended before the next tick."""
        import gradio as gr

        def fast(seen):
            return gr.Timer(POLL_SECONDS), {**(seen or {}), "interval": POLL_SECONDS}
        dependency.success(fast, self.seen, [self.timer, self.seen], queue=False, show_progress="hidden")


def build(jobs) -> Live:
    """The right-hand column's content under the buttons; starts the polling timer."""
    import gradio as gr

    action = gr.Markdown(elem_id="train-action")
    status = gr.Markdown(status_text(None), elem_id="train-status")
    plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss", show_label=False, height=240, elem_id="loss-chart",
                       color_title="", color_map=SERIES, colors_in_legend=list(SERIES), x_title="step", y_title="loss")
    with gr.Row():
        latest = gr.Image(label="Latest preview", type="filepath", height=220, elem_id="latest-preview",
                          show_label=True, scale=1, min_width=200)
        gallery = gr.Gallery(label="Previews by step (newest first)", columns=2, height=220,
                             elem_id="preview-gallery", object_fit="contain", scale=1, min_width=200)
    messages = gr.Textbox(label="Messages", lines=3, max_lines=8, elem_id="train-messages")
    saved = gr.Markdown(elem_id="train-saved")
    seen = gr.State(None)
    timer = gr.Timer(POLL_SECONDS)  # the first tick shows the latest run and sets the pace
    # Outside the queue: a poll is light, and waits behind no Generate or Preprocess.
    timer.tick(lambda s: poll(jobs, s), seen, [status, plot, latest, gallery, messages, saved, timer, seen],
               show_progress="hidden", queue=False)
    return Live(action, status, timer, seen)
