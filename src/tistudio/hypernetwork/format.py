"""The hypernetwork `.pt` file of AUTOMATIC1111 (also read by ComfyUI's HypernetworkLoader), its
`.optim` side file, and what each client accepts. Facts restated from A1111's
modules/hypernetworks/hypernetwork.py and ComfyUI's comfy_extras/nodes_hypernetwork.py.

The file is a pickled dict:
  <width:int>             (k_state_dict, v_state_dict), each {"linear.<pos>.weight"/"bias": tensor}
  "step"                  optimizer steps done         "name"                   the hypernetwork's name
  "layer_structure"       [1.0, 2.0, 1.0]              "activation_func"        "linear", "relu", ...
  "is_layer_norm"         bool                         "weight_initialization"  "Normal", "XavierUniform", ...
  "activate_output"       bool (A1111 reads a missing key as True, ComfyUI as False: always written)
  "use_dropout"           bool                         "dropout_structure"      [0.0, 0.3, 0.0]
  "last_layer_dropout"    dropout_structure[-2] != 0   "optional_info"          str or None
  "sd_checkpoint", "sd_checkpoint_name"                the base model's short hash and name
Files from before A1111 had layer stacks hold `linear1`/`linear2` keys: `linear.0`/`linear.1`.

`.pt.optim`: {"optimizer_name": "AdamW", "hash": sha256(.pt file)[:10], "optimizer_state_dict": ...};
A1111 uses the state only when the hash matches the file beside it.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from .. import pickle_zip
from ..embedding.formats.a1111_pt import read_pickle
from ..errors import TIStudioError, first_line
from ..hashing import file_sha256
from .model import Hypernetwork, Structure, build_layers, legacy_dropout
from .options import COMFY_ACTIVATIONS, INITS

_OLD_KEYS = {"linear1.weight": "linear.0.weight", "linear1.bias": "linear.0.bias",
             "linear2.weight": "linear.1.weight", "linear2.bias": "linear.1.bias"}


def _state(module: torch.nn.Module) -> dict:
    return OrderedDict((k, v.detach().float().cpu().clone()) for k, v in module.state_dict().items())


def to_dict(hn: Hypernetwork) -> dict:
    s = hn.structure
    dropout = list(s.dropout) if s.dropout else [0.0] * len(s.layer_structure)
    data: dict = {w: (_state(pair[0]), _state(pair[1])) for w, pair in hn.layers.items()}
    data.update({
        "step": int(hn.step), "name": hn.name, "layer_structure": list(s.layer_structure),
        "activation_func": s.activation, "is_layer_norm": s.layer_norm, "weight_initialization": s.weight_init,
        "sd_checkpoint": hn.sd_checkpoint, "sd_checkpoint_name": hn.sd_checkpoint_name,
        "activate_output": s.activate_output, "use_dropout": s.use_dropout, "dropout_structure": dropout,
        "last_layer_dropout": dropout[-2] != 0 if len(dropout) > 1 else False,
        "optional_info": hn.optional_info or None,
    })
    return data


def save(hn: Hypernetwork, path: str | Path) -> Path:
    """Atomically, through the one pickle writer whose archives A1111's safe unpickler accepts."""
    return pickle_zip.save(to_dict(hn), path)


def is_hypernetwork(data) -> bool:
    """A dict with at least one integer width key holding a (k, v) pair of state dicts."""
    return isinstance(data, dict) and any(isinstance(k, int) and isinstance(v, (tuple, list)) and len(v) == 2
                                          for k, v in data.items())


def _structure(data: dict, where: str) -> Structure:
    """The stored structure with A1111's defaults for missing keys."""
    layers = tuple(float(x) for x in data.get("layer_structure") or (1, 2, 1))
    dropout = data.get("dropout_structure")
    if dropout is None:
        dropout = legacy_dropout(layers, bool(data.get("use_dropout")), bool(data.get("last_layer_dropout")))
    dropout = tuple(float(x) for x in dropout)
    init = data.get("weight_initialization") or "Normal"
    try:
        return Structure(layer_structure=layers, activation=data.get("activation_func") or "linear",
                         layer_norm=bool(data.get("is_layer_norm", False)),
                         dropout=dropout if any(dropout) else (),
                         weight_init=init if init in INITS.values() else "Normal",
                         activate_output=bool(data.get("activate_output", True)))
    except TIStudioError as exc:
        raise TIStudioError(f"{where}: not a hypernetwork we can build ({exc})") from None


def from_dict(data: dict, name: str, where: str = "hypernetwork") -> Hypernetwork:
    if not is_hypernetwork(data):
        raise TIStudioError(f"{where}: not a hypernetwork file (no integer width keys with (k, v) weights); "
                            "create one with `tistudio create-hypernetwork NAME --model M`")
    structure = _structure(data, where)
    widths = [k for k in data if isinstance(k, int)]
    layers = build_layers(widths, structure)
    for w in widths:
        for module, saved in zip(layers[w], data[w]):
            state = {_OLD_KEYS.get(k, k): v for k, v in dict(saved).items()}
            try:
                module.load_state_dict(state)
            except (RuntimeError, TypeError) as exc:
                raise TIStudioError(f"{where}: width {w} does not match its layer structure "
                                    f"{list(structure.layer_structure)} ({first_line(exc)})") from None
    stored = data.get("name")
    return Hypernetwork(name=str(stored) if stored else name, structure=structure, layers=layers,
                        step=int(data.get("step") or 0), sd_checkpoint=data.get("sd_checkpoint"),
                        sd_checkpoint_name=data.get("sd_checkpoint_name"),
                        optional_info=data.get("optional_info"))


