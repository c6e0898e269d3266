"""Will this file load in X? One rule per client, written from each client's own loading code
(read for the facts; none of it is copied): what it accepts, which prompt word triggers it, and
how to fix a file it refuses. Pure functions of `compat_facts.FileFacts`; faces only render.

Clients and the loaders the rules follow:
- AUTOMATIC1111 webui: `modules/textual_inversion/textual_inversion.py` (by extension; PNGs trigger
  on their stored name, other files on the stem; an SDXL dict is every value `.detach()`ed;
  embeddings whose width differs from the model's are skipped) behind `modules/safe.py` (zip
  entry names and an unpickler allow-list).
- Forge: the same loader, with `safe.py` emptied (plain `torch.load`).
- ComfyUI: `comfy/sd1_clip.py` `load_embed` (`embedding:NAME`; .safetensors/.pt/.bin; per encoder:
  string_to_param, else the encoder's own key, else the first value; a width that does not match
  that encoder is ignored with a warning).
- kohya sd-scripts: `--textual_inversion_embeddings FILE` in gen_img / sdxl_gen_img (stem trigger;
  first value, `size()[0]` vectors; SDXL needs clip_l and clip_g).
- InvokeAI: the textual-inversion probe (base model from the width) and loader.
- diffusers: `load_textual_inversion` (token = the one key, or the `name` of an A1111 dict).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models.family import FAMILIES
from ..pickle_zip import ALLOWED_ENTRY
from .compat_facts import FileFacts
from .formats.dicts import ANONYMOUS_KEYS

LOADS, PARTLY, REFUSED = "loads", "partly", "refused"
# A1111 modules/safe.py: its globals (its zip entry names: pickle_zip.ALLOWED_ENTRY, what our writer keeps).
A1111_GLOBALS = frozenset({
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_device_tensor_from_numpy", "torch.FloatStorage", "torch.HalfStorage",
    "torch.IntStorage", "torch.LongStorage", "torch.DoubleStorage", "torch.ByteStorage", "torch.float32",
    "torch.BFloat16Storage", "torch.nn.modules.container.ParameterDict", "numpy.core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray", "_codecs.encode", "__builtin__.set"})
_INVOKE_BASES = {768: "sd1", 1024: "sd2", 1280: "sdxl"}
_A1111_SUFFIXES = {".pt": "pickle", ".bin": "pickle", ".safetensors": "safetensors", ".png": "image",
                   ".webp": "image", ".jxl": "image", ".avif": "image"}
_COMFY_KEYS = {"sd1": ("clip_l",), "sd2": ("clip_h",), "sdxl": ("clip_l", "clip_g")}


@dataclass(frozen=True)
class Verdict:
    client: str
    status: str            # loads | partly | refused
    trigger: str | None    # what to type in that client's prompt (or pass), when it loads
    note: str              # why, in one sentence
    fix: str | None = None  # a command or step that makes it load, when there is one


def _convert(f: FileFacts, suffix: str = ".safetensors") -> str:
    """The repair: our writers make files every client reads (convert may rewrite a file in place)."""
    out = f.path.with_name(f"{f.stem}{suffix}") if f.container != "folder" else f.path.with_suffix(suffix)
    return f"tistudio convert {f.path} {out}"


def _other_family(f: FileFacts, target: str | None, verdict: Verdict) -> Verdict:
    """An SDXL file that loads on an SD1 model does so with its clip_l vectors alone."""
    if verdict.status != LOADS or target in (None, f.family):
        return verdict
    return Verdict(verdict.client, PARTLY, verdict.trigger, f"{verdict.note}; only the vectors of the encoder "
                   f"the {target} model shares are used (made for {f.family})", verdict.fix)


def _target_widths(f: FileFacts, target: str | None) -> tuple[int, ...] | None:
    """The model's encoder widths: the file's own for its own family (tiny test models included)."""
    if target is None or target == f.family:
        return f.widths if f.family else None
    return tuple(e.width for e in FAMILIES[target].encoders)


def _container_ok(f: FileFacts, by_suffix: dict[str, str]) -> bool:
    expected = by_suffix.get(f.suffix)
    return expected == f.container or (expected == "image" and f.container in ("png", "image"))


def _wrong_family(client: str, f: FileFacts, target: str | None, how: str) -> Verdict:
    made = f.family or f"width {'+'.join(map(str, f.widths))}"
    return Verdict(client, REFUSED, None, f"made for {made}, the model is {target}: {how}",
                   "train or pick an embedding for this model family")


# ---- AUTOMATIC1111 and Forge -------------------------------------------------------------------

def _pickle_gate(f: FileFacts) -> str | None:
    """Why A1111's safe unpickler refuses the file, or None."""
    if f.zip_entries is None:
        return None  # a pre-zip pickle: A1111 unpickles its objects under the same allow-list
    bad = [n for n in f.zip_entries if not ALLOWED_ENTRY.match(n)]
    if bad:
        return f"its safe unpickler refuses the zip entries {', '.join(sorted(bad))} (\"The file may be malicious\")"
    if sum(n.endswith("/data.pkl") for n in f.zip_entries) != 1:
        return "its safe unpickler needs exactly one data.pkl"
    banned = [g for g in f.pickle_globals if g not in A1111_GLOBALS]
    return f"its safe unpickler forbids the globals {', '.join(banned)}" if banned else None


