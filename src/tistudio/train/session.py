"""Set-up of a training run: config -> model, embedding(s), data, latent cache, objective,
optimizer, run folder, and (on resume) the saved state. Everything the loop needs, built once."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import TrainConfig, dump_toml, from_dict, load_toml
from ..atomic import remove_stale, write_text
from ..data.dataset import grayscale_copies, make_records, scan_images
from ..data.latent_cache import LatentCache
from ..data.latent_encode import vae_encoder
from ..data.latent_store import store_for
from ..data.prompts import PromptSampler
from ..data.templates import load_template
from ..embedding.embedding import Embedding
from ..embedding.formats import load_embedding
from ..errors import TIStudioError
from ..events import Callback, Message, StopToken
from ..models.components import Components
from . import side_optim, state as train_state
from .ema import EMA
from .guards import NumericGuard
from .objectives.select import build_objective, ema_decays
from .outputs import RunFolder
from .schedules import LRSchedule, parse_lr
from .evaluation import hooks_for
from .validation import held_out_cache, split_images
from .distributed import Distributed
from .speed import SpeedSettings, apply as apply_speed, resolve as resolve_speed

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Session:
    cfg: TrainConfig
    c: Components
    objective: object     # TIObjective or DreamArtistObjective: .embeddings, .vectors(), .loss()
    cache: LatentCache
    prompts: PromptSampler
    optimizer: torch.optim.Optimizer
    scaler: object | None
    schedule: LRSchedule
    run: RunFolder
    device: torch.device
    start_step: int
    width: int
    height: int
    callback: Callback
    stop: StopToken
    skipped: list = field(default_factory=list)
    # Observers run after every optimizer step and at the end (validation, plots, TensorBoard...):
    # objects with after_step(session, step, loss, lr) and at_end(session, result).
    hooks: list = field(default_factory=list)
    ema: EMA | None = None   # averaged vectors for previews and outputs (train/ema.py)
    speed: SpeedSettings | None = None   # resolved --profile and speed options (train/speed.py)
    dist: Distributed = field(default_factory=Distributed)   # this process's share (train/distributed.py)
    guard: NumericGuard = field(default_factory=NumericGuard)   # non-finite steps (train/guards.py)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_components(cfg: TrainConfig, device: torch.device | None = None, processes: int = 1) -> Components:
    """The UNet and text encoders are read straight in the precision this run trains in (decided by
    speed.resolve from the UNet's size in its config, before any weight is read), so a bf16 run never
    holds an fp32 copy; the VAE stays fp32, since it encodes the latent cache in fp32."""
    from ..models.load import open_model

    m = cfg.model
    if not m.model:
        raise TIStudioError("--model is required: a diffusers folder or a .safetensors/.ckpt file")
    source = open_model(m.model, family=m.family, prediction=m.prediction, config=m.config)
    speed = resolve_speed(cfg, device or pick_device(cfg.device), source.unet_parameters(), processes)
    return source.load(DTYPES[speed.precision], vae_dtype=torch.float32)


def _embedding(cfg: TrainConfig, c: Components) -> Embedding:
    if not cfg.embedding:
        raise TIStudioError("--embedding is required: a file made by `tistudio create NAME`")
    emb = load_embedding(cfg.embedding)
    emb.check_fits(c.widths, cfg.embedding)
    return emb


def prepare(cfg: TrainConfig, components: Components | None = None, callback: Callback | None = None,
            stop: StopToken | None = None, progress: bool = True, resume: str | None = None) -> Session:
    callback = callback or (lambda event: None)
    stop = stop or StopToken()
    if resume and train_state.resume_point(resume) is None:  # killed before its first save
        callback(Message("info", f"--resume {resume}: no state.pt yet; starting from the beginning"))
        resume = None
    device = pick_device(cfg.device)
    dist = Distributed.from_env(cfg.batch_size, device.type)
    device = dist.device(device)
    c = components or load_components(cfg, device, dist.world)
    c.freeze()
    width = cfg.width or c.family.resolution
    height = cfg.height or c.family.resolution
    emb = _embedding(cfg, c)
    lines = load_template(cfg.template)

    images, skipped = scan_images(cfg.data)
    for path, reason in skipped:
        callback(Message("warning", f"skipped {path}: {reason}"))
    images, held_out = split_images(cfg, images)  # held-out validation images are never trained on
    records = make_records(images, width=width, height=height, factor=c.vae_factor,
                           regex=cfg.filename_regex, join=cfg.filename_join)
    if cfg.grayscale_copies:
        records += grayscale_copies(records)

    speed = resolve_speed(cfg, device, sum(p.numel() for p in c.unet.parameters()), dist.world)
    dtype = DTYPES[speed.precision]
    for module in (c.unet, *c.text_encoders):
        # Passing a dtype to diffusers' .to() warns even when nothing changes.
        module.to(device) if module.dtype == dtype else module.to(device, dtype)
    c.vae.to(device)  # the VAE encodes in fp32 for the cache, then may leave the device
    apply_speed(c, speed)
    callback(Message("info", speed.summary()))
    encode = vae_encoder(c.vae, device, DTYPES[speed.vae_precision], speed.vae_channels_last)
    cache = LatentCache.build(records, encode, width=width, height=height,
                              mode=cfg.latent_sampling, flip=cfg.flip, batch_size=speed.encode_batch,
                              seed=cfg.seed, progress=progress, callback=callback,
                              store=store_for(cfg.latent_cache, records, cfg.flip,
                                              dist.run_root(Path(cfg.log_dir) / emb.name) / "latents", c.vae))
    val_cache = held_out_cache(cfg, held_out, encode, width=width, height=height,
                               factor=c.vae_factor, batch_size=speed.encode_batch, progress=progress)
    if cfg.vae_offload:
        c.vae.to("cpu")

    run = RunFolder(dist.run_root(Path(cfg.log_dir) / emb.name))
    objective = build_objective(cfg, c, emb, device, lines, cache.pixels)
    groups = [{"params": list(e.params), "lr_weight": e.lr_weight, "lr": 0.0} for e in objective.embeddings]
    # No weight decay: it would pull the vectors toward zero, away from the vocabulary's scale.
    optimizer = torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type) if speed.precision == "fp16" else None
    start_step = emb.step
    if not resume:
        side_optim.restore(cfg.embedding, objective, optimizer, callback)
    decays = ema_decays(cfg, objective)
    ema = EMA(objective.embeddings, decays, cfg.ema_replace_every) if decays else None
    if resume:
        saved = train_state.load(Path(resume))
        for e in objective.embeddings:
            for p, v in zip(e.params, saved["vectors"][e.name]):
                p.data.copy_(v.to(device))
        optimizer.load_state_dict(saved["optimizer"])
        for group, e in zip(optimizer.param_groups, objective.embeddings):
            group["lr_weight"] = e.lr_weight  # this run's --neg-lr-weight, not the saved one
        if ema is not None:
            ema.load_state_dict(saved.get("extra", {}).get("ema", {}), f"--resume {resume}")
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        train_state.restore_rngs(saved)
        start_step = int(saved["step"])
        run.truncate_after(start_step)
        callback(Message("info", f"resumed {resume} at step {start_step}"))
    if dist.is_main:
        remove_stale(run.root)  # temporaries of a killed run (atomic.py)
        write_text(run.root / "config.toml", dump_toml(cfg))
    session = Session(cfg=cfg, c=c, objective=objective, cache=cache,
                   prompts=PromptSampler(lines, cfg.seed, cfg.shuffle_tags, cfg.tag_dropout),
                   optimizer=optimizer, scaler=scaler, schedule=parse_lr(cfg.lr, cfg.steps), run=run,
                   device=device, start_step=start_step,
                   width=width, height=height, callback=callback, stop=stop, skipped=skipped, ema=ema,
                   speed=speed, dist=dist)
    if resume:
        session.guard.load_state_dict(saved.get("extra", {}).get("guard", {}))
    session.hooks.extend(hooks_for(session, val_cache, resumed=bool(resume)))
    return session


def config_for_resume(run_dir: str | Path, overrides: dict) -> TrainConfig:
    """The run's saved config with `overrides` (explicitly given options) on top."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise TIStudioError(f"--resume {run_dir}: no config.toml there; pass a run folder written by "
                            "`tistudio train` (LOG_DIR/NAME)")
    base = load_toml(path)
    nested = {k: {**base.get(k, {}), **overrides.pop(k, {})} for k in ("model", "dreamartist")}
    return from_dict(TrainConfig, {**base, **overrides, **nested}, str(path))

