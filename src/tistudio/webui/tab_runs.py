"""Runs tab: past runs under a log folder, their loss curves on one chart, config, previews, and any
saved embedding downloadable in each format, with which programs will load it."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import TIStudioError
from . import runs as run_files
from .context import Context, user_errors

EXPORT_FORMATS = ("a1111-pt", "safetensors", "a1111-png")


def refresh(ctx: Context, log_dir):
    import gradio as gr
    import pandas as pd

    folder = ctx.guard.resolve(log_dir, "Log folder")
    infos = run_files.list_runs(folder)
    table = pd.DataFrame([i.row() for i in infos], columns=run_files.RUN_COLUMNS)
    points = run_files.chart_rows({i.name: run_files.loss_rows(i.path) for i in infos})
    # Never an empty frame: the plot would fix non-numeric axes from it (see tab_train.chart).
    curves = pd.DataFrame(points, columns=["step", "loss", "series"]) if points else gr.skip()
    names = [i.name for i in infos]
    return table, curves, gr.update(choices=names, value=names[-1] if names else None)


def select(ctx: Context, log_dir, name):
    import gradio as gr

    if not name:
        return "", gr.update(choices=[], value=None), []
    run = ctx.guard.resolve(log_dir, "Log folder") / name
    if not (run / "config.toml").is_file():
        raise TIStudioError(f"Run {name}: no config.toml in {ctx.guard.show(run)}; refresh the list")
    files = [p.name for p in run_files.snapshots(run)]
    pictures = [(str(p), f"step {step}") for p, step in run_files.previews(run)]
    return (run / "config.toml").read_text(encoding="utf-8"), gr.update(choices=files,
                                                                         value=files[0] if files else None), pictures


def compat(ctx: Context, log_dir, name, snapshot) -> str:
    """Which programs will load the chosen saved embedding, shown beside it."""
    if not (name and snapshot):
        return ""
    run = ctx.guard.resolve(log_dir, "Log folder") / name
    source = ctx.guard.resolve(str(run / "embeddings" / snapshot), "Embedding", "file")
    return run_files.compat_summary(source, ctx.guard.show)


def download(ctx: Context, log_dir, name, snapshot, fmt):
    if not (name and snapshot):
        raise TIStudioError("Download: pick a run and one of its saved embeddings first")
    run = ctx.guard.resolve(log_dir, "Log folder") / name
    source = ctx.guard.resolve(str(run / "embeddings" / snapshot), "Embedding", "file")
    out = Path(tempfile.mkdtemp(prefix="export-", dir=ctx.scratch))
    return str(run_files.export(source, fmt, out))


def build(ctx: Context) -> None:
    import gradio as gr

    with gr.Row():
        log_dir = gr.Textbox(label="Log folder", value="runs", scale=3)
        refresh_button = gr.Button("Refresh", scale=1, elem_id="runs-refresh")
    table = gr.Dataframe(headers=run_files.RUN_COLUMNS, label="Runs", interactive=False, elem_id="runs-table")
    curves = gr.LinePlot(x="step", y="loss", color="series", label="Loss curves", height=260)
    with gr.Row():
        run = gr.Dropdown([], label="Run", scale=1)
        config = gr.Code(label="Run config", language=None, scale=2, elem_id="run-config")
    pictures = gr.Gallery(label="Previews", columns=8, height=180, object_fit="contain", fit_columns=False)
    with gr.Row():
        snapshot = gr.Dropdown([], label="Saved embedding")
        fmt = gr.Dropdown(list(EXPORT_FORMATS), value="a1111-pt", label="Download as")
        export_button = gr.Button("Prepare download")
    loads_in = gr.Markdown(elem_id="run-compat")
    file = gr.File(label="Download", interactive=False, elem_id="run-download")

    refresh_button.click(user_errors(lambda d: refresh(ctx, d)), log_dir, [table, curves, run])
    run.change(user_errors(lambda d, r: select(ctx, d, r)), [log_dir, run], [config, snapshot, pictures])
    snapshot.change(user_errors(lambda d, r, s: compat(ctx, d, r, s)), [log_dir, run, snapshot], loads_in)
    export_button.click(user_errors(lambda d, r, s, f: download(ctx, d, r, s, f)), [log_dir, run, snapshot, fmt], file)