def load(path: str | Path) -> Hypernetwork:
    """Read without running pickled code (the embedding reader's weights-only unpickler)."""
    path = Path(path)
    if not path.is_file():
        raise TIStudioError(f"{path}: hypernetwork file not found; create one with "
                            "`tistudio create-hypernetwork NAME --model M`")
    return from_dict(read_pickle(path), path.stem, str(path))


def sniff(path: str | Path) -> Hypernetwork | None:
    """The hypernetwork in a `.pt` file, or None when the file holds something else (an embedding)."""
    path = Path(path)
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    data = read_pickle(path)
    return from_dict(data, path.stem, str(path)) if is_hypernetwork(data) else None


# -- the optimizer side file ----------------------------------------------------------------------

def file_hash(path: str | Path) -> str:
    """A1111's shorthash of a hypernetwork: the first 10 hex digits of the file's sha256."""
    return file_sha256(path)[:10]


def optim_path(path: str | Path) -> Path:
    return Path(f"{path}.optim")


def save_optim(path: str | Path, optimizer_state_dict: dict) -> Path:
    """Beside the finished `.pt` (written first: the hash is of its bytes)."""
    data = {"optimizer_name": "AdamW", "hash": file_hash(path), "optimizer_state_dict": optimizer_state_dict}
    return pickle_zip.save(data, optim_path(path))


def load_optim(path: str | Path) -> dict | None:
    """The optimizer state saved for exactly this file, else None (no side file, another file's)."""
    side = optim_path(path)
    if not side.is_file():
        return None
    data = read_pickle(side)
    if not isinstance(data, dict) or not isinstance(data.get("optimizer_state_dict"), dict):
        raise TIStudioError(f"{side}: not an optimizer side file (no optimizer_state_dict); delete it "
                            "to start the optimizer fresh")
    if data.get("hash") != file_hash(path) or data.get("optimizer_name", "AdamW") != "AdamW":
        return None
    return data["optimizer_state_dict"]


# -- what each client accepts ---------------------------------------------------------------------

def compatibility(hn: Hypernetwork) -> list[tuple[str, str, str]]:
    """[(client, "loads" | "differs" | "refused", why)] by each client's loading rules."""
    s = hn.structure
    rows = [("A1111", "loads", f"<hypernet:{hn.name}:1> with the file in models/hypernetworks/; "
                               f"applied to contexts of width {', '.join(map(str, hn.widths))}")]
    if s.activation in COMFY_ACTIVATIONS and s.layer_norm and s.activation != "linear" and not s.activate_output:
        # ComfyUI counts the LayerNorm keys as layers when it looks for the last one, so it also
        # puts the activation after the last Linear: the same file, another transform.
        rows.append(("ComfyUI", "differs", "its loader also applies the activation after the last layer "
                                           "when layer norm is on; create with --activate-output (or no "
                                           "layer norm) for the same result in both"))
    elif s.activation in COMFY_ACTIVATIONS:
        rows.append(("ComfyUI", "loads", "HypernetworkLoader node, strength -10 to 10"))
    else:
        rows.append(("ComfyUI", "refused", f"its loader knows only the activations {', '.join(COMFY_ACTIVATIONS)}, "
                                           f"not {s.activation!r}; create with one of those"))
    return rows


def summary(hn: Hypernetwork) -> dict:
    """The facts `describe` prints, as JSON-able data."""
    s = hn.structure
    return {"kind": "hypernetwork", "name": hn.name, "step": hn.step, "widths": list(hn.widths),
            "weights": sum(p.numel() for p in hn.vectors), "layer_structure": list(s.layer_structure),
            "activation": s.activation, "activate_output": s.activate_output, "layer_norm": s.layer_norm,
            "dropout": list(s.dropout), "weight_init": s.weight_init, "sd_checkpoint": hn.sd_checkpoint,
            "sd_checkpoint_name": hn.sd_checkpoint_name,
            "compatibility": [{"client": c, "verdict": v, "why": w} for c, v, w in compatibility(hn)]}


def describe(hn: Hypernetwork) -> str:
    s = hn.structure
    params = sum(p.numel() for p in hn.vectors)
    lines = [f"hypernetwork {hn.name!r}, step {hn.step}, widths {', '.join(map(str, hn.widths))}, "
             f"{params:,} weights",
             f"layer structure {', '.join(f'{x:g}' for x in s.layer_structure)}; activation {s.activation}"
             f"{' (also on the output)' if s.activate_output else ''}; layer norm {'on' if s.layer_norm else 'off'}; "
             f"dropout {', '.join(f'{x:g}' for x in s.dropout) if s.dropout else 'off'}; init {s.weight_init}",
             f"base model {hn.sd_checkpoint_name or '?'} [{hn.sd_checkpoint or '?'}]"]
    lines += [f"{client}: {verdict}: {why}" for client, verdict, why in compatibility(hn)]
    return "\n".join(lines)
