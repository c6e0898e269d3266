"""The Gradio page: a model box shared by every tab, then Create embedding, Create hypernetwork,
Preprocess images, Train (embeddings and hypernetworks), Generate and Runs. `serve` checks the bind address and credentials before anything listens."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import tab_train_output
from .context import Context
from .jobs import JobRegistry
from .safety import PathGuard, check_bind

FAMILIES = [("detect", ""), ("SD 1.x", "sd1"), ("SD 2.x", "sd2"), ("SDXL", "sdxl")]


def make_context(root: str | Path, model: str | None = None, jobs: JobRegistry | None = None) -> Context:
    guard = PathGuard.at(root, trusted=(model,) if model else ())
    scratch = Path(tempfile.mkdtemp(prefix="tistudio-webui-"))
    return Context(guard, jobs or JobRegistry(), str(Path(model).expanduser().resolve()) if model else "", scratch)


def build_app(ctx: Context):
    import gradio as gr

    from . import pickers, tab_create, tab_create_hypernetwork, tab_generate, tab_preprocess, tab_runs, tab_train

    with gr.Blocks(title="TI Studio", analytics_enabled=False) as app:
        gr.Markdown(f"## TI Studio\nFiles are read and written under `{ctx.guard.root}`; "
                    "relative paths start there.")
        with gr.Row():
            model = pickers.dropdown(ctx, "model", "Model (a diffusers folder or .safetensors/.ckpt file; pick one "
                                     "found under the root or type a path)", ctx.default_model,
                                     elem_id="model-path", scale=4)
            family = gr.Dropdown(FAMILIES, value="", label="Family", scale=1)
        with gr.Tab("Create embedding", elem_id="tab-create"):
            tab_create.build(ctx, model, family)
        with gr.Tab("Create hypernetwork", elem_id="tab-create-hypernetwork"):
            tab_create_hypernetwork.build(ctx, model, family)
        with gr.Tab("Preprocess images", elem_id="tab-preprocess"):
            tab_preprocess.build(ctx)
        with gr.Tab("Train", elem_id="tab-train"):
            tab_train.build(ctx, model, family)
        with gr.Tab("Generate", elem_id="tab-generate"):
            tab_generate.build(ctx, model, family)
        with gr.Tab("Runs", elem_id="tab-runs"):
            tab_runs.build(ctx)
    return app


def serve(ctx: Context, host: str = "127.0.0.1", port: int = 7860, auth: list | None = None,
          block: bool = True):
    """Start the server; with block=False return (app, url) and leave it running in a thread."""
    check_bind(host, auth)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never the network
    import gradio as gr

    # System fonts: the default theme would fetch Google Fonts, which an offline machine cannot.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    app = build_app(ctx)
    app.queue(default_concurrency_limit=2)
    # quiet: gradio's own start-up lines advertise share=True, a public tunnel this tool never opens;
    # `tistudio webui` prints the address itself.
    _, url, _ = app.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True,
                           allowed_paths=[str(ctx.guard.root), str(ctx.scratch)], theme=theme,
                           css=tab_train_output.CSS, ssr_mode=False, quiet=True, show_error=True,
                           footer_links=[])
    if block:
        app.block_thread()
    return app, url
