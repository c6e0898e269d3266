"""A new hypernetwork file for a model (A1111's Create hypernetwork), below the API so the toy
bench and the faces share it."""
from __future__ import annotations

from pathlib import Path

from ..embedding.names import validate_name
from ..errors import TIStudioError
from ..models.components import Components
from ..models.load import load_model
from . import format as hn_format
from .apply import attention_widths
from .model import Structure, create


def create_file(model: str | Components, name: str, modules=None, structure: Structure | None = None,
                out_dir: str | Path = "hypernetworks", overwrite: bool = False, seed: int = 0) -> Path:
    """Write OUT_DIR/NAME.pt: a new hypernetwork in A1111's format. `modules` (context widths)
    defaults to every width the model's attention layers read (SD1: 768, 320, 640, 1280). The name
    and the target are checked before the model loads."""
    path = Path(out_dir) / f"{validate_name(name)}.pt"
    if path.exists() and not overwrite:
        raise TIStudioError(f"{path} already exists; pass --overwrite to replace it or choose another name")
    c = load_model(model) if isinstance(model, str) else model
    widths = attention_widths(c.unet)
    modules = tuple(modules) if modules else widths
    unknown = [w for w in modules if w not in widths]
    if unknown:
        raise TIStudioError(f"--modules {','.join(map(str, unknown))}: this model's attention layers read "
                            f"widths {','.join(map(str, widths))}; choose among those")
    hn = create(name, modules, structure or Structure(), seed, c.short_hash, c.name)
    return hn_format.save(hn, path)
