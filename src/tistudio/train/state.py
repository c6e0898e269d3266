"""Training state for an exact resume: vectors, optimizer, loss scaler, every RNG, and the step.
Written atomically to RUN/state.pt; read back without executing any pickled code.

state.pt is the authoritative commit point of a run: the loop writes snapshots and loss.csv first and
state.pt last, so whatever a kill leaves, a resume restarts from the last complete state and rewrites
any newer snapshot identically (RELIABILITY.md)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import write_with
from ..embedding.formats import load_embedding
from ..errors import TIStudioError, first_line
from ..hypernetwork import format as hypernetwork_format
from ..runs.folder import CONFIG_FILE, STATE_FILE, RunFolder


def capture(step: int, vectors: dict[str, tuple[torch.Tensor, ...]], optimizer, scaler,
            extra: dict | None = None) -> dict:
    """Every draw of the loop (noise, timesteps, latents, prompts) is a pure function of the seed and
    the sample's position (rng.py), so only torch's global RNG is kept, for any library code that
    draws from it."""
    return {
        "step": step,
        "vectors": {k: [v.detach().float().cpu().clone() for v in vs] for k, vs in vectors.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "extra": extra or {},
    }


def save(run_dir: Path, state: dict) -> Path:
    return write_with(run_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))


def resume_point(run_dir: str | Path | None) -> str | None:
    """`run_dir` when it holds a state to resume from; None when the run was stopped (or killed)
    before its first save, so it simply starts again from the beginning (same result). A folder that
    is not a run folder at all stays an error (from `load`)."""
    if run_dir is None:
        return None
    folder = Path(run_dir)
    if not (folder / STATE_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        return None
    return str(run_dir)


def load(run_dir: Path) -> dict:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise TIStudioError(f"--resume {run_dir}: no {STATE_FILE} there; pass a run folder written by "
                            "`tistudio train` (LOG_DIR/NAME)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        int(state["step"])
        return state
    except Exception as exc:  # torch raises many types for a damaged file; a 0-byte one has no message
        raise TIStudioError(f"{path}: damaged training state ({first_line(exc)}); "
                            f"{_fallback(RunFolder.open(run_dir))}") from None


def _fallback(run: RunFolder) -> str:
    """The way on from a damaged state.pt: the newest snapshot that still loads (a hypernetwork
    run's are in hypernetworks/, an embedding run's in embeddings/)."""
    hyper = run.hypernetwork_snapshots()
    option, folder, read = (("--hypernetwork", run.hypernetworks, hypernetwork_format.load) if hyper
                            else ("--embedding", run.embeddings, load_embedding))
    for step, snapshot in hyper or run.snapshots():
        try:
            read(snapshot)
        except Exception:  # a damaged snapshot too: try the one before
            continue
        return (f"continue from the newest intact snapshot with {option} {snapshot} (step {step}, "
                f"without --resume), or delete {run.state} to --resume from step 0")
    return f"no intact snapshot in {folder}; delete {run.state} to --resume from step 0"


def restore_rngs(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
