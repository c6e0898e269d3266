"""Training state for an exact resume: vectors, optimizer, loss scaler, every RNG, and the step.
Written atomically to RUN/state.pt; read back without executing any pickled code."""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..atomic import write_with
from ..errors import TIStudioError

STATE_FILE = "state.pt"


def capture(step: int, vectors: dict[str, tuple[torch.Tensor, ...]], optimizer, scaler,
            prompt_rng: random.Random, extra: dict | None = None) -> dict:
    """Per-sample noise is a pure function of the step (train/loop.py), so besides the prompt RNG only
    torch's global RNG is kept, for any library code that draws from it."""
    version, internal, gauss = prompt_rng.getstate()
    return {
        "step": step,
        "vectors": {k: [v.detach().float().cpu().clone() for v in vs] for k, vs in vectors.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "prompt_rng": [version, list(internal), gauss],
        "extra": extra or {},
    }


def save(run_dir: Path, state: dict) -> Path:
    return write_with(run_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))


def load(run_dir: Path) -> dict:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise TIStudioError(f"--resume {run_dir}: no {STATE_FILE} there; pass a run folder written by "
                            "`tistudio train` (LOG_DIR/NAME)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TIStudioError(f"{path}: unreadable training state ({str(exc).splitlines()[0][:160]})") from None


def restore_rngs(state: dict, prompt_rng: random.Random) -> None:
    torch.set_rng_state(state["torch_rng"])
    version, internal, gauss = state["prompt_rng"]
    prompt_rng.setstate((version, tuple(internal), gauss))
