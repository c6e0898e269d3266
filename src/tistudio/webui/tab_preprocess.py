"""Preprocess images tab: upload images (and their .txt captions) into a source folder, every
preprocess option, captioners, and the dataset doctor's report."""
from __future__ import annotations

from . import pickers
from .context import Context, user_errors
from .safety import CAPTION_SUFFIX, store_uploads

GALLERY_LIMIT = 48


def save_uploads(ctx: Context, files, src) -> str:
    if not files:
        return "No files chosen."
    dest = ctx.guard.resolve(src, "Source folder")
    stored, rejected = store_uploads([getattr(f, "name", f) for f in files], dest)
    captions = sum(p.suffix.lower() == CAPTION_SUFFIX for p in stored)
    also = f" and {captions} caption(s)" if captions else ""
    lines = [f"Saved {len(stored) - captions} image(s){also} to `{ctx.guard.show(dest)}`."]
    if rejected:
        lines.append(f"Rejected {len(rejected)} file(s): " + "; ".join(rejected))
    return "\n\n".join(lines)


def default_background() -> str:
    """The preprocess default (PreprocessOptions.background) as the picker's #rrggbb."""
    from ..preprocess import PreprocessOptions

    return "#" + "".join(f"{c:02x}" for c in PreprocessOptions().background)


def background_info(value: str | None) -> str:
    """The colour in words under the swatch: a white swatch on a white page looks like an empty box."""
    return f"{value or default_background()}; click the swatch to change it"


def _colour(text: str) -> tuple[int, int, int]:
    from ..errors import TIStudioError

    value = (text or default_background()).lstrip("#")
    try:
        if len(value) != 6:
            raise ValueError
        return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise TIStudioError(f"Background {text}: use a colour like #ffffff") from None


def options_from(ctx: Context, v: dict):
    from ..preprocess import (AutoSizeOptions, BlipOptions, CaptionOptions, FocalOptions, PreprocessOptions,
                              TaggerOptions)

    g = ctx.guard
    caption = CaptionOptions(
        blip=g.optional(v["blip"], "BLIP model folder", "dir"),
        tagger=g.optional(v["tagger"], "Tagger model", "any"),
        tags=g.optional(v["tags"], "Tag list", "file"),
        blip_options=BlipOptions(int(v["blip_beams"]), int(v["blip_min"]), int(v["blip_max"])),
        tagger_options=TaggerOptions(threshold=float(v["tag_threshold"]), sort_alphabetically=v["sort_alpha"],
                                     use_spaces=not v["underscores"], escape_brackets=not v["no_escape"],
                                     filter_tags=tuple(t.strip() for t in (v["filter_tags"] or "").split(",") if t.strip()),
                                     include_scores=v["scores"], kind=v["tagger_kind"]),
        existing=v["existing"], in_filename=v["in_filename"])
    focal = FocalOptions(float(v["face_w"]), float(v["entropy_w"]), float(v["edges_w"]), v["focal_debug"]) \
        if v["focal"] else None
    auto = AutoSizeOptions(int(v["auto_min_dim"]), int(v["auto_max_dim"]), int(v["auto_min_area"]),
                           int(v["auto_max_area"]), v["auto_objective"], float(v["auto_threshold"]),
                           int(v["auto_step"])) if v["auto"] else None
    return PreprocessOptions(width=int(v["width"]), height=int(v["height"]), keep_size=v["keep_size"],
                             flip=v["flip"], split=v["split"], split_threshold=float(v["split_threshold"]),
                             split_overlap=float(v["split_overlap"]), focal=focal, auto_size=auto,
                             alpha=v["alpha"], background=_colour(v["background"]),
                             max_pixels=int(v["max_pixels"]), caption=caption)


def run_preprocess(ctx: Context, src, dst, values: dict):
    from ..preprocess import preprocess

    src_path = ctx.guard.resolve(src, "Source folder", "dir")
    dst_path = ctx.guard.resolve(dst, "Destination folder")
    report = preprocess(src_path, dst_path, options_from(ctx, values), progress=False)
    images = [str(p) for p in report.images[:GALLERY_LIMIT]]
    return report.summary(), images


def run_doctor(ctx: Context, folder, width, height, name, subject) -> str:
    from ..preprocess import check_dataset

    path = ctx.guard.resolve(folder, "Dataset folder", "dir")
    report = check_dataset(path, int(width), int(height), (name or "").strip() or None, subject)
    return report.table().replace(str(path), ctx.guard.show(path))