def _a1111_layout(f: FileFacts) -> str | None:
    """Why A1111's create_embedding_from_data fails on the dict, or None."""
    keys = set(f.keys)
    if "string_to_param" in keys:
        return None
    if {"clip_l", "clip_g"} <= keys:
        if f.non_tensor_keys:
            return (f"it calls .detach() on every value of an SDXL dict, and this one also holds "
                    f"{', '.join(f.non_tensor_keys)} (AttributeError)")
        return None
    if f.first_shape is None:
        return "no string_to_param, clip_l/clip_g or tensor found"
    if len(f.keys) != 1:
        return "a dict of several tensors (\"embedding file has multiple terms in it\")"
    return None


def _a1111_like(client: str, f: FileFacts, target: str | None, safe_unpickler: bool) -> Verdict:
    if f.container == "folder":
        inner = _a1111_like(client, f.inner, None, safe_unpickler)
        how = (f"it loads each file in the folder on its own ({', '.join(f.folder_files)}), triggered by "
               "its file stem, not by the folder name")
        if len(f.widths) == 2:
            return Verdict(client, REFUSED, None, how + "; each holds one SDXL encoder, so both are skipped",
                           _convert(f))
        return Verdict(client, PARTLY if inner.status == LOADS else inner.status, inner.trigger, how, _convert(f))
    if f.suffix not in _A1111_SUFFIXES:
        return Verdict(client, REFUSED, None, f"it ignores {f.suffix or 'extensionless'} files", _convert(f))
    if not _container_ok(f, _A1111_SUFFIXES):
        return Verdict(client, REFUSED, None, f"it reads {f.suffix} files as {_A1111_SUFFIXES[f.suffix]}; "
                       f"this one is {f.container}", _convert(f))
    if safe_unpickler and f.container == "pickle":
        why = _pickle_gate(f)
        if why:
            return Verdict(client, REFUSED, None, why, _convert(f, ".pt"))
    why = _a1111_layout(f)
    if why:
        return Verdict(client, REFUSED, None, why, _convert(f))
    widths = _target_widths(f, target)
    if widths is None or sum(widths) != sum(f.widths):
        return _wrong_family(client, f, target, "skipped (listed under skipped embeddings)")
    image = f.container in ("png", "image")
    trigger = (f.stored_name or f.stem) if image else f.stem
    note = "triggered by the name stored in the image" if image and f.stored_name else "triggered by the file name"
    return Verdict(client, LOADS, trigger, note)


def a1111(f: FileFacts, target: str | None = None) -> Verdict:
    return _a1111_like("A1111", f, target, safe_unpickler=True)


def forge(f: FileFacts, target: str | None = None) -> Verdict:
    return _a1111_like("Forge", f, target, safe_unpickler=False)


# ---- ComfyUI -----------------------------------------------------------------------------------

def _comfy_width(f: FileFacts, key: str) -> int | None:
    """Width of the tensor ComfyUI picks for an encoder whose embedding key is `key`."""
    if "string_to_param" in f.keys:
        return f.widths[0]
    if key in f.keys and {"clip_l", "clip_g"} <= set(f.keys):
        return f.widths[("clip_l", "clip_g").index(key)]
    return f.first_shape[-1] if f.first_shape else None


