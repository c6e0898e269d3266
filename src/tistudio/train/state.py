"""Training state for an exact resume (TrainState): vectors, optimizer, loss scaler, EMA, guard,
torch's RNG, and the step. Written atomically to RUN/state.pt; read back without executing any
pickled code.

state.pt is the authoritative commit point of a run: the loop writes snapshots and loss.csv first and
state.pt last, so whatever a kill leaves, a resume restarts from the last complete state and rewrites
any newer snapshot identically (RELIABILITY.md)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..atomic import write_with
from ..events import Callback
from ..embedding.formats import load_embedding
from ..errors import TIStudioError, first_line
from ..hypernetwork import format as hypernetwork_format
from ..runs.folder import CONFIG_FILE, STATE_FILE, RunFolder
from .ema import EMA, output_vectors
from .guards import NumericGuard, all_finite, read_step
from .objectives.base import Trainable
from .recipe import Recipe


@dataclass
class TrainState:
    """Everything a resume restores, and what the loop changes as it trains: the step, the trained
    tensors (the objective's, which `trained` holds), the optimizer, the fp16 loss scaler, the EMA
    average, the numeric guard, the recipe's start vectors (--init-reg) and torch's global RNG.
    One state_dict() / load_state_dict() pair writes and reads RUN/state.pt."""

    step: int
    trained: Sequence[Trainable]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: EMA | None
    recipe: Recipe
    guard: NumericGuard = field(default_factory=NumericGuard)
    # The last optimizer step's "vectors finite" flag, still on the device (step, flag): check_vectors
    # sets it, read_step or settle reads it (guards.py). Always None at a save point.
    unread: tuple[int, torch.Tensor] | None = None
    void: bool = False   # this step ran on vectors found non-finite (and rolled back): skip it
    # Device values others asked to read with the next copy, each with who hears them (defer).
    later: list[tuple[torch.Tensor, Callable[[list[float]], None]]] = field(default_factory=list)

    def params(self) -> list[torch.Tensor]:
        return [p for e in self.trained for p in e.params]

    def output_vectors(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """What previews and saved files show: the EMA average when there is one."""
        return output_vectors(self.trained, self.ema)

    # -- state.pt ----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Every draw of the loop (noise, timesteps, latents, prompts) is a pure function of the seed
        and the sample's position (rng.py), so only torch's global RNG is kept, for any library code
        that draws from it. The layout is the one state.pt has always had."""
        extra = {"ema": self.ema.state_dict()} if self.ema is not None else {}
        extra["recipe"] = self.recipe.state_dict()
        extra["guard"] = self.guard.state_dict()
        return {
            "step": self.step,
            "vectors": {e.name: [v.detach().float().cpu().clone() for v in e.params] for e in self.trained},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "torch_rng": torch.get_rng_state(),
            "extra": extra,
        }

    def load_state_dict(self, state: dict, where: str) -> None:
        """Put a saved state back (`where`: the --resume folder, for messages). This run's
        learning-rate weights (--neg-lr-weight) win over the saved ones."""
        extra = state.get("extra", {})
        for e in self.trained:
            for p, v in zip(e.params, state["vectors"][e.name]):
                p.data.copy_(v.to(p.device))
        self.optimizer.load_state_dict(state["optimizer"])
        for group, e in zip(self.optimizer.param_groups, self.trained):
            group["lr_weight"] = e.lr_weight
        if self.ema is not None:
            self.ema.load_state_dict(extra.get("ema", {}), f"--resume {where}")
        self.recipe.load_state_dict(extra.get("recipe", {}), self.trained[0].params[0].device)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.guard.load_state_dict(extra.get("guard", {}))
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])

    # -- the guard's rollback target ---------------------------------------------------------------

    def remember(self) -> None:
        """A copy of the current (good) state for the guard: at the start and at each save point."""
        self.guard.remember({
            "vectors": {e.name: [p.detach().clone() for p in e.params] for e in self.trained},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "ema": copy.deepcopy(self.ema.state_dict()) if self.ema is not None else None,
            "scaler": copy.deepcopy(self.scaler.state_dict()) if self.scaler is not None else None,
        })

    def defer(self, values: torch.Tensor, then: Callable[[list[float]], None]) -> None:
        """Read `values` (a 1-D device tensor) with the next copy (read_step or settle) and hand them
        to `then` before anything else that copy decides: the vector-health watch reads nothing
        on its own (health.VectorWatch.watch)."""
        self.later.append((values, then))

    def _read(self, losses: list[torch.Tensor], flags: list) -> tuple[float, list[bool]]:
        """guards.read_step's one copy, with the deferred values, whose listeners hear them first."""
        later, self.later = self.later, []
        total, read, values = read_step(losses, flags, [t for t, _ in later])
        for (_, then), got in zip(later, values):
            then(got)
        return total, read

    def read_step(self, losses: list[torch.Tensor], say: Callback) -> tuple[float, bool]:
        """(the step's loss, whether every gradient is finite), read with the previous step's vectors
        flag and any deferred values in one device-to-host copy (guards.read_step). Vectors that
        step left non-finite roll back now, and this step, computed on them, is void (admit skips it)."""
        step, vectors = self.unread or (0, None)
        total, (grads_ok, vectors_ok) = self._read(losses, [all_finite(p.grad for p in self.params()), vectors])
        self.void = not self._vectors_read(step, vectors_ok, say)
        return total, grads_ok

    def admit(self, step: int, loss: float, grads_finite: bool, say: Callback) -> bool:
        """The guard's verdict on optimizer step `step` (1-based): False when it is skipped (its
        gradients cleared; after too many in a row the good state comes back). A void step (see
        read_step) is skipped without counting: its rollback has been made."""
        void, self.void = self.void, False
        if not void and self.guard.admit(step, loss, grads_finite, self.scaler is not None, say):
            return True
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()  # lower the scale, as a skipped scaler step would
        why = None if void else self.guard.rollback_due()
        if why:
            self.roll_back(step, why, say)
        return False

    def check_vectors(self, step: int) -> None:
        """After the optimizer step `step`: whether it left the vectors finite, kept on the device
        until the next read (read_step, settle), so the CPU need not wait for the step to finish."""
        self.unread = (step, all_finite(self.params()))

    def settle(self, say: Callback) -> None:
        """Before anything judges, previews or saves the vectors (and at the end): read the last
        step's flag and any deferred values now (one copy), and undo a step that made a vector
        non-finite."""
        if self.unread is None and not self.later:
            return
        unread = self.unread
        _, (ok,) = self._read([], [None if unread is None else unread[1]])
        if unread is not None:
            self._vectors_read(unread[0], ok, say)

    def _vectors_read(self, step: int, ok: bool, say: Callback) -> bool:
        """The unread flag of step `step` is read (`ok`): undo that step if it made a vector non-finite."""
        self.unread = None
        if not ok:
            self.roll_back(step, "the vectors became non-finite", say)
        return ok

    def roll_back(self, step: int, why: str, say: Callback) -> None:
        good = self.guard.target()
        with torch.no_grad():
            for e in self.trained:
                for p, v in zip(e.params, good["vectors"][e.name]):
                    p.copy_(v)
        self.optimizer.load_state_dict(copy.deepcopy(good["optimizer"]))
        if self.ema is not None and good["ema"] is not None:
            self.ema.load_state_dict(copy.deepcopy(good["ema"]))
        if self.scaler is not None and good["scaler"]:
            self.scaler.load_state_dict(copy.deepcopy(good["scaler"]))
        self.optimizer.zero_grad(set_to_none=True)
        self.guard.rolled_back(step, why, say)


def save(run_dir: Path, state: dict) -> Path:
    """RUN/state.pt, atomically (`state`: TrainState.state_dict())."""
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
