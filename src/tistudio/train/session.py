"""Set-up of a training run: config -> model, embedding(s), data, latent cache, objective,
optimizer, run folder, and (on resume) the saved state. `prepare` builds the read-only Setup and
the TrainState the loop steps (setup.py, state.py), once."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..config import TrainConfig, changes, color_jitter, dump_toml, from_dict, load_toml, merge, not_resumable
from ..config.validation import first_repeat
from ..atomic import as_user_error, check_writable, remove_stale, write_text
from ..data.bucket_cache import BucketedCache
from ..data.buckets import plan_buckets
from ..data.concepts import concept_configs, load_concepts, unknown_embeddings
from ..data.latent_encode import vae_encoder
from ..data.latent_store import store_for
from ..data.prompts import CaptionExtras, PromptSampler
from ..data.templates import load_template
from ..embedding.embedding import Embedding
from ..embedding.formats import load_embedding
from ..errors import TIStudioError
from ..events import Callback, Message, StopToken
from ..hypernetwork import format as hypernetwork_format
from ..hypernetwork.apply import check_fits as hypernetwork_fits
from ..hypernetwork.model import Hypernetwork
from ..models.components import Components
from ..models.footprint import check_fits
from ..models.vae import drop_decoder, load_vae
from ..runs import identity
from ..runs.folder import CONFIG_FILE, RunFolder, embedding_finals, final_hypernetwork
from ..runs.lock import RunLock
from . import fidelity, side_optim, state as train_state
from .advice import start_warnings
from .ema import EMA
from .health import vocabulary_medians
from .objectives.base import train_only
from .objectives.hypernetwork import offload_text_encoders
from .objectives.select import build_objective, ema_decays
from .outputs import TrainingFolder
from .optimizers import build_optimizer
from .recipe import Recipe
from ..schedules import build_schedule
from .report import hooks_for
from .setup import DTYPES, Setup
from .validation import held_out_cache, split_images
from .preview_prompts import load_preview_prompts, per_embedding
from .distributed import Distributed
from .speed import apply as apply_speed, resolve as resolve_speed


MODEL_REQUIRED = "--model is required: a diffusers folder or a .safetensors/.ckpt file"


def pick_device(name: str) -> torch.device:
    """The --device (its spelling is checked in config.py), refused when this machine lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            build = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise TIStudioError(f"--device {name}: {build}; use --device cpu (or auto)")
        if (device.index or 0) >= count:
            raise TIStudioError(f"--device {name}: only {count} CUDA device(s) here; use cuda:0 to "
                                f"cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TIStudioError(f"--device {name}: Apple's MPS is not available here; use --device cpu (or auto)")
    return device


def load_components(cfg: TrainConfig, device: torch.device | None = None, processes: int = 1) -> Components:
    """The UNet and text encoders are read straight in the precision this run trains in (decided by
    speed.resolve from the UNet's size in its config, before any weight is read), so a bf16 run never
    holds an fp32 copy; the VAE stays fp32, since it encodes the latent cache in fp32."""
    from ..models.load import open_model

    m = cfg.model
    if not m.model:
        raise TIStudioError(MODEL_REQUIRED)
    source = open_model(m.model, family=m.family, prediction=m.prediction, config=m.config)
    speed = resolve_speed(cfg, device or pick_device(cfg.device), source.unet_parameters(), processes)
    return source.load(DTYPES[speed.precision], vae_dtype=torch.float32)


def load_trained(cfg: TrainConfig) -> list[Embedding] | list[Hypernetwork]:
    """What the run trains, the first naming the run folder by its stored name: the --hypernetwork
    file of a hypernetwork run, else each embedding (--embedding, then the [[embeddings]] tables;
    DreamArtist's partner is found later, select.py)."""
    if cfg.method == "hypernetwork":
        return [hypernetwork_format.load(cfg.hypernetwork)]
    if not cfg.embedding_tables:
        raise TIStudioError("--embedding is required: a file made by `tistudio create NAME`")
    embs = [load_embedding(t.path) for t in cfg.embedding_tables]
    problems = not_together(embs, [t.path for t in cfg.embedding_tables])
    if problems:
        raise TIStudioError(problems[0])
    return embs


def not_together(embs: list[Embedding], paths: list[str]) -> list[str]:
    """Why these embeddings (loaded from `paths`) cannot train in one run, one line each: a trigger
    two of them have, or a stored step other than the first's. `tistudio check` lists them all."""
    out = []
    for k, emb in enumerate(embs[1:], 1):  # a prompt names an embedding by its trigger, so each needs its own
        same = next((i for i in range(k) if embs[i].name == emb.name), None)
        if same is not None:
            out.append(f"[[embeddings]] {paths[k]}: its trigger {emb.name!r} is also {paths[same]}'s; "
                       "each embedding of a run needs its own name (`tistudio create OTHER_NAME`)")
        if emb.step != embs[0].step:  # --steps counts from the stored step, one count for the run
            out.append(f"[[embeddings]] {paths[k]}: stored at step {emb.step}, {paths[0]} at step "
                       f"{embs[0].step}; embeddings trained together start from the same step: train "
                       "them in separate runs")
    return out


def finals(cfg: TrainConfig, names: list[str]) -> list[Path]:
    """The run's finished files (`names`: what it trains), refused when two would share a path."""
    if cfg.method == "hypernetwork":
        return [final_hypernetwork(cfg.output, cfg.hypernetwork)]
    paths = [path for finals in embedding_finals(cfg, names) for path, _ in finals]
    twice = first_repeat(paths)
    if twice is not None:  # e.g. --output out/dog.pt while another embedding is named dog
        raise TIStudioError(f"--output {cfg.output}: two embeddings of this run would both be saved as {twice}; "
                            "choose an --output whose name is no other embedding's")
    return paths


def check_steps_left(cfg: TrainConfig, name: str, start_step: int, resume: str | None = None) -> None:
    """--steps is a target counted from the embedding's stored step (as in A1111), not a number of
    steps to add: refuse a run that has nothing left to do, before anything loads or is written."""
    if start_step < cfg.steps:
        return
    where = f"--resume {resume}: " if resume else ""
    raise TIStudioError(f"{where}{name} is already at step {start_step} (≥ --steps {cfg.steps}); pass --steps M "
                        f"to train M−{start_step} more (e.g. --steps {start_step + cfg.steps} for {cfg.steps} more)")


def _claim(cfg: TrainConfig, emb: Embedding | Hypernetwork, dist: Distributed, folder: str | None,
           callback: Callback) -> tuple[TrainingFolder, RunLock | None, list[Path]]:
    """The run folder, locked, with its identity and config.toml written: `folder` (a resume's),
    else LOG_DIR/NAME, or NAME-2 … when LOG_DIR/NAME is another embedding's run (runs/identity.py).
    config.toml comes first of all files, so a run killed at any later moment can be resumed.
    Also returns the folders made here (outermost first), for _unclaim."""
    if not dist.is_main:  # the others write a scratch copy (train/distributed.py)
        return TrainingFolder(dist.run_root(Path(cfg.log_dir) / emb.name), emb.name), None, []
    root = Path(folder) if folder else identity.choose(cfg.log_dir, emb.name, cfg.trained_file)
    if root != Path(cfg.log_dir) / emb.name and not folder:
        owner = identity.read(RunFolder(Path(cfg.log_dir) / emb.name, emb.name)) or {}
        kind = "hypernetwork" if isinstance(emb, Hypernetwork) else "embedding"
        callback(Message("info", f"{Path(cfg.log_dir) / emb.name} is the run of another {kind} named "
                                 f"{emb.name} ({owner.get('embedding', 'unknown file')}); this run goes to {root}"))
    made = [p for p in (*reversed(root.parents), root) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only or full disk: one line, not a traceback
        raise as_user_error(exc, root) or exc from None
    lock = RunLock(RunFolder(root, emb.name).lock).acquire()
    try:
        run = TrainingFolder(root, emb.name)
        remove_stale(run.root)  # temporaries of a killed run (atomic.py)
        write_text(run.config, dump_toml(cfg))
        identity.record(run, cfg.trained_file)
    except BaseException:
        lock.release()
        raise
    return run, lock, made


def _unclaim(run: TrainingFolder, lock: RunLock | None, made: list[Path]) -> None:
    """Set-up failed before any training (a model that will not load, a size that cannot fit): the
    folder is free again, and one this run made holds nothing of it, so a refused run leaves no
    trace. An existing run's folder keeps everything."""
    if lock is not None:
        lock.release()
    if not made:
        return
    for path in (run.config, run.identity, run.lock):
        path.unlink(missing_ok=True)
    for sub in run.root.iterdir():  # the empty embeddings/, images/ … the folder object made
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    for folder in reversed(made):
        try:
            folder.rmdir()  # only when empty: anything else written there stays
        except OSError:
            break


def prepare(cfg: TrainConfig, components: Components | None = None, callback: Callback | None = None,
            stop: StopToken | None = None, progress: bool = True,
            resume: str | None = None) -> tuple[Setup, train_state.TrainState]:
    """The run's Setup and its TrainState (at the embedding's step, or the resumed state's). The
    run folder stays locked (Setup.lock) until train() releases it."""
    callback = callback or (lambda event: None)
    stop = stop or StopToken()
    folder = resume
    if resume and train_state.resume_point(resume) is None:  # killed before its first save
        callback(Message("info", f"--resume {resume}: no state.pt yet; starting from the beginning (step 0) "
                                 "in that folder"))
        resume = None
    # Cheap checks first (the embedding, a resume's state, the steps left, the output's folder, the
    # concepts' embedding names), so a run that cannot start says so before the model loads, and one
    # with nothing to do writes nothing. `tistudio check` runs the same checks (preflight.py).
    trained = load_trained(cfg)
    emb = trained[0]
    saved = train_state.load(Path(resume)) if resume else None
    check_steps_left(cfg, emb.name, int(saved["step"]) if saved else emb.step, resume)
    for path in finals(cfg, [e.name for e in trained]):
        check_writable(path)
    unknown = [] if cfg.method == "hypernetwork" else unknown_embeddings(concept_configs(cfg),
                                                                          [e.name for e in trained])
    if unknown:
        raise TIStudioError(unknown[0])
    device = pick_device(cfg.device)
    dist = Distributed.from_env(cfg.batch_size, device.type)
    device = dist.device(device)
    run, lock, made = _claim(cfg, emb, dist, folder, callback)
    try:
        return _build(cfg, components, callback, stop, progress, resume, trained, saved, run, lock, device, dist)
    except Exception:  # refused before training: the folder is free again, and a new one is gone
        _unclaim(run, lock, made)
        raise
    except BaseException:  # interrupted while loading or caching: config.toml stays for --resume
        if lock is not None:
            lock.release()
        raise


def decodes(cfg: TrainConfig) -> bool:
    """Whether a run ever decodes latents: previews, the fidelity scores' images, DreamArtist's
    reconstruction loss. Without any, a VAE the run owns keeps no decoder."""
    return bool(cfg.preview_every or fidelity.asked_for(cfg)
                or (cfg.method == "dreamartist" and cfg.dreamartist.reconstruction))


def _build(cfg, components, callback, stop, progress, resume, trained, saved, run, lock, device,
           dist) -> tuple[Setup, train_state.TrainState]:
    emb = trained[0]
    c = components or load_components(cfg, device, dist.world)
    if cfg.vae:  # a copy of the components: a caller's keep their own VAE
        c = replace(c, vae=load_vae(cfg.vae, c.vae))
    c.freeze()
    width = cfg.width or c.resolution
    height = cfg.height or c.resolution
    hyper = cfg.method == "hypernetwork"
    if hyper:
        hypernetwork_fits(emb, c.unet, f"--hypernetwork {cfg.hypernetwork}")
    else:
        for e, table in zip(trained, cfg.embedding_tables):
            e.check_fits(c.widths, table.path)
    check_fits(c, width, height, cfg.batch_size * (2 if cfg.flip else 1), device, training=True)
    lines = load_template(cfg.template, needs_name=not hyper)

    # Held-out validation images (split_images) are never trained on.
    concepts, records, held_out, _ = load_concepts(
        cfg, width=width, height=height, factor=c.vae_factor, needs_name=not hyper,
        split=lambda images: split_images(cfg, images), warn=lambda text: callback(Message("warning", text)))
    if line := concepts.describe():
        callback(Message("info", line))
    previews = per_embedding(load_preview_prompts(cfg.preview_prompts, c.vae_factor),
                             [] if cfg.method != "ti" else [e.name for e in trained])
    rc = cfg.recipe
    schedule = build_schedule(cfg.lr, cfg.steps, rc.lr_scheduler, rc.warmup_steps, rc.lr_cycles)

    speed = resolve_speed(cfg, device, sum(p.numel() for p in c.unet.parameters()), dist.world)
    dtype = DTYPES[speed.precision]
    for module in (c.unet, *c.text_encoders):
        # Passing a dtype to diffusers' .to() warns even when nothing changes.
        module.to(device) if module.dtype == dtype else module.to(device, dtype)
    c.vae.to(device)  # the VAE encodes in fp32 for the cache, then may leave the device
    apply_speed(c, speed)
    callback(Message("info", speed.summary()))
    # Measured once, in the precision and place the run's encoders now have: the vocabulary never trains.
    medians = vocabulary_medians(c)
    # A hypernetwork has no vectors and no trigger word: these warnings are an embedding's.
    # With several embeddings a caption may name triggers on purpose (docs/multi-embedding.md).
    captions = [r.caption for r in records if not r.grayscale] if len(trained) == 1 else []
    for text in dict.fromkeys(w for e in ([] if hyper else trained)
                              for w in start_warnings(c, medians, e.name, captions, schedule)):
        callback(Message("warning", text))  # dict.fromkeys: the schedule's warning once, not per embedding

    def plan(paths, enabled):  # one bucket table for the training and the held-out images
        return plan_buckets(paths, width, height, enabled=enabled, step=cfg.bucket_step, min_side=cfg.bucket_min,
                            max_side=cfg.bucket_max, factor=c.vae_factor)

    placements = plan([r.path for r in records], cfg.buckets)
    augment = (cfg.augment_variants, cfg.random_crop, color_jitter(cfg.color_jitter))
    nbytes = BucketedCache.latent_bytes(len(records), placements, width=width, height=height,
                                        channels=c.vae.config.latent_channels, factor=c.vae_factor, seed=cfg.seed,
                                        augment=augment, flip=cfg.flip, mode=cfg.latent_sampling)
    store = store_for(cfg.latent_cache, nbytes, run.latents, c.vae)  # fingerprints the whole VAE
    # A VAE this run loaded gives its encoder to the cache, which lets it go once every latent is in
    # (the SD encoder: 0.14 GB in fp32), and its decoder goes now when nothing will decode; a caller's
    # VAE is copied, and comes back as it was.
    owned = components is None or bool(cfg.vae)
    encode = vae_encoder(c.vae, device, DTYPES[speed.vae_precision], speed.vae_channels_last, take=owned)
    if owned and not decodes(cfg):
        drop_decoder(c.vae)
    cache = BucketedCache.build(records, encode, width=width, height=height, placements=placements,
                                augment=augment, factor=c.vae_factor, mode=cfg.latent_sampling, flip=cfg.flip,
                                batch_size=speed.encode_batch, seed=cfg.seed, progress=progress, callback=callback,
                                store=store, lazy=True)
    if cache.left:
        callback(Message("info", f"latents: {cache.left} images (mirrors and variants included) are encoded "
                                 "as the first steps need them, so the first epoch runs slower"))
    val_cache = held_out_cache(cfg, held_out, encode, width=width, height=height, factor=c.vae_factor,
                               placements=plan(held_out, True) if placements and held_out else None,
                               batch_size=speed.encode_batch, progress=progress)
    if cfg.vae_offload:
        c.vae.to("cpu")

    objective = build_objective(cfg, c, trained, device, lines, cache.pixels)
    train_only(objective, cfg.train_encoders, len(c.text_encoders))
    if hyper and cfg.vae_offload:
        captions = [r.caption for r in (*cache.records, *(val_cache.records if val_cache else ()))]
        concept_lines = [line for k in concepts.concepts for line in k.lines or ()]
        offload_text_encoders(cfg, c, objective, [*lines, *concept_lines], captions, callback)
    groups = [{"params": [p for p in e.params if p.requires_grad], "lr_weight": e.lr_weight, "lr": 0.0}
              for e in objective.embeddings]
    optimizer = build_optimizer(rc.optimizer, groups, device)
    scaler = torch.amp.GradScaler(device.type) if speed.precision == "fp16" else None
    if not resume:
        side_optim.restore(cfg.trained_file, objective, optimizer, callback)
    recipe = Recipe.build(rc, c, objective, medians, fresh=not resume)
    if rc.zero_terminal_snr and c.prediction == "epsilon":
        callback(Message("warning", "--zero-terminal-snr on an epsilon model: at t=T the noise is the whole input, "
                                    "so that step teaches nothing; it is meant for v-prediction models"))
    decays = ema_decays(cfg, objective)
    ema = EMA(objective.embeddings, decays, cfg.ema_replace_every) if decays else None
    state = train_state.TrainState(step=emb.step, trained=objective.embeddings, optimizer=optimizer, scaler=scaler,
                                   ema=ema, recipe=recipe)
    if resume:
        state.load_state_dict(saved, resume)
        run.truncate_after(state.step)
        callback(Message("info", f"resumed {resume} at step {state.step}"))
    setup = Setup(cfg=cfg, c=c, objective=objective, cache=cache,
                  prompts=PromptSampler(lines, cfg.seed, cfg.shuffle_tags, cfg.tag_dropout, CaptionExtras.of(cfg)),
                  schedule=schedule, recipe=recipe, run=run, device=device, width=width, height=height,
                  callback=callback, stop=stop, speed=speed, dist=dist, lock=lock, concepts=concepts,
                  preview_prompts=previews, medians=medians)
    setup.hooks.extend(hooks_for(setup, state.step, state.defer, val_cache, resumed=bool(resume)))
    return setup, state


def config_for_resume(run_dir: str | Path, overrides: dict,
                      label: Callable[[str], str] = str) -> tuple[TrainConfig, list[tuple[str, object, object]]]:
    """The run's saved config with `overrides` (the options given explicitly) on top, and the
    changes they make. Only the options config.RESUMABLE names may change; any other that differs
    is refused, all of them named at once (`label` turns a field into the face's option name)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TIStudioError(f"--resume {run_dir}: no {CONFIG_FILE} there; pass a run folder written by "
                            "`tistudio train` (LOG_DIR/NAME)")
    base = load_toml(path)
    stored = from_dict(TrainConfig, base, str(path))
    cfg = from_dict(TrainConfig, merge(base, overrides), "the command line")
    diff = changes(stored, cfg)
    refused = not_resumable(diff)
    if refused:
        listed = ", ".join(f"{label(name)} {show(new)} (the run has {show(old)})" for name, old, new in refused)
        raise TIStudioError(f"--resume {run_dir}: {listed}: cannot change on resume, since they shape what "
                            f"is trained; drop them to continue the run as {path} has it, or start a new run")
    return cfg, diff


def show(value) -> str:
    """An option's value as a user types it."""
    if value is None:
        return "(unset)"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)
