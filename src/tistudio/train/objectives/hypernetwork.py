"""Hypernetwork training (A1111's Train Hypernetwork): the plain diffusion loss of the model with
the hypernetwork applied to every attention's key/value context, at strength 1. Only the
hypernetwork's weights train; the UNet, VAE and text encoders stay frozen and bit-identical.

Its hooks (hypernetwork/apply.py) are on the UNet only while the loop runs (`attached`) and act only
while gradients are recorded: the training forward, and its re-run in the backward pass under
gradient checkpointing. Previews and generation (no gradients) put the averaged weights on in their
turn; validation (no gradients) applies the current ones for its own call.

The text encoders carry no trainable tensor here, so a prompt always encodes to the same context:
with --vae-offload (the guide's "Move VAE and CLIP to RAM") and neither --shuffle-tags nor
--tag-dropout, every prompt the run can draw (template lines x captions) is encoded once before
training and the text encoders leave the accelerator.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from ...data.prompts import CaptionExtras, fill, process_tags
from ...events import Message
from ...hypernetwork.apply import applied, attach, detach
from ...hypernetwork.model import Hypernetwork
from ...models.components import Components
from ...models.conditioning import Conditioning, PromptEncoder
from ...models.denoiser import predict
from ...rng import seed_for
from .base import MicroBatch


class TrainableHypernetwork:
    """The hypernetwork's weights as the loop's trainable tensors (`params`, file order), with the
    interface of TrainableEmbedding: name, params, lr_weight, snapshot."""

    lr_weight = 1.0
    stop_step = 0   # trains to --steps

    def __init__(self, source: Hypernetwork, device: torch.device):
        self.source = source.to(device)
        self.params = tuple(p.requires_grad_(True) for p in source.vectors)

    @property
    def name(self) -> str:
        return self.source.name

    def snapshot(self, step: int, name: str | None = None, vectors=None) -> Hypernetwork:
        return self.source.with_weights(vectors or self.params, step, name)


class PromptCache:
    """Conditionings of a fixed set of prompt texts, kept on the CPU; encodes nothing after build.
    Each text is encoded alone, so it keeps its own 75-token chunk count (a batch pads to its longest)."""

    def __init__(self, encoder: PromptEncoder, texts: Sequence[str]):
        self.context: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for text in dict.fromkeys(texts):
                cond = encoder.encode([text])
                self.context[text] = cond.context[0].cpu()
                if cond.pooled is not None:
                    self.pooled[text] = cond.pooled[0].cpu()

    def get(self, texts: Sequence[str], device: torch.device) -> Conditioning | None:
        """None when a text was not cached or the batch mixes chunk counts (the encoder would pad the
        shorter ones): the caller encodes then, as without a cache."""
        if not all(t in self.context for t in texts) or len({self.context[t].shape for t in texts}) != 1:
            return None
        context = torch.stack([self.context[t] for t in texts]).to(device)
        pooled = torch.stack([self.pooled[t] for t in texts]).to(device) if self.pooled else None
        return Conditioning(context, pooled)


class HypernetworkObjective:
    def __init__(self, components: Components, encoder: PromptEncoder, hypernetwork: TrainableHypernetwork,
                 seed: int = 0):
        self.c = components
        self.seed = seed
        self.encoder = encoder
        self.embeddings = [hypernetwork]   # the loop's list of what trains
        self.prompt_cache: PromptCache | None = None
        self.offloaded = False   # text encoders moved off the accelerator (offload_text_encoders)
        self._handles: list = []  # the hooks while `attached`

    @property
    def hypernetwork(self) -> TrainableHypernetwork:
        return self.embeddings[0]

    def vectors(self) -> dict[str, tuple[torch.Tensor, ...]]:
        return {e.name: e.params for e in self.embeddings}

    def cache_prompts(self, texts: Sequence[str]) -> None:
        self.prompt_cache = PromptCache(self.encoder, texts)

    def conditioning(self, texts: Sequence[str], device: torch.device) -> Conditioning:
        cached = self.prompt_cache.get(texts, device) if self.prompt_cache is not None else None
        if cached is not None:
            return cached
        with torch.no_grad(), text_encoders_on(self.c, device if self.offloaded else None):
            return self.encoder.encode(list(texts))  # no_grad: nothing in the text encoders trains

    def loss(self, batch: MicroBatch) -> torch.Tensor:
        cond = self.conditioning([p.text for p in batch.prompts], batch.noisy.device)
        hn = self.hypernetwork.source
        grad = torch.is_grad_enabled()
        # Dropout only while gradients flow: validation (under no_grad) measures the deterministic net.
        dropout = grad and hn.structure.use_dropout
        hn.train(dropout)
        hooks = contextlib.nullcontext() if grad and self._handles else applied(self.c.unet, [(hn, 1.0)], dropout)
        device = batch.noisy.device
        # Dropout draws from torch's global generator: seed it with the keyed seed of (run seed, first
        # sample's position) for this call (tistudio.rng), so its masks are a pure function of the
        # step like the noise (resume stays exact; checkpointing's re-run restores the same generator
        # state) and the global generator is left as it was.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=dropout), hooks:
            if dropout:
                torch.manual_seed(seed_for(self.seed, "hypernetwork-dropout", batch.position))
            pred = predict(self.c, batch.noisy, batch.timesteps, cond, batch.pixel_size, batch.size_ids)
        return batch.criterion(pred, batch.target, batch.weights)  # the recipe's --loss

    @contextlib.contextmanager
    def attached(self):
        """The loop's lifetime: hooks that apply the live weights whenever gradients are recorded."""
        self._handles = attach(self.c.unet, [(self.hypernetwork.source, 1.0)], when=torch.is_grad_enabled)
        try:
            yield
        finally:
            detach(self._handles)


@contextlib.contextmanager
def text_encoders_on(c: Components, device: torch.device | None):
    """Offloaded text encoders on `device` for the block, then back (None: leave them)."""
    if device is None:
        yield
        return
    homes = [next(te.parameters()).device for te in c.text_encoders]
    for te in c.text_encoders:
        te.to(device)
    try:
        yield
    finally:
        for te, home in zip(c.text_encoders, homes):
            te.to(home)


def offload_text_encoders(cfg, c: Components, objective: HypernetworkObjective, lines: Sequence[str],
                          captions: Sequence[str], callback) -> bool:
    """The guide's "Move VAE and CLIP to RAM" for a hypernetwork run: encode every prompt the run can
    draw (each template line with each caption, tags as they are) once, then move the text encoders
    to the CPU. With --shuffle-tags or --tag-dropout the prompts vary without end, so the encoders
    stay (as in A1111, which then moves them back and forth every step)."""
    if cfg.shuffle_tags or cfg.tag_dropout:
        callback(Message("info", "--vae-offload: the text encoders stay on the device, since "
                                 "--shuffle-tags/--tag-dropout make new prompts every step"))
        return False
    name = objective.hypernetwork.name
    extras = CaptionExtras.of(cfg)  # prefix and suffix; with --caption-dropout also the empty caption
    words = [extras.around(process_tags(caption, rng=None)) for caption in captions] + ([""] if extras.dropout else [])
    texts = [fill(line, name, filewords) for line in lines for filewords in words]
    objective.cache_prompts(texts)
    for te in c.text_encoders:
        te.to("cpu")
    objective.offloaded = True
    callback(Message("info", f"--vae-offload: {len(objective.prompt_cache.context)} prompt conditionings cached; "
                             "the text encoders moved to the CPU"))
    return True
