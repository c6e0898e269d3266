"""The optimizer of a run (--optimizer), over the embeddings' parameter groups. The loop sets every
group's "lr" each step (schedules are pure functions of the step); the optimizer's whole state,
Prodigy's step-size estimate included, lives in its state_dict, which state.pt keeps for resume.

No weight decay anywhere: it would pull the vectors toward zero, away from the vocabulary's scale.
The optional packages are imported only when chosen (`tistudio --help` stays instant)."""
from __future__ import annotations

import importlib

import torch

from ..errors import TIStudioError

# --optimizer -> (module, PyPI package) for those that are not in torch.
PACKAGES = {"adafactor": ("transformers", "transformers"), "prodigy": ("prodigyopt", "prodigyopt"),
            "lion": ("lion_pytorch", "lion-pytorch"), "schedule-free": ("schedulefree", "schedulefree"),
            "adamw8bit": ("bitsandbytes", "bitsandbytes")}


def _module(name: str):
    module, package = PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TIStudioError(f"--optimizer {name} needs the {package} package: pip install {package} "
                            "(or use --optimizer adamw)") from None


def build_optimizer(name: str, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    if name == "adafactor":
        # External learning rate (ours), no relative step or parameter scaling: those are
        # Adafactor's own schedules, which would fight --lr.
        return _module(name).optimization.Adafactor(groups, lr=0.0, scale_parameter=False, relative_step=False,
                                                    warmup_init=False, weight_decay=0.0)
    if name == "prodigy":
        # Prodigy estimates the step size itself; --lr scales that estimate (use 1).
        return _module(name).Prodigy(groups, lr=1.0, weight_decay=0.0)
    if name == "lion":
        return _module(name).Lion(groups, lr=1e-4, weight_decay=0.0)  # its lr must be > 0; the loop sets it
    if name == "schedule-free":
        # Its own warm-up stays off: --warmup-steps shapes the rate it is given, as for the others.
        optimizer = _module(name).AdamWScheduleFree(groups, lr=1e-4, weight_decay=0.0, warmup_steps=0)
        optimizer.train()  # it refuses to step until told which point it is at
        return optimizer
    if name == "adamw8bit":
        if device.type != "cuda":  # bitsandbytes' 8-bit optimizers are CUDA kernels
            raise TIStudioError(f"--optimizer adamw8bit runs on a CUDA GPU only (this run is on {device.type}); "
                                "use --optimizer adamw (the vectors are small: 8-bit saves little here)")
        return _module(name).optim.AdamW8bit(groups, lr=0.0, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {name!r}")


def set_mode(optimizer: torch.optim.Optimizer, training: bool) -> None:
    """Schedule-free AdamW trains at one point (y) and is judged at another (x, the average it keeps
    instead of a schedule), switched by its train()/eval(). The loop trains in train mode and
    validates, previews, snapshots and saves in eval mode, so every file (and state.pt) holds x.
    A no-op for the other optimizers, which have one point."""
    switch = getattr(optimizer, "train" if training else "eval", None)
    if callable(switch):
        switch()
