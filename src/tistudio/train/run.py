"""A whole training run's lifecycle: set up, loop, final save (or save on interrupt)."""
from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..embedding.formats import FORMATS, save_embedding
from ..events import Callback, Finished, StopToken
from ..models.components import Components
from .loop import TrainResult, run_loop, save_point
from .session import prepare


def final_paths(cfg: TrainConfig, name: str) -> list[tuple[Path, str]]:
    """Where the finished embedding goes: --output (its extension picks the first format), else the
    input embedding's folder; every other chosen format beside it."""
    target = Path(cfg.output) if cfg.output else Path(cfg.embedding)
    stem = target.parent / (target.stem if cfg.output else name)
    return [(stem.with_suffix(FORMATS[fmt][0]), fmt) for fmt in cfg.formats]


def train(cfg: TrainConfig, components: Components | None = None, callback: Callback | None = None,
          stop: StopToken | None = None, progress: bool = True, resume: str | None = None) -> TrainResult:
    s = prepare(cfg, components, callback, stop, progress, resume)
    result = run_loop(s, progress)
    save_point(s, result.step, final=True)
    outputs = []
    for e in s.objective.embeddings:
        emb = e.snapshot(result.step)
        for path, fmt in final_paths(cfg, e.name):
            if e is not s.objective.embeddings[0]:
                path = path.with_name(e.name + path.suffix)
            outputs.append(str(save_embedding(emb, path, fmt)))
    result.outputs = outputs
    s.callback(Finished(result.step, result.reason, tuple(outputs)))
    return result
