"""Train tab: the form on the left (generated from TrainConfig's fields: the basic ones first, then
one collapsible group per config section; a method's own section shows while that method is
chosen), Train / Interrupt / Resume and the live output on the right (tab_train_output.py).
"Continue a run" loads a run's stored config into the form for Resume (train_resume.py)."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import GROUPS
from . import pickers, tab_train_output, train_resume
from .context import UNPACK, Context, clicked, packed
from .forms import FieldSpec, build_train_config, example_prompts, train_fields

BASIC = "run"   # the group train_fields() puts first (what to train, on which images); the rest collapse
OPEN = ("schedule",)  # groups open at first: learning rate, steps and batch are set on every run


def start(ctx: Context, specs, model, family, *values) -> str:
    cfg = build_train_config(specs, list(values), ctx.guard, ctx.model_path(model), family or None)
    job = ctx.jobs.start(cfg)
    return f"Started run {job.id}: training `{Path(cfg.trained_file).name}` for {cfg.steps} steps."


def resume(ctx: Context, specs, run, *values) -> str:
    root, cfg, diff = train_resume.config(ctx, specs, run, list(values))
    job = ctx.jobs.start(cfg, resume=str(root))
    changed = f" Changed: {train_resume.describe(diff, specs)}." if diff else ""
    return f"Resumed `{ctx.guard.show(root)}` as run {job.id}, up to step {cfg.steps}, with its stored settings.{changed}"


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


def load_run(ctx: Context, specs, run):
    """Choosing a run: its stored values in the form, read-only where resume may not change them;
    "New run" unlocks every field and keeps what it holds."""
    import gradio as gr

    if not run:
        return [gr.update(interactive=True) for _ in specs] + [""]
    root, cfg = train_resume.stored(ctx, run)
    values = train_resume.form_values(specs, cfg, ctx.guard.show)
    updates = [gr.update(value=v, interactive=not train_resume.locked(s)) for s, v in zip(specs, values)]
    note = (f"Loaded `{ctx.guard.show(root / 'config.toml')}` (model `{ctx.guard.show(cfg.model.model)}`). "
            "**Resume** continues it exactly; greyed fields shape what is trained and keep the run's values. "
            "Choose *New run* to edit everything." + train_resume.several_note(ctx, cfg))
    return updates + [note]


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
    if spec.kind in ("choice", "switch"):
        choices = ([("auto", "")] if spec.optional else []) + [(c, c) for c in spec.choices]
        return gr.Dropdown(choices, value=spec.default or "", allow_custom_value=spec.custom, **common)
    return gr.Textbox(value="" if spec.default is None else str(spec.default), **common)


def _grid(specs: list[FieldSpec], widgets: dict, ctx: Context, per_row: int = 2) -> None:
    import gradio as gr

    for i in range(0, len(specs), per_row):
        with gr.Row(equal_height=True):
            for spec in specs[i:i + per_row]:
                widgets[spec.key] = _widget(spec, ctx)


def _form(specs: list[FieldSpec], widgets: dict, ctx: Context) -> dict:
    """The basic fields, then the chosen method's own section (open, before the other groups), then
    one closed group per other section in the order train_fields() gives them. Returns {section:
    accordion} for the sections named after a method (each shown while its method is chosen)."""
    import gradio as gr

    _grid([s for s in specs if s.section == BASIC], widgets, ctx)
    methods = next((s.choices for s in specs if s.key == "method"), ())
    method = next((s.default for s in specs if s.key == "method"), None)
    by_method = {}
    sections = dict.fromkeys(s.section for s in specs if s.section != BASIC)
    for section in sorted(sections, key=lambda name: name not in methods):  # stable: the rest keep their order
        own = section in methods
        with gr.Accordion(GROUPS[section] + (" (this method's settings)" if own else ""), open=own or section in OPEN,
                          visible=not own or section == method, elem_id=f"train-section-{section}") as box:
            _grid([s for s in specs if s.section == section], widgets, ctx)
        if own:
            by_method[section] = box
    return by_method


def build(ctx: Context, model, family) -> None:
    import gradio as gr

    specs = train_fields()
    widgets: dict = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, elem_id="train-form"):
            with gr.Row(equal_height=True):
                run = gr.Dropdown([train_resume.NEW_RUN], value="", label="Continue a run",
                                  info="a run under the log folder: loads its settings for Resume", scale=5,
                                  elem_id="train-run")
                refresh = gr.Button("Refresh", scale=1, min_width=80, elem_id="train-run-refresh")
            note = gr.Markdown(elem_id="train-run-note")
            by_method = _form(specs, widgets, ctx)
            with gr.Accordion("Example prompts", open=False, elem_id="train-example-prompts"):
                preview_button = gr.Button("Show example prompts")
                prompts = gr.Textbox(label="Example prompts", lines=4, show_label=False, elem_id="train-prompts")
        with gr.Column(scale=5, elem_id="train-live"):
            with gr.Row():
                train_button = gr.Button("Train", variant="primary", elem_id="train-button")
                interrupt_button = gr.Button("Interrupt", variant="stop", elem_id="interrupt-button")
                resume_button = gr.Button("Resume", elem_id="resume-button")
            live = tab_train_output.build(ctx.jobs)
    values = [widgets[s.key] for s in specs]

    if by_method:

        def show_sections(method):
            updates = [gr.update(visible=method == name) for name in by_method]
            return updates[0] if len(updates) == 1 else updates  # one output takes one update, not a list
        widgets["method"].change(show_sections, widgets["method"], list(by_method.values()), show_progress="hidden")
    log_dir = widgets.get("log_dir")
    listed = [log_dir] if log_dir else []

    def list_runs(folder="runs"):
        return gr.update(choices=train_resume.choices(ctx, folder))
    # Also read when the dropdown opens, so it lists the runs of the log folder the form names now.
    for event in (refresh.click, run.focus):
        clicked(event, list_runs, listed, run, clear=False)
    # Loading a run writes the form's 101 fields from one text, in the browser (context.PACK says why).
    loaded = gr.Textbox(visible=False)
    clicked(run.input, lambda r: json.dumps(load_run(ctx, specs, r)), run, loaded, clear=False).success(
        None, loaded, [*values, note], js=UNPACK, queue=False, show_progress="hidden")
    # Example prompts, Train and Resume send the form packed in one value (context.PACK says why),
    # each in a carrier of its own, so a click on one meanwhile cannot swap another's payload.
    prompts_carrier, train_carrier, resume_carrier = (gr.Textbox(visible=False) for _ in range(3))
    then, unpack_prompts = packed(preview_button.click, values, prompts_carrier)
    clicked(then, lambda p: prompts_preview(ctx, specs, unpack_prompts(p)), prompts_carrier, prompts)
    then, unpack = packed(train_button.click, [model, family, *values], train_carrier)
    live.follow(clicked(then, lambda p: start(ctx, specs, *unpack(p)), train_carrier, live.action))
    then, unpack_resume = packed(resume_button.click, [run, *values], resume_carrier)
    live.follow(clicked(then, lambda p: resume(ctx, specs, *unpack_resume(p)), resume_carrier, live.action))
    interrupt_button.click(lambda: interrupt(ctx), None, live.action)
