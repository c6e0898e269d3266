"""Generate tab: txt2img with every embedding in a folder usable by name in either prompt; the
embeddings found there are listed, and clicking one puts its trigger word into the prompt."""
from __future__ import annotations

from .. import api
from ..config import SAMPLERS
from ..errors import TIStudioError
from . import pickers
from .context import Context, user_errors

EMBEDDING_COLUMNS = ["trigger", "family", "vectors", "step", "file", "loads in"]


def generate(ctx: Context, model, family, prompt, negative, emb_dir, sampler, steps, cfg, seed, width, height,
             n, clip_skip, out_dir):
    from ..generate.sample import GenerateOptions

    if ctx.jobs.running() is not None:
        # The run has the cores (and a copy of the model in memory): sampling beside it would slow
        # both and load a second copy.
        raise TIStudioError("Generate: a run is training on the model; wait for it or interrupt it first")
    if not (prompt or "").strip():
        raise TIStudioError("Prompt: empty; describe the image, using an embedding's name as a word")
    options = GenerateOptions(prompt=prompt, negative_prompt=negative or "", sampler=sampler, steps=int(steps),
                              cfg=float(cfg), seed=int(seed), width=int(width) if width else None,
                              height=int(height) if height else None, n=int(n))
    embeddings = ctx.guard.optional(emb_dir, "Embeddings folder", "dir")
    out = ctx.guard.resolve(out_dir, "Output folder")
    c = ctx.components(model, family)
    notes: list[str] = []  # which embeddings the prompts used, unmatched <words>, scan warnings
    paths = api.generate(c, options, embeddings, out, int(clip_skip), say=notes.append, within=ctx.guard.root)
    from PIL import Image

    with Image.open(paths[0]) as first:
        info = first.info.get("parameters", "")
    return [str(p) for p in paths], "\n\n".join([info, *(["\n".join(notes)] if notes else [])])


def found_embeddings(ctx: Context, emb_dir, quiet: bool = False) -> list[list]:
    """Rows of the embeddings table: one per trigger under the folder (NAME.pt and NAME.safetensors
    with one trigger, as train writes them, are one row naming both files). `quiet`: a missing
    folder lists nothing instead of raising (the page's first load, before anything exists)."""
    if not (emb_dir or "").strip() or quiet and not ctx.guard.resolve(emb_dir, "Embeddings folder").is_dir():
        return []
    rows: dict[str, list] = {}
    for e in pickers.scan(ctx.guard, emb_dir).of("embedding"):
        if e.trigger in rows:
            rows[e.trigger][4] += f", {e.value}"
        else:
            rows[e.trigger] = [e.trigger, e.family, e.vectors, e.step, e.value, e.summary.removeprefix("loads in: ")]
    return sorted(rows.values(), key=lambda r: r[0].lower())


def insert_trigger(prompt: str, trigger: str) -> str:
    """The prompt with `trigger` added at the end as a word (once: a second click does not repeat it)."""
    prompt = (prompt or "").rstrip()
    if trigger in prompt.replace(",", " ").split():
        return prompt
    return f"{prompt} {trigger}".lstrip()


def build(ctx: Context, model, family) -> None:
    import gradio as gr

    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="gen-prompt",
                                info="use an embedding by its file name, e.g. 'a photo of myname'")
            negative = gr.Textbox(label="Negative prompt", lines=2)
            with gr.Row():
                emb_dir = gr.Textbox(label="Embeddings folder", value="embeddings")
                out_dir = gr.Textbox(label="Output folder", value="outputs")
            with gr.Row():
                sampler = gr.Dropdown(list(SAMPLERS), value="euler_a", label="Sampler")
                steps = gr.Number(label="Sampling steps", value=20, precision=0, minimum=1)
                cfg = gr.Number(label="CFG scale", value=7.0)
                seed = gr.Number(label="Seed", value=0, precision=0)
            with gr.Row():
                width = gr.Number(label="Width (0 = the model's)", value=0, precision=0)
                height = gr.Number(label="Height (0 = the model's)", value=0, precision=0)
                n = gr.Number(label="Batch count", value=1, precision=0, minimum=1)
                clip_skip = gr.Number(label="Clip skip", value=1, precision=0, minimum=1, maximum=4)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Images", columns=2, height=320, elem_id="gen-gallery", object_fit="contain")
            info = gr.Textbox(label="Parameters", lines=3, elem_id="gen-info")
    with gr.Row(equal_height=True):
        gr.Markdown("**Embeddings in the folder**: click one to add its trigger word to the prompt")
        refresh = pickers.refresh_button("gen-embeddings-refresh")
    table = gr.Dataframe(found_embeddings(ctx, "embeddings", quiet=True), headers=EMBEDDING_COLUMNS,
                         interactive=False, elem_id="gen-embeddings", wrap=True,
                         column_widths=["12%", "14%", "7%", "6%", "21%", "40%"])
    listing = user_errors(lambda d: found_embeddings(ctx, d))
    for event in (refresh.click, emb_dir.submit, emb_dir.blur):
        event(listing, emb_dir, table, show_progress="hidden")
    gr.on(None, lambda: found_embeddings(ctx, "embeddings", quiet=True), None, table,
          show_progress="hidden")  # page load: the folder's default

    def insert(prompt, evt):
        row = evt.row_value or []
        return insert_trigger(prompt, str(row[0])) if row else prompt

    # gradio hands the clicked cell to the parameter annotated SelectData; the string annotations of
    # this module (the __future__ import) name a `gr` it cannot resolve, so the class is set here.
    insert.__annotations__["evt"] = gr.SelectData

    table.select(insert, prompt, prompt)
    button.click(user_errors(lambda *a: generate(ctx, *a)),
                 [model, family, prompt, negative, emb_dir, sampler, steps, cfg, seed, width, height, n, clip_skip,
                  out_dir], [gallery, info])
