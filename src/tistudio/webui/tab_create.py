"""Create embedding tab: a new embedding file (and, for DreamArtist, its NAME-neg partner)."""
from __future__ import annotations

from .. import api
from .context import OVERWRITE, SAY_OVERWRITE, Context, clicked
from .runs import compat_summary


def create(ctx: Context, model, family, name, init_text, vectors, neg_vectors, neg_init_text, out_dir,
           fmt, overwrite) -> str:
    out = ctx.guard.resolve(out_dir, "Embeddings folder")
    name = (name or "").strip()
    c = ctx.components(model, family)
    if neg_vectors and int(neg_vectors) > 0:
        # DreamArtist's pair: NAME and NAME-neg, the negative with a small starting noise.
        written = list(api.create_dreamartist_pair(c, name, init_text or "", int(vectors), neg_init_text or "",
                                                   int(neg_vectors), out, bool(overwrite), fmt))
    else:
        written = [api.create_embedding(c, name, init_text or "", int(vectors), out, bool(overwrite), fmt)]
    shown = ", ".join(f"`{ctx.guard.show(p)}`" for p in written)
    compat = "\n\n".join(compat_summary(p, ctx.guard.show) for p in written)
    return f"Created {shown} ({int(vectors)} vector(s), {c.family.name}, init text {init_text!r}).\n\n{compat}"


def build(ctx: Context, model, family) -> None:
    import gradio as gr

    with gr.Row():
        name = gr.Textbox(label="Name (the trigger word, also the file name)")
        init_text = gr.Textbox(label="Initialization text", value="*",
                               info="words the vectors start from, e.g. 'painting'; empty gives zeros")
    with gr.Row():
        vectors = gr.Number(label="Vectors per token", value=1, precision=0, minimum=1, maximum=75)
        neg_vectors = gr.Number(label="Negative vectors (DreamArtist; 0 = none)", value=0, precision=0,
                                minimum=0, maximum=75)
        neg_init = gr.Textbox(label="Negative initialization text (DreamArtist)", value="*")
    with gr.Row():
        out_dir = gr.Textbox(label="Embeddings folder", value="embeddings")
        fmt = gr.Dropdown(["a1111-pt", "safetensors"], value="a1111-pt", label="File format")
        overwrite = gr.Checkbox(label=OVERWRITE, value=False)
    button = gr.Button("Create embedding", variant="primary")
    result = gr.Markdown(elem_id="create-result")
    clicked(button.click, lambda *a: create(ctx, *a),
            [model, family, name, init_text, vectors, neg_vectors, neg_init, out_dir, fmt, overwrite], result, say=SAY_OVERWRITE)
