"""A whole training run's lifecycle: set up, loop, final save (or save on interrupt)."""
from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..embedding.formats import FORMATS, save_embedding
from ..events import Callback, Finished, Message, StopToken
from ..hypernetwork import format as hypernetwork_format
from ..hypernetwork.model import Hypernetwork
from ..models.components import Components
from .ema import output_vectors
from .guards import finite
from .loop import TrainResult, run_loop, save_point
from . import side_optim
from .session import prepare


def final_paths(cfg: TrainConfig, name: str) -> list[tuple[Path, str]]:
    """Where the finished embedding goes: --output (its extension picks the first format), else the
    input embedding's folder; every other chosen format beside it."""
    target = Path(cfg.output) if cfg.output else Path(cfg.embedding)
    stem = target.stem if cfg.output else name
    # Not with_suffix: a name such as "v1.5" would lose its ".5".
    return [(target.parent / f"{stem}{FORMATS[fmt][0]}", fmt) for fmt in cfg.formats]


def final_hypernetwork(cfg: TrainConfig, hn: Hypernetwork, s) -> list[str]:
    """--output, else the --hypernetwork file itself (as A1111 overwrites models/hypernetworks/NAME.pt)."""
    path = hypernetwork_format.save(hn, Path(cfg.output or cfg.hypernetwork))
    optim = side_optim.write(path, hn.vectors, s.objective, s.optimizer)
    return [str(path)] + ([str(optim)] if optim else [])


def train(cfg: TrainConfig, components: Components | None = None, callback: Callback | None = None,
          stop: StopToken | None = None, progress: bool = True, resume: str | None = None) -> TrainResult:
    s = prepare(cfg, components, callback, stop, progress, resume)
    result = run_loop(s, progress)
    s.dist.close()
    if not s.dist.is_main:  # the other processes hold the same vectors; one writes them
        return result
    save_point(s, result.step, final=True)
    outputs = []
    shown = output_vectors(s)  # the EMA average when there is one
    first = s.objective.embeddings[0]
    for e in s.objective.embeddings:
        emb = e.snapshot(result.step, vectors=shown[e.name])
        if not finite(emb.vectors):  # never written (train/guards.py); the last snapshot stays good
            s.callback(Message("warning", f"{e.name} has non-finite values at step {result.step}; "
                                          "final file not written"))
            continue
        if isinstance(emb, Hypernetwork):  # one file, A1111's .pt, with its .optim
            outputs += final_hypernetwork(cfg, emb, s)
            continue
        for path, fmt in final_paths(cfg, first.name):
            if e is not first:  # NAME-neg follows the positive's file: --output x/cat.pt -> x/cat-neg.pt
                tail = e.name[len(first.name):] if e.name.startswith(first.name) else ""
                path = path.with_name((path.stem + tail if tail else e.name) + path.suffix)
            outputs.append(str(save_embedding(emb, path, fmt)))
            if fmt == "a1111-pt" and side_optim.write(path, emb.vectors, s.objective, s.optimizer):
                outputs.append(f"{path}.optim")
    result.outputs = outputs
    s.callback(Finished(result.step, result.reason, tuple(outputs)))
    return result