def comfyui(f: FileFacts, target: str | None = None) -> Verdict:
    if f.container in ("png", "image"):
        return Verdict("ComfyUI", REFUSED, None, "it reads only .safetensors/.pt/.bin tensor files, never "
                       "embeddings in images (not fixable in the image)", _convert(f))
    trigger = f"embedding:{f.stem}"
    judged = f
    if f.container == "folder":
        trigger, judged = f"embedding:{f.path.name}/learned_embeds", f.inner
    if judged.suffix == ".safetensors" and judged.container != "safetensors" or \
            judged.suffix != ".safetensors" and judged.container != "pickle":
        return Verdict("ComfyUI", REFUSED, None, f"it reads {judged.suffix} files with "
                       f"{'safetensors' if judged.suffix == '.safetensors' else 'torch.load'}; this one is "
                       f"{judged.container}", _convert(f))
    widths = _target_widths(f, target)
    model = target or f.family
    if widths is None or model is None:
        return _wrong_family("ComfyUI", f, target, "ignored (shape mismatch)")
    applied = [key for key, width in zip(_COMFY_KEYS[model], widths) if _comfy_width(judged, key) == width]
    if not applied:
        return _wrong_family("ComfyUI", f, target, "every encoder ignores it (shape mismatch)")
    if len(applied) < len(widths):
        return Verdict("ComfyUI", PARTLY, trigger, f"applied to {', '.join(applied)} only; the other encoder "
                       "ignores it (shape mismatch warning)", _convert(f) if f.container == "folder" else None)
    where = "the folder's first file; use that path" if f.container == "folder" else "name without extension"
    return _other_family(f, target, Verdict("ComfyUI", LOADS, trigger,
                                            f"found by {where}, relative to the embeddings folder"))


# ---- kohya sd-scripts --------------------------------------------------------------------------

def kohya(f: FileFacts, target: str | None = None) -> Verdict:
    if f.container == "folder":
        return Verdict("kohya", REFUSED, None, "it opens --textual_inversion_embeddings as a file "
                       "(IsADirectoryError on a folder)", _convert(f))
    if f.container in ("png", "image"):
        return Verdict("kohya", REFUSED, None, "it reads only torch and safetensors files, never embeddings in "
                       "images (not fixable in the image)", _convert(f))
    if (f.suffix == ".safetensors") != (f.container == "safetensors"):
        return Verdict("kohya", REFUSED, None, f"it picks the reader by extension; this {f.suffix} file is "
                       f"{f.container}", _convert(f))
    widths = _target_widths(f, target)
    model = target or f.family
    if widths is None or model is None:
        return _wrong_family("kohya", f, target, "the vectors do not fit its text encoders")
    trigger = f.stem + (f" (tokens {f.stem}, {f.stem}1…)" if f.n_vectors > 1 else "")
    if model == "sdxl":
        if not {"clip_l", "clip_g"} <= set(f.keys):
            return _wrong_family("kohya", f, target, "sdxl_gen_img needs clip_l and clip_g (KeyError)")
        return Verdict("kohya", LOADS, trigger, "sdxl_gen_img --textual_inversion_embeddings FILE")
    if "string_to_param" in f.keys:
        shape = (f.n_vectors, f.widths[0])
    elif f.first_shape is None:
        return Verdict("kohya", REFUSED, None, "its first value is not a tensor", _convert(f))
    else:
        shape = f.first_shape
    if len(shape) == 1:
        return Verdict("kohya", REFUSED, None, "a 1-D tensor: it reads size()[0] as the number of vectors",
                       _convert(f))
    if shape[-1] != widths[0]:
        return _wrong_family("kohya", f, target, f"its first tensor is {shape[-1]} wide")
    return _other_family(f, target, Verdict("kohya", LOADS, trigger, "gen_img --textual_inversion_embeddings FILE"))


# ---- InvokeAI ----------------------------------------------------------------------------------

def _invoke_width(f: FileFacts) -> int | None:
    """The width InvokeAI's probe reads: note shape[0] (not [-1]) for a {token: tensor} dict."""
    if "string_to_token" in f.keys or "emb_params" in f.keys:
        return f.widths[0]
    if "clip_g" in f.keys:
        return f.widths[-1]
    return f.first_shape[0] if f.first_shape else None


