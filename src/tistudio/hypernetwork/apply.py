"""Hypernetworks on a diffusers UNet, for the length of a `with` block, and A1111's prompt tags.

A1111 (and ComfyUI's attention patches) transform the context an attention layer reads before its
key and value projections: k = to_k(hn_k(context)), v = to_v(hn_v(context)), where
hn(x) = x + mlp(x) × strength, picked by the context's width (the text width for cross-attention,
the image features' width for self-attention). Several hypernetworks chain, each on the previous
one's output. Here that is a forward pre-hook on every attention's `to_k` and `to_v`: it works
under any attention processor (SDPA, xformers, classic), and removing the hooks (leaving the
`applied` block, `detach`) leaves the caller's UNet as it was. Training keeps its hooks on for
the backward pass too: gradient checkpointing re-runs the forward there.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ..errors import TIStudioError
from .format import load
from .model import Hypernetwork

# A1111's extra-network syntax: <hypernet:NAME> or <hypernet:NAME:MULTIPLIER> (default 1).
TAG_RE = re.compile(r"<hypernet:([^:>]+)(?::([^>]*))?>")


def attention_widths(unet: torch.nn.Module) -> tuple[int, ...]:
    """Every context width the UNet's attention layers read: cross-attention first (the text width),
    then the self-attention widths ascending: SD1 gives A1111's default 768, 320, 640, 1280."""
    widths = {m.to_k.in_features: m.to_k.in_features != m.to_q.in_features for m in _attentions(unet)}
    return tuple(sorted(widths, key=lambda w: (not widths[w], w)))


def _attentions(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in unet.modules() if isinstance(getattr(m, "to_k", None), torch.nn.Linear)
            and isinstance(getattr(m, "to_v", None), torch.nn.Linear)]


def _hook(networks: Sequence[tuple[Hypernetwork, float]], side: int, when: Callable[[], bool]):
    def pre_hook(module, args):
        x = args[0]
        width = x.shape[-1]
        chain = [(hn.layers[width][side], strength) for hn, strength in networks if width in hn.layers]
        if not chain or not when():
            return None
        y = x.float()  # the hypernetwork's weights are fp32 whatever the UNet's dtype, as in A1111
        for mlp, strength in chain:
            y = mlp(y, strength)
        return (y.to(x.dtype), *args[1:])
    return pre_hook


def attach(unet: torch.nn.Module, networks: Sequence[tuple[Hypernetwork, float]],
           when: Callable[[], bool] = lambda: True) -> list:
    """Put `networks` [(hypernetwork, strength)] on the UNet, active while `when()` is true; strength 0
    leaves a hypernetwork out entirely. Returns the handles for `detach`. The hypernetworks are moved
    to the UNet's device."""
    active = [(hn, float(strength)) for hn, strength in networks if strength != 0]
    if not active:
        return []
    device = next(unet.parameters()).device
    for hn, _ in active:
        hn.to(device)
    handles = []
    for attn in _attentions(unet):
        handles.append(attn.to_k.register_forward_pre_hook(_hook(active, 0, when)))
        handles.append(attn.to_v.register_forward_pre_hook(_hook(active, 1, when)))
    return handles


def detach(handles: list) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


@contextlib.contextmanager
def applied(unet: torch.nn.Module, networks: Sequence[tuple[Hypernetwork, float]],
            training: bool = False) -> Iterator[None]:
    """Apply `networks` in order inside the block; `training` turns their dropout on."""
    for hn, _ in networks:
        hn.train(training)
    handles = attach(unet, networks)
    try:
        yield
    finally:
        detach(handles)


def check_fits(hn: Hypernetwork, unet: torch.nn.Module, where: str) -> None:
    """Refuse a hypernetwork none of whose widths the model's attention layers read."""
    widths = attention_widths(unet)
    if not set(hn.widths) & set(widths):
        raise TIStudioError(f"{where}: hypernetwork widths {', '.join(map(str, hn.widths))} match none of the "
                            f"model's attention widths {', '.join(map(str, widths))}; create one for this model "
                            "with `tistudio create-hypernetwork NAME --model M`")


# -- prompt tags ----------------------------------------------------------------------------------

def parse_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(prompt without the tags, [(name, strength)] in prompt order). The tags are removed and
    nothing else changes, so the rest of the prompt encodes as A1111 encodes it."""
    found = []
    for match in TAG_RE.finditer(prompt):
        name, mult = match.group(1).strip(), (match.group(2) or "").strip()
        try:
            strength = float(mult) if mult else 1.0
        except ValueError:
            raise TIStudioError(f"prompt tag {match.group(0)!r}: the strength must be a number, e.g. "
                                f"<hypernet:{name}:0.8>") from None
        found.append((name, strength))
    return TAG_RE.sub("", prompt).strip(), found


def find_files(folder: str | Path) -> dict[str, Path]:
    """{name: file} for every .pt under `folder` (recursive, as A1111 lists them); the name is the
    file stem, the first in path order when two share one."""
    root = Path(folder)
    if not root.is_dir():
        raise TIStudioError(f"--hypernetworks {folder}: not a folder; pass the folder holding the .pt files")
    found: dict[str, Path] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".pt") and not name.startswith("."):
                found.setdefault(Path(name).stem, Path(dirpath) / name)
    return found


def tagged_files(folder: str | Path | None, tags: Sequence[tuple[str, float]]) -> dict[str, Path]:
    """{name: file} for the hypernetworks the prompt's tags name, found in `folder` without reading
    them, so a missing one is refused before anything loads or is written."""
    if not tags:
        return {}
    if not folder:
        raise TIStudioError(f"the prompt uses <hypernet:{tags[0][0]}>: pass --hypernetworks DIR, the folder "
                            "holding its .pt file")
    files = find_files(folder)
    for name, _ in tags:
        if name not in files:
            known = ", ".join(sorted(files)) or "none"
            raise TIStudioError(f"<hypernet:{name}>: no {name}.pt under {folder} (found: {known})")
    return {name: files[name] for name, _ in tags}


def resolve(folder: str | Path | None, tags: Sequence[tuple[str, float]]) -> list[tuple[Hypernetwork, float]]:
    """Load the hypernetworks the prompt's tags name (each file once) from `folder`."""
    loaded = {name: load(path) for name, path in tagged_files(folder, tags).items()}
    return [(loaded[name], strength) for name, strength in tags]