def build(ctx: Context) -> None:
    import gradio as gr

    w: dict = {}
    with gr.Row():
        src = gr.Textbox(label="Source folder", value="raw", info="read only; uploads are saved here")
        dst = gr.Textbox(label="Destination folder", value="dataset", info="outside the source folder")
    with gr.Row():
        uploads = gr.File(label="Upload images (with their .txt captions, if any)", file_count="multiple",
                          file_types=["image", CAPTION_SUFFIX], elem_id="uploads")
        with gr.Column():
            save_button = gr.Button("Save uploads to the source folder")
            upload_status = gr.Markdown(elem_id="upload-status")
    with gr.Row():
        w["width"] = gr.Number(label="Width", value=512, precision=0)
        w["height"] = gr.Number(label="Height", value=512, precision=0)
        w["keep_size"] = gr.Checkbox(label="Keep size (no crop or resize)")
        w["flip"] = gr.Checkbox(label="Create flipped copies")
        w["alpha"] = gr.Dropdown(["weight", "flatten"], value="weight", label="Transparency",
                                 info="weight: write an _att.png loss-weight map; flatten: composite only")
        w["background"] = gr.ColorPicker(label="Background under transparency", value=default_background(),
                                         info=background_info(default_background()), elem_id="pre-background")
    with gr.Accordion("Split, focal crop, auto size", open=False):
        with gr.Row():
            w["split"] = gr.Checkbox(label="Split oversized images")
            w["split_threshold"] = gr.Number(label="Split threshold", value=0.5)
            w["split_overlap"] = gr.Number(label="Split overlap", value=0.2)
            w["max_pixels"] = gr.Number(label="Skip images larger than (pixels)", value=100_000_000, precision=0)
        with gr.Row():
            w["focal"] = gr.Checkbox(label="Auto focal point crop")
            w["face_w"] = gr.Number(label="Focal face weight", value=0.9)
            w["entropy_w"] = gr.Number(label="Focal entropy weight", value=0.15)
            w["edges_w"] = gr.Number(label="Focal edges weight", value=0.5)
            w["focal_debug"] = gr.Checkbox(label="Write focal debug images")
        with gr.Row():
            w["auto"] = gr.Checkbox(label="Auto-sized crop")
            w["auto_min_dim"] = gr.Number(label="Min dimension", value=384, precision=0)
            w["auto_max_dim"] = gr.Number(label="Max dimension", value=768, precision=0)
            w["auto_min_area"] = gr.Number(label="Min area", value=64 * 64, precision=0)
            w["auto_max_area"] = gr.Number(label="Max area", value=640 * 640, precision=0)
            w["auto_objective"] = gr.Dropdown(["maximize-area", "minimize-error"], value="maximize-area",
                                              label="Objective")
            w["auto_threshold"] = gr.Number(label="Aspect error threshold", value=0.1)
            w["auto_step"] = gr.Number(label="Size step", value=64, precision=0)
    with gr.Accordion("Captions", open=False):
        with gr.Row():
            w["existing"] = gr.Dropdown(["ignore", "copy", "prepend", "append"], value="copy",
                                        label="Existing .txt captions")
            w["in_filename"] = gr.Checkbox(label="Caption in the file name instead of a .txt")
        with gr.Row():
            w["blip"] = gr.Textbox(label="BLIP model folder (local)", placeholder="empty: no BLIP captions")
            w["blip_beams"] = gr.Number(label="BLIP beams", value=1, precision=0)
            w["blip_min"] = gr.Number(label="BLIP min length", value=5, precision=0)
            w["blip_max"] = gr.Number(label="BLIP max length", value=40, precision=0)
        with gr.Row():
            w["tagger"] = gr.Textbox(label="Tagger ONNX model (WD14 / DeepDanbooru)", placeholder="empty: no tags")
            w["tags"] = gr.Textbox(label="Tag list file", placeholder="empty: beside the model")
            w["tagger_kind"] = gr.Dropdown(["auto", "wd14", "deepdanbooru"], value="auto", label="Tagger kind")
            w["tag_threshold"] = gr.Number(label="Tag score threshold", value=0.75)
        with gr.Row():
            w["sort_alpha"] = gr.Checkbox(label="Sort tags alphabetically")
            w["underscores"] = gr.Checkbox(label="Keep underscores")
            w["no_escape"] = gr.Checkbox(label="Leave brackets unescaped")
            w["scores"] = gr.Checkbox(label="Include scores")
            w["filter_tags"] = gr.Textbox(label="Never write these tags (comma-separated)")
    run_button = gr.Button("Preprocess", variant="primary")
    report = gr.Textbox(label="Preprocess report", lines=4, elem_id="preprocess-report")
    gallery = gr.Gallery(label="Output images", columns=8, height=220, object_fit="contain", fit_columns=False)
    gr.Markdown("### Dataset doctor")
    with gr.Row():
        doc_folder = pickers.dropdown(ctx, "dataset", "Dataset folder to check", "dataset", elem_id="doctor-folder",
                                      scale=2)
        doc_name = gr.Textbox(label="Embedding name (to find it in captions)")
        doc_subject = gr.Dropdown(["character", "style"], value="character", label="Subject")
        doc_button = gr.Button("Check dataset")
    doc_report = gr.Textbox(label="Dataset doctor report", lines=10, elem_id="doctor-report")

    keys = list(w)
    w["background"].change(lambda v: gr.update(info=background_info(v)), w["background"], w["background"],
                           show_progress="hidden")
    save_button.click(user_errors(lambda files, s: save_uploads(ctx, files, s)), [uploads, src], upload_status)
    run_button.click(user_errors(lambda s, d, *vals: run_preprocess(ctx, s, d, dict(zip(keys, vals)))),
                     [src, dst, *w.values()], [report, gallery])
    doc_button.click(user_errors(lambda f, wd, ht, n, sub: run_doctor(ctx, f, wd, ht, n, sub)),
                     [doc_folder, w["width"], w["height"], doc_name, doc_subject], doc_report)