def invokeai(f: FileFacts, target: str | None = None) -> Verdict:
    if f.container in ("png", "image"):
        return Verdict("InvokeAI", REFUSED, None, "it installs tensor files only, never embeddings in images "
                       "(not fixable in the image)", _convert(f))
    if f.container == "folder" and "learned_embeds.bin" not in f.folder_files:
        return Verdict("InvokeAI", REFUSED, None, "its folder probe looks only for learned_embeds.bin",
                       _convert(f))
    judged = f if f.container != "folder" else f.inner
    if (judged.suffix == ".safetensors") != (judged.container == "safetensors"):
        return Verdict("InvokeAI", REFUSED, None, f"it picks the reader by extension; this {judged.suffix} file "
                       f"is {judged.container}", _convert(f))
    if "string_to_param" in judged.keys and "string_to_token" not in judged.keys:
        return Verdict("InvokeAI", REFUSED, None, "an A1111 dict without string_to_token: its probe then reads "
                       "the first value's shape, which is not a tensor", _convert(f))
    width = _invoke_width(judged)
    base = _INVOKE_BASES.get(width)
    if base is None:
        layout = bool(judged.first_shape and len(judged.first_shape) == 2 and "emb_params" not in judged.keys)
        why = ("its probe reads shape[0] of a {token: tensor} file as the width, so a multi-vector one "
               "is not recognised" if layout else f"its probe knows widths 768/1024/1280, not {width}")
        # Only the layout can be repaired; a width no real model has (a test or toy model) cannot.
        return Verdict("InvokeAI", REFUSED, None, why + " (\"Could not determine base type\")",
                       _convert(f) if layout else None)
    if target and base != target:
        return _wrong_family("InvokeAI", f, target, f"offered only with {base} models")
    return Verdict("InvokeAI", LOADS, f"<{f.stem}>", f"installed as a {base} embedding named after the "
                   f"{'folder' if f.container == 'folder' else 'file'}")


# ---- diffusers ---------------------------------------------------------------------------------

def diffusers(f: FileFacts, target: str | None = None) -> Verdict:
    if f.container in ("png", "image"):
        return Verdict("diffusers", REFUSED, None, "load_textual_inversion reads safetensors or torch files, "
                       "never embeddings in images (not fixable in the image)", _convert(f))
    widths = _target_widths(f, target)
    if widths is None or (target and target != f.family):
        return _wrong_family("diffusers", f, target, "load_textual_inversion raises on the shape")
    judged = f.inner if f.container == "folder" else f
    if f.container == "folder" and len(f.widths) == 2:
        return Verdict("diffusers", LOADS, judged.keys[0], "two calls, one per encoder: weight_name="
                       "learned_embeds.safetensors with text_encoder/tokenizer, learned_embeds_2.safetensors "
                       "with text_encoder_2/tokenizer_2")
    if len(judged.keys) == 1:
        key = judged.keys[0]
        if key in ANONYMOUS_KEYS:
            return Verdict("diffusers", LOADS, f.stem, f"pass token=\"{f.stem}\" (else the trigger is the key "
                           f"{key!r})")
        return Verdict("diffusers", LOADS, key, "the trigger is the file's one key")
    if "string_to_param" in judged.keys:
        if not judged.stored_name:
            return Verdict("diffusers", REFUSED, None, "an A1111 dict without \"name\" (KeyError)", _convert(f))
        return Verdict("diffusers", LOADS, judged.stored_name, "the trigger is the stored name, not the file name")
    if {"clip_l", "clip_g"} <= set(judged.keys):
        return Verdict("diffusers", PARTLY, f.stem, "one file cannot be loaded whole; load each tensor with "
                       "its encoder: load_textual_inversion(sd[\"clip_l\"], token=..., text_encoder="
                       "pipe.text_encoder, tokenizer=pipe.tokenizer), then sd[\"clip_g\"] with text_encoder_2/"
                       "tokenizer_2", f"{_convert(f, '')} --to diffusers (a folder of two files)")
    return Verdict("diffusers", REFUSED, None, "neither one key nor string_to_param (\"Loaded state dictionary "
                   "is incorrect\")", _convert(f))


# One rule per client, in the order verdicts are listed.
RULES = {"A1111": a1111, "Forge": forge, "ComfyUI": comfyui, "kohya": kohya, "InvokeAI": invokeai,
         "diffusers": diffusers}


def check(f: FileFacts, target: str | None = None) -> list[Verdict]:
    """Every client's verdict on `f`, used with a `target` family model (default: the file's own)."""
    return [rule(f, target) for rule in RULES.values()]
