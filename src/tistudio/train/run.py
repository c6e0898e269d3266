"""A whole training run's lifecycle: set up, loop, final save (or save on interrupt)."""
from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..embedding.formats import save_embedding
from ..events import Callback, Finished, Message, StopToken
from ..hypernetwork import format as hypernetwork_format
from ..hypernetwork.model import Hypernetwork
from ..models.components import Components
from ..runs import identity
from ..runs.folder import embedding_finals, final_hypernetwork
from .guards import finite
from .loop import TrainResult, run_loop, save_point
from .ownership import borrowed
from . import side_optim
from .session import prepare
from .setup import Setup
from .state import TrainState


def _save_hypernetwork(cfg: TrainConfig, hn: Hypernetwork, s: Setup, st: TrainState) -> list[Path]:
    """The finished hypernetwork and its .optim (the .optim's hash is of the .pt's bytes)."""
    path = hypernetwork_format.save(hn, final_hypernetwork(cfg.output, cfg.hypernetwork))
    optim = side_optim.write(path, hn.vectors, s.objective, st.optimizer)
    return [path] + ([optim] if optim else [])


def train(cfg: TrainConfig, components: Components | None = None, callback: Callback | None = None,
          stop: StopToken | None = None, progress: bool = True, resume: str | None = None) -> TrainResult:
    with borrowed(components):  # the caller's modules come back as they were (ownership.py)
        s, st = prepare(cfg, components, callback, stop, progress, resume)
        try:
            return _run(s, st, progress)
        finally:  # however it ends, the run folder is free for the next run (or a resume)
            if s.lock is not None:
                s.lock.release()


def _run(s: Setup, st: TrainState, progress: bool) -> TrainResult:
    cfg = s.cfg
    result = run_loop(s, st, progress)
    s.dist.close()
    if not s.dist.is_main:  # the other processes hold the same vectors; one writes them
        return result
    save_point(s, st, final=True)
    outputs, own = [], []
    shown = st.output_vectors()  # the EMA average when there is one
    first = s.objective.embeddings[0]
    finals = ([] if cfg.method == "hypernetwork"
              else embedding_finals(cfg, [e.name for e in s.objective.embeddings]))
    for k, e in enumerate(s.objective.embeddings):
        emb = e.snapshot(result.step, vectors=shown[e.name])
        if not finite(emb.vectors):  # never written (train/guards.py); the last snapshot stays good
            s.callback(Message("warning", f"{e.name} has non-finite values at step {result.step}; "
                                          "final file not written"))
            continue
        if isinstance(emb, Hypernetwork):  # one file, A1111's .pt, with its .optim
            written = _save_hypernetwork(cfg, emb, s, st)
            outputs += [str(p) for p in written]
            own.append(written[0])
            continue
        for path, fmt in finals[k]:  # each embedding's own files (runs/folder.py)
            written = save_embedding(emb, path, fmt)
            outputs.append(str(written))
            if e is first:
                own.append(written)
            if fmt == "a1111-pt" and side_optim.write(path, emb.vectors, s.objective, st.optimizer):
                outputs.append(f"{path}.optim")
    identity.record(s.run, cfg.trained_file, own)  # training these files further continues this run
    result.outputs = outputs
    s.callback(Finished(result.step, result.reason, tuple(outputs)))
    return result
