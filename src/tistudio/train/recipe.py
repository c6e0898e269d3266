"""The training recipe's numbers (TrainConfig.recipe, docs/recipe.md): which timesteps and noise a
sample gets, the per-pixel loss, the per-sample weight from SNR(t), the L2 pull toward the start
vectors, and norm control. The loop asks a Recipe; every default reproduces A1111's draws and loss
bit for bit (the default timestep draw is the same torch.randint call as before).

SNR(t) = ᾱ_t / (1 − ᾱ_t). Weights are defined for the noise (ε) loss; a v-prediction loss equals
(SNR + 1)/SNR times the ε loss for the same x̂0 error, so its weight is multiplied by SNR/(SNR + 1)
(for min-SNR this gives min(SNR, γ)/(SNR + 1), the form of Hang et al. 2023 for v models).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch

from ..config import RecipeConfig, timestep_bounds
from ..errors import TIStudioError
from ..models.components import Components
from ..models.denoiser import per_sample_loss

# SNR floor for the weights: zero-terminal SNR makes SNR(T) exactly 0, where 1/√SNR is infinite.
SNR_FLOOR = 1e-4
P2_K, P2_GAMMA = 1.0, 1.0  # Choi et al. 2022 (P2 weighting): 1/(k + SNR)^γ with their k = γ = 1


def zero_terminal_scheduler(scheduler):
    """A copy of the training scheduler with betas rescaled so ᾱ_T = 0 (Lin et al. 2023, "Common
    Diffusion Noise Schedules and Sample Steps are Flawed"); the model's own object is not touched."""
    # A keyword, not a key in the config dict: the stored config's False would win over the key.
    return type(scheduler).from_config(scheduler.config, rescale_betas_zero_snr=True)


def snr(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod.to(t.device)[t].float()
    return a / (1 - a).clamp_min(1e-12)


def timestep_weight(snr_t: torch.Tensor, weighting: str, gamma: float, prediction: str) -> torch.Tensor:
    """Per-sample loss weight [B] for SNR values [B] (see the module docstring)."""
    if weighting == "none":
        return torch.ones_like(snr_t)
    s = snr_t.clamp_min(SNR_FLOOR)
    if weighting == "min-snr":        # Hang et al. 2023: cap the weight of easy, low-noise steps
        w = s.clamp(max=gamma) / s
    elif weighting == "debiased":     # Yu et al. 2024 (debiased estimation): 1/√SNR
        w = s.rsqrt()
    elif weighting == "p2":
        w = (P2_K + s).pow(-P2_GAMMA)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return w * s / (s + 1) if prediction == "v_prediction" else w


def draw_timesteps(gen: torch.Generator, bounds: tuple[int, int], sampling: str, n_train: int) -> torch.Tensor:
    """One timestep [1] in [lo, hi) (hi capped at the model's count). Uniform over the full range is
    the original torch.randint(0, n_train) draw, so the default draws the same numbers as before."""
    lo, hi = bounds[0], min(bounds[1], n_train)
    if sampling == "uniform":
        return torch.randint(lo, hi, (1,), generator=gen)
    # logit-normal (Esser et al. 2024, SD3): u = sigmoid(z), z ~ N(0, 1), favours the middle timesteps
    u = torch.sigmoid(torch.randn(1, generator=gen))
    return (lo + (u * (hi - lo)).long()).clamp(max=hi - 1)


@dataclass
class Recipe:
    cfg: RecipeConfig
    noising: Components              # the components whose scheduler noises (a copy under ZTSNR)
    bounds: tuple[int, int]
    start: dict | None = None        # {name: start vectors}, for --init-reg
    medians: tuple[float, ...] = ()  # vocabulary median norms, for --norm

    @classmethod
    def build(cls, cfg: RecipeConfig, c: Components, objective, medians: tuple[float, ...],
              fresh: bool = True) -> "Recipe":
        """`medians`: the run's vocabulary median norms (health.vocabulary_medians, computed once by
        the session); `fresh`: a new run (not a resume), whose vectors start at the vocabulary median
        norm under --norm; the start vectors of a resumed run come from its state (load_state_dict)."""
        noising = replace(c, scheduler=zero_terminal_scheduler(c.scheduler)) if cfg.zero_terminal_snr else c
        recipe = cls(cfg, noising, timestep_bounds(cfg.timestep_range), None, medians)
        if fresh:
            recipe.renormalise(objective)
        if cfg.init_reg:
            recipe.start = {e.name: tuple(p.detach().clone() for p in e.params) for e in objective.embeddings}
        return recipe

    def state_dict(self) -> dict:
        if self.start is None:
            return {}
        return {"start": {name: [v.detach().cpu().clone() for v in vs] for name, vs in self.start.items()}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if self.start is not None and state.get("start"):
            self.start = {name: tuple(v.to(device) for v in vs) for name, vs in state["start"].items()}

    @property
    def criterion(self):
        return partial(per_sample_loss, kind=self.cfg.loss, delta=self.cfg.huber_delta)

    def timestep(self, gen: torch.Generator) -> torch.Tensor:
        n_train = self.noising.scheduler.config.num_train_timesteps
        return draw_timesteps(gen, self.bounds, self.cfg.timestep_sampling, n_train)

    def offset(self, noise: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Offset noise (Guttenberg 2023): one extra N(0,1) per channel, constant over the image, so
        the model learns to shift mean brightness. Drawn only when on: the default draws nothing."""
        if not self.cfg.noise_offset:
            return noise
        shift = torch.randn((*noise.shape[:2], 1, 1), generator=gen)
        return noise + self.cfg.noise_offset * shift

    def weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """Per-sample weights [B] for timesteps t, or None without a weighting."""
        if self.cfg.loss_weighting == "none":
            return None
        s = snr(self.noising.scheduler.alphas_cumprod, t)
        return timestep_weight(s, self.cfg.loss_weighting, self.cfg.snr_gamma, self.noising.prediction)

    def weighted(self, per_sample: torch.Tensor, t: torch.Tensor,
                 sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        """The per-sample loss [B] times its SNR weight and its concept's weight [B] (a concept's
        loss_weight, times --prior-loss-weight for reg images: data/concepts.py), where there are."""
        for w in (self.weights(t), sample_weights):
            if w is not None:
                per_sample = per_sample * w.to(per_sample.device)
        return per_sample

    def with_regularizer(self, loss: torch.Tensor, objective) -> torch.Tensor:
        reg = self.regularizer(objective)
        return loss if reg is None else loss + reg

    def regularizer(self, objective) -> torch.Tensor | None:
        """λ · the mean over vectors of ‖v − v₀‖², summed over embeddings and text encoders: the pull
        toward the start vectors of the original TI code (Gal et al. 2022)."""
        if not self.cfg.init_reg:
            return None
        total = 0.0
        for e in objective.embeddings:
            for p, p0 in zip(e.params, self.start[e.name]):
                total = total + (p - p0.to(p.device)).pow(2).sum(dim=1).mean()
        return self.cfg.init_reg * total

    def before_step(self, objective) -> None:
        """fixed-direction (DTI): drop each gradient's component along its vector, so the optimizer
        only turns the vector; the renormalisation after the step removes the rest."""
        if self.cfg.norm != "fixed-direction":
            return
        with torch.no_grad():
            for e in objective.embeddings:
                for p in e.params:
                    if p.grad is not None:
                        unit = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
                        p.grad.sub_((p.grad * unit).sum(dim=1, keepdim=True) * unit)

    def renormalise(self, objective) -> None:
        """--norm preserve / fixed-direction: every vector to its encoder's vocabulary median norm."""
        if self.cfg.norm == "none":
            return
        with torch.no_grad():
            for e in objective.embeddings:
                for enc, p in enumerate(e.params):
                    if not p.requires_grad:  # --train-encoders: the other encoder's rows stay as they were
                        continue
                    norms = p.norm(dim=1, keepdim=True)
                    if bool((norms == 0).any()):
                        raise TIStudioError(f"--norm {self.cfg.norm}: {e.name} has a zero vector, which has no "
                                            "direction; create it from words (--init-text) or use --norm none")
                    p.mul_(self.medians[enc] / norms)
