"""Train tab: the form (from TrainConfig's fields), Train / Interrupt / Resume, and live progress that
polls the job registry every second, so a reopened page picks up a run that kept going."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from ..config import GROUPS, METHODS
from ..errors import TIStudioError
from ..runs.identity import folder_for
from . import pickers, runs as run_files
from .context import Context, user_errors
from .forms import FieldSpec, build_train_config, example_prompts, train_fields
from .jobs import JobView

POLL_SECONDS = 1.0


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def status_text(v: JobView | None) -> str:
    if v is None:
        return "No training run in this session yet."
    head = f"**{v.name}** (run {v.id}{', resumed' if v.resume else ''}): "
    if v.status == "failed":
        return head + f"failed: {v.error}"
    if v.last is None:
        state = "preparing (loading the model, caching latents)..." if v.status == "running" else v.status
        if v.status == "running" and v.caching is not None:
            c = v.caching
            state = f"caching latents: **{c.done}/{c.total}** images | ETA {_eta(c.eta_seconds)}"
        return head + state
    p = v.last
    if v.status == "running":
        state = "stopping after this step" if v.stopping else "training"
    else:
        state = v.finished.reason if v.finished else v.status
    speed = f"{1 / p.seconds_per_step:.2f} it/s" if p.seconds_per_step > 0 else "-"
    text = (f"{head}{state} | step **{p.step}/{p.max_steps}** | loss {p.loss:.4f} | lr {p.lr:.3g} | "
            f"{speed} | ETA {_eta(p.eta_seconds) if v.status == 'running' else '0:00:00'}")
    if v.finished and v.finished.outputs:
        text += "\n\nSaved: " + ", ".join(f"`{o}`" for o in v.finished.outputs)
        # An .optim is a side file no program loads by itself: nothing to judge.
        text += "".join(f"\n\n{_compat(o, os.stat(o).st_mtime_ns)}" for o in v.finished.outputs
                        if os.path.isfile(o) and not o.endswith(".optim"))
    return text


@functools.lru_cache(maxsize=64)
def _compat(path: str, mtime_ns: int) -> str:
    """The page polls every second: judge each saved file once (per version of it)."""
    try:
        return run_files.compat_summary(Path(path))
    except TIStudioError as exc:
        return f"`{path}`: {exc}"


def chart(v: JobView | None):
    """Loss points for the chart: the run's loss.csv history before this job's first step (a resumed
    run shows its whole curve), this job's live steps, and validation loss when the run logs it.
    None while there is nothing to draw: the plot fixes its axis types from the first frame it gets,
    so it must never be handed an empty one."""
    import pandas as pd

    if v is None:
        return None
    rows = run_files.loss_rows(Path(v.run_dir))
    live = {step: loss for step, loss, _ in v.points}
    first = min(live, default=float("inf"))
    train = {int(r["step"]): r["loss"] for r in rows if "loss" in r and r["step"] < first}
    train.update(live)
    if not train:
        return None
    points = [{"step": step, "loss": loss, "series": "training"} for step, loss in sorted(train.items())]
    points += [{"step": int(r["step"]), "loss": r["val_loss"], "series": "validation"}
               for r in rows if "val_loss" in r]
    return pd.DataFrame(points, columns=["step", "loss", "series"])


def _gallery(v: JobView) -> list[tuple[str, str]]:
    """Every preview of the run folder up to the current step (a resumed run keeps its earlier ones),
    newest first."""
    step = v.last.step if v.last else 0
    shown = {s: str(p) for p, s in run_files.previews(Path(v.run_dir)) if s <= step}
    shown.update({p.step: p.path for p in v.previews})
    return [(path, f"step {s}") for s, path in sorted(shown.items(), reverse=True)]


def poll(ctx: Context, seen: dict | None):
    """Outputs for one timer tick; pieces that did not change are skipped so images do not flicker."""
    import gradio as gr

    job = ctx.jobs.latest()
    v = job.view() if job else None
    seen = seen or {}
    now = {"id": v.id if v else None, "status": v.status if v else None, "points": len(v.points) if v else 0,
           "previews": len(v.previews) if v else 0, "messages": len(v.messages) if v else 0, "stopping": v.stopping if v else False}
    changed = now != seen
    images_changed = (now["id"], now["previews"]) != (seen.get("id"), seen.get("previews"))
    if not changed:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
    latest = v.previews[-1].path if v and v.previews else None
    gallery = _gallery(v) if v else []
    messages = "\n".join(f"{m.level}: {m.text}" for m in v.messages) if v else ""
    frame = chart(v)
    return (status_text(v), gr.skip() if frame is None else frame, latest if images_changed else gr.skip(),
            gallery if images_changed else gr.skip(), messages, now)


def _config(ctx: Context, specs, model, family, values):
    return build_train_config(specs, list(values), ctx.guard, ctx.model_path(model), family or None)


def start(ctx: Context, specs, model, family, *values) -> str:
    cfg = _config(ctx, specs, model, family, values)
    job = ctx.jobs.start(cfg)
    return f"Started run {job.id}: training `{Path(cfg.trained_file).name}` for {cfg.steps} steps."


def resume(ctx: Context, specs, model, family, *values) -> str:
    cfg = _config(ctx, specs, model, family, values)
    run = folder_for(cfg.log_dir, cfg.trained_file)  # the folder training chose for this file
    run_dir = run.root
    if not run.state.is_file():
        raise TIStudioError(f"Resume: {ctx.guard.show(run_dir)} has no saved state; press Train to start a run")
    job = ctx.jobs.start(cfg, resume=str(run_dir))
    return f"Resumed `{ctx.guard.show(run_dir)}` as run {job.id}, up to step {cfg.steps}."


def interrupt(ctx: Context) -> str:
    job = ctx.jobs.interrupt()
    if job is None:
        return "Nothing is training."
    return f"Interrupting run {job.id}: it saves and stops after the current step."


def prompts_preview(ctx: Context, specs, values) -> str:
    v = dict(zip([s.key for s in specs], values))
    data = ctx.guard.optional(v.get("data"), "Dataset folder", "dir")
    template = v.get("template") or "none"
    shipped = next((s.choices for s in specs if s.key == "template"), ())
    if template not in shipped:
        template = str(ctx.guard.resolve(template, "Prompt template", "file"))
    name = Path(v.get("hypernetwork") or v.get("embedding") or "NAME").stem
    return "\n".join(example_prompts(template, name, data, v.get("filename_regex") or None,
                                     v.get("filename_join") or " "))


def _widget(spec: FieldSpec, ctx: Context):
    import gradio as gr

    if spec.key in pickers.FORM_PICKERS:
        return pickers.widget(spec, ctx)
    common = dict(label=spec.label, info=spec.info or None, elem_id=f"train-{spec.key.replace('.', '-')}")
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "int":
        return gr.Number(value=spec.default, precision=0, **common)
    if spec.kind == "float":
        return gr.Number(value=spec.default, **common)
    if spec.kind == "multi":
        return gr.CheckboxGroup(list(spec.choices), value=list(spec.default), **common)
    if spec.kind == "choice":
        choices = ([("auto", "")] if spec.optional else []) + [(c, c) for c in spec.choices]
        return gr.Dropdown(choices, value=spec.default or "", allow_custom_value=spec.custom, **common)
    return gr.Textbox(value="" if spec.default is None else str(spec.default), **common)


def _grid(specs: list[FieldSpec], widgets: dict, ctx: Context, per_row: int = 4) -> None:
    import gradio as gr

    for i in range(0, len(specs), per_row):
        with gr.Row():
            for spec in specs[i:i + per_row]:
                widgets[spec.key] = _widget(spec, ctx)


def build(ctx: Context, model, family) -> None:
    import gradio as gr

    specs = train_fields()
    widgets: dict = {}
    method_default = next((s.default for s in specs if s.key == "method"), None)
    sections = {}  # a method's own group (dreamartist): shown while that method is chosen
    for section in dict.fromkeys(s.section for s in specs):
        with gr.Accordion(GROUPS[section], open=True,
                          visible=section not in METHODS or section == method_default) as box:
            _grid([s for s in specs if s.section == section], widgets, ctx)
        if section in METHODS:
            sections[section] = box
    values = [widgets[s.key] for s in specs]
    with gr.Row():
        preview_button = gr.Button("Show example prompts")
        train_button = gr.Button("Train", variant="primary", elem_id="train-button")
        interrupt_button = gr.Button("Interrupt", variant="stop", elem_id="interrupt-button")
        resume_button = gr.Button("Resume", elem_id="resume-button")
    prompts = gr.Textbox(label="Example prompts", lines=3, visible=True)
    action = gr.Markdown(elem_id="train-action")
    status = gr.Markdown(status_text(None), elem_id="train-status")
    with gr.Row():
        plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss", height=260, elem_id="loss-chart",
                           scale=2, color_map={"training": "#ea580c", "validation": "#2563eb"})
        latest = gr.Image(label="Latest preview", type="filepath", height=260, elem_id="latest-preview", scale=1)
    gallery = gr.Gallery(label="Previews by step (newest first)", columns=8, height=200, elem_id="preview-gallery",
                         object_fit="contain", fit_columns=False)
    messages = gr.Textbox(label="Messages", lines=2, elem_id="train-messages")
    seen = gr.State(None)
    timer = gr.Timer(POLL_SECONDS)

    if "method" in widgets and sections:
        widgets["method"].change(lambda m: [gr.update(visible=m == name) for name in sections],
                                 widgets["method"], list(sections.values()))
    preview_button.click(user_errors(lambda *v: prompts_preview(ctx, specs, v)), values, prompts)
    train_button.click(user_errors(lambda m, f, *v: start(ctx, specs, m, f, *v)), [model, family, *values], action)
    resume_button.click(user_errors(lambda m, f, *v: resume(ctx, specs, m, f, *v)), [model, family, *values], action)
    interrupt_button.click(lambda: interrupt(ctx), None, action)
    timer.tick(lambda s: poll(ctx, s), seen, [status, plot, latest, gallery, messages, seen],
               show_progress="hidden")
