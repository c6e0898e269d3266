"""Create hypernetwork tab: A1111's Create hypernetwork form (its defaults); training is the Train
tab with method "hypernetwork" and the file in "Hypernetwork file"."""
from __future__ import annotations

from .. import api
from ..hypernetwork import format as hn_format
from ..hypernetwork.model import Structure, parse_numbers
from ..hypernetwork.options import ACTIVATIONS, INITS
from .context import OVERWRITE, SAY_OVERWRITE, Context, clicked


def create(ctx: Context, model, family, name, modules, layer_structure, activation, activate_output,
           layer_norm, dropout, init, out_dir, overwrite) -> str:
    out = ctx.guard.resolve(out_dir, "Hypernetworks folder")
    widths = tuple(int(w) for w in modules) if modules else None
    structure = Structure(layer_structure=parse_numbers(layer_structure, "Layer structure"), activation=activation,
                          layer_norm=bool(layer_norm), activate_output=bool(activate_output),
                          dropout=parse_numbers(dropout, "Dropout structure") if (dropout or "").strip() else (),
                          weight_init=INITS[init])
    c = ctx.components(model, family)
    path = api.create_hypernetwork(c, (name or "").strip(), widths, structure, out, bool(overwrite))
    report = hn_format.describe(hn_format.load(path)).replace("\n", "  \n")
    return f"Created `{ctx.guard.show(path)}`.  \n{report}"


def build(ctx: Context, model, family) -> None:
    import gradio as gr

    with gr.Row():
        name = gr.Textbox(label="Name (the file name; <hypernet:NAME:1> in prompts)")
        modules = gr.CheckboxGroup(["768", "1024", "2048", "320", "640", "1280"], value=["768", "320", "640", "1280"],
                                   label="Modules (context widths; SD1 text 768, SD2 1024, SDXL 2048)")
    with gr.Row():
        layer_structure = gr.Textbox(label="Layer structure", value="1, 2, 1")
        activation = gr.Dropdown(list(ACTIVATIONS), value="linear", label="Activation function",
                                 info="ComfyUI reads linear, relu, leakyrelu, elu, swish, tanh, sigmoid, softsign, mish")
        init = gr.Dropdown(list(INITS), value="normal", label="Weight initialization")
    with gr.Row():
        activate_output = gr.Checkbox(label="Activate the output layer too", value=False)
        layer_norm = gr.Checkbox(label="Add layer normalization", value=False)
        dropout = gr.Textbox(label="Dropout structure (empty = none)", value="", placeholder="0, 0.3, 0")
    with gr.Row():
        out_dir = gr.Textbox(label="Hypernetworks folder", value="hypernetworks")
        overwrite = gr.Checkbox(label=OVERWRITE, value=False)
    button = gr.Button("Create hypernetwork", variant="primary")
    result = gr.Markdown(elem_id="create-hypernetwork-result")
    clicked(button.click, lambda *a: create(ctx, *a),
            [model, family, name, modules, layer_structure, activation, activate_output, layer_norm,
             dropout, init, out_dir, overwrite], result, say=SAY_OVERWRITE)
