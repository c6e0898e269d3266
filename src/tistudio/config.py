"""Run configuration as data: frozen dataclasses, validated on construction, saved with every run
and loadable from TOML. Only the standard library (and tomli_w for writing) is used here."""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .cfg_schedule import parse_cfg
from .errors import TIStudioError
from .schedules import build_schedule

PROFILES = ("low-memory", "balanced", "fast")   # what each chooses: train/speed.py
ATTENTION = ("sdpa", "xformers", "classic")
PRECISIONS = ("fp32", "bf16", "fp16")
LATENT_SAMPLING = ("once", "deterministic", "random")
CLIP_GRAD_MODES = ("none", "norm", "value")
SAMPLERS = ("euler_a", "dpmpp_2m", "ddim", "euler")
EMBEDDING_FORMATS = ("a1111-pt", "a1111-png", "safetensors", "diffusers")
METHODS = ("ti", "dreamartist", "hypernetwork")
LATENT_CACHES = ("auto", "memory", "disk")
TRAIN_ENCODERS = ("both", "l", "g")   # SDXL's CLIP-L (text encoder 1) and CLIP-G (2)
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")  # whether one is present: train/session.pick_device


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TIStudioError(message)


@dataclass(frozen=True)
class ModelConfig:
    model: str = ""                   # diffusers folder or single .safetensors/.ckpt file
    family: str | None = None         # sd1 | sd2 | sdxl; detected when None
    prediction: str | None = None     # epsilon | v_prediction; detected when None
    clip_skip: int = 1                # the guide suggests 2 for anime models
    config: str | None = None         # architecture configs for a single file (default: shipped)

    def __post_init__(self):
        _check(self.clip_skip in (1, 2, 3, 4), f"--clip-skip {self.clip_skip}: use 1 to 4")


REC_TIMESTEP_WEIGHTS = ("none", "alpha")


@dataclass(frozen=True)
class DreamArtistConfig:
    """DreamArtist (APT) options (docs/dreamartist.md); used when method = "dreamartist"."""

    negative: str = ""                # negative embedding file; default NAME-neg beside --embedding
    cfg: str = "3"                    # guidance scale: "3" or "lo-hi[:ln|cos|cos2]" (parsed, never eval'd)
    neg_lr_weight: float = 1.0        # negative learning rate = lr * this, at every schedule entry
    neg_plain_template: bool = False  # negative prompt from the template's plain ([filewords]-free) twin
    reconstruction: bool = False      # add L1 between the VAE-decoded x̂0 and the image
    rec_weight: float = 1.0
    rec_max_timestep: int = 999       # no reconstruction term for noisier samples (x̂0 is mostly noise)
    rec_timestep_weight: str = "none"  # "alpha": scale the term by ᾱ_t, the signal share of x_t
    ema_neg: float | None = None      # EMA decay of the negative; None = the same as --ema

    def __post_init__(self):
        parse_cfg(self.cfg)  # a grammar, never eval
        _check(self.neg_lr_weight >= 0, f"--neg-lr-weight {self.neg_lr_weight}: use 0 or more")
        _check(self.rec_weight >= 0, f"--rec-weight {self.rec_weight}: use 0 or more")
        _check(0 <= self.rec_max_timestep <= 999, f"--rec-max-timestep {self.rec_max_timestep}: use 0 to 999")
        _check(self.rec_timestep_weight in REC_TIMESTEP_WEIGHTS,
               f"--rec-timestep-weight {self.rec_timestep_weight}: use {'|'.join(REC_TIMESTEP_WEIGHTS)}")
        _check(self.ema_neg is None or 0 <= self.ema_neg < 1, f"--ema-neg {self.ema_neg}: use 0 (off) to <1, e.g. 0.97")


LOSSES = ("mse", "huber", "l1")
LOSS_WEIGHTINGS = ("none", "min-snr", "debiased", "p2")
TIMESTEP_SAMPLINGS = ("uniform", "logit-normal")
OPTIMIZERS = ("adamw", "adafactor", "prodigy", "lion", "adamw8bit")
LR_SCHEDULERS = ("step-grammar", "constant", "cosine", "cosine-restarts", "linear")
NORMS = ("none", "preserve", "fixed-direction")


def timestep_bounds(text: str) -> tuple[int, int]:
    """"lo:hi" -> (lo, hi), the half-open range of training timesteps (0:1000 = all of them)."""
    lo, sep, hi = str(text).partition(":")
    try:
        bounds = (int(lo), int(hi))
    except ValueError:
        bounds = None
    _check(bool(sep) and bounds is not None and 0 <= bounds[0] < bounds[1] <= 1000,
           f"--timestep-range {text!r}: write lo:hi with 0 <= lo < hi <= 1000, e.g. 200:800")
    return bounds


def color_jitter(text: str) -> tuple[float, float, float, float]:
    """--color-jitter "B,C,S,H": the largest change of each (factors within 1 ± B, C, S; a hue shift
    within ± H of a turn); fewer numbers leave the rest at 0, "" is none (data/augment.py)."""
    try:
        values = [float(v) for v in str(text).split(",")] if text else []
    except ValueError:
        values = [-1.0]
    _check(len(values) <= 4 and all(0 <= v < 1 for v in values[:3]) and all(0 <= v <= 0.5 for v in values[3:]),
           f"--color-jitter {text!r}: give up to four numbers brightness,contrast,saturation,hue, e.g. "
           "0.1,0.1,0.1,0.02 (the first three below 1, hue at most 0.5)")
    return tuple(values + [0.0] * (4 - len(values)))


@dataclass(frozen=True)
class RecipeConfig:
    """The training recipe beyond A1111's (docs/recipe.md): loss, its timestep weighting, noise and
    timestep draws, optimizer, schedule shape and norm control. Every default is A1111's behaviour,
    so a run without a [recipe] section trains exactly as before."""

    loss: str = "mse"                 # mse | huber | l1, per latent pixel
    huber_delta: float = 0.1          # Huber: quadratic below this error, linear above (kohya's huber_c)
    loss_weighting: str = "none"      # none | min-snr | debiased | p2: weight per sample from SNR(t)
    snr_gamma: float = 5.0            # min-snr: weights capped at min(SNR, γ)/SNR (invoke-training's TI default)
    noise_offset: float = 0.0         # add offset·N(0,1) per sample and channel to the noise (darker/brighter images)
    zero_terminal_snr: bool = False   # rescale betas so SNR(T) = 0 (Lin et al. 2023); meant for v-prediction
    timestep_range: str = "0:1000"    # half-open range of training timesteps
    timestep_sampling: str = "uniform"  # uniform | logit-normal (SD3's: sigmoid of N(0,1)) over the range
    optimizer: str = "adamw"          # adamw | adafactor | prodigy | lion | adamw8bit
    lr_scheduler: str = "step-grammar"  # step-grammar (--lr's grammar) | constant | cosine | cosine-restarts | linear
    lr_cycles: int = 3                # cosine-restarts: number of cosine cycles
    warmup_steps: int = 0             # linear warm-up from 0 over this many steps, on any scheduler
    norm: str = "none"                # none | preserve (rescale to the vocabulary median) | fixed-direction (DTI)
    init_reg: float = 0.0             # λ of the L2 pull toward the vectors the run started from

    def __post_init__(self):
        for opt, value, allowed in (("--loss", self.loss, LOSSES), ("--loss-weighting", self.loss_weighting,
                                    LOSS_WEIGHTINGS), ("--timestep-sampling", self.timestep_sampling,
                                    TIMESTEP_SAMPLINGS), ("--optimizer", self.optimizer, OPTIMIZERS),
                                    ("--lr-scheduler", self.lr_scheduler, LR_SCHEDULERS), ("--norm", self.norm, NORMS)):
            _check(value in allowed, f"{opt} {value}: use {'|'.join(allowed)}")
        _check(self.huber_delta > 0, f"--huber-delta {self.huber_delta}: use a positive number, e.g. 0.1")
        _check(self.snr_gamma > 0, f"--snr-gamma {self.snr_gamma}: use a positive number, e.g. 5")
        _check(self.noise_offset >= 0, f"--noise-offset {self.noise_offset}: use 0 (off) or more, e.g. 0.05")
        timestep_bounds(self.timestep_range)
        _check(self.lr_cycles >= 1, f"--lr-cycles {self.lr_cycles}: must be at least 1")
        _check(self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps}: use 0 (off) or more")
        _check(self.init_reg >= 0, f"--init-reg {self.init_reg}: use 0 (off) or more, e.g. 0.01")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run. Derived numbers (epochs, steps per epoch) live in the plan."""

    model: ModelConfig = ModelConfig()
    embedding: str = ""               # the embedding file to train (made by `tistudio create`)
    data: str = ""                    # folder of images (+ sidecar .txt captions)
    method: str = "ti"                # ti | dreamartist (options in `dreamartist`) | hypernetwork
    hypernetwork: str = ""            # method = "hypernetwork": the A1111 hypernetwork .pt to train
    log_dir: str = "runs"             # run folder is LOG_DIR/NAME
    output: str | None = None         # final embedding path; default: overwrite the input embedding
    formats: tuple[str, ...] = ("a1111-pt", "safetensors")
    template: str = "style_filewords"
    filename_regex: str | None = None
    filename_join: str = " "
    shuffle_tags: bool = False
    tag_dropout: float = 0.0
    lr: str = "0.005"                 # schedule grammar, e.g. "0.05:200, 0.005:1000, 0.001"
    batch_size: int = 1
    grad_accum: int = 1
    steps: int = 3000                 # max optimizer steps
    width: int | None = None          # default: the model's own size (Components.resolution)
    height: int | None = None
    flip: bool = False
    seed: int = 0
    latent_sampling: str = "once"
    vae_offload: bool = False         # the guide's "Move VAE to RAM": off the accelerator after caching
    save_every: int = 500
    preview_every: int = 500
    preview_prompt: str = ""          # empty: a prompt from the dataset
    preview_negative: str = ""
    preview_seed: int = 1234
    preview_steps: int = 20
    preview_cfg: float = 7.0
    preview_sampler: str = "euler_a"
    png_embeddings: bool = False
    precision: str | None = None      # dtype of the frozen weights (vectors are always fp32); None: --profile
    clip_grad_mode: str = "none"
    clip_grad: float = 1.0
    gradient_checkpointing: bool | None = None  # UNet and text encoders; None: from --profile
    device: str = "auto"
    # Speed and memory (train/speed.py, docs/speed.md); None: the profile decides per device and model.
    profile: str = "balanced"         # low-memory | balanced | fast
    channels_last: bool | None = None
    compile: bool | None = None       # torch.compile the UNet
    attention: str = "sdpa"           # sdpa | xformers | classic
    threads: int = 0                  # CPU threads; 0 = from the profile
    heap_reuse: bool | None = None    # CPU: keep freed memory between steps (train/speed.py)
    num_processes: int = 1            # data-parallel processes (train/distributed.py)
    # Knowing when to stop (docs/when-to-stop.md); checked by _check_monitoring.
    val_every: int = 0                # deterministic validation loss every N steps, 0 = off
    val_split: float = 0.0            # share of the images held out for validation (never trained on)
    val_data: str | None = None       # or a folder of held-out validation images
    val_images: int = 8               # at most this many validation images
    val_timesteps: int = 5            # timesteps per image, a grid across the schedule
    early_stop: int = 0               # stop after this many evaluations without improvement, 0 = off
    max_norm: float | None = None     # cap each vector's norm at this multiple of the vocabulary median
    plot: bool = True                 # RUN/loss.png, refreshed at each evaluation and at the end
    tensorboard: bool = False         # RUN/tensorboard event files
    eval_clip: str | None = None      # local CLIP model folder: image-image and text-image scores
    eval_toy: str | None = None       # toy-world concept ("teal star"): classifier fidelity
    eval_samples: int = 4             # images generated per evaluation for --eval-clip/--eval-toy
    dreamartist: DreamArtistConfig = DreamArtistConfig()
    recipe: RecipeConfig = RecipeConfig()   # loss, timesteps, optimizer, schedule shape, norm control
    ema: float = 0.0                  # EMA decay of the vectors (0 = off; the guide suggests 0.97)
    ema_replace_every: int = 0        # copy the EMA into the live vectors every N steps (reference)
    grayscale_copies: bool = False    # add a greyscale copy of every image (captioned "monochrome")
    keep_last: int = 0                # keep only the N latest snapshot steps in RUN/embeddings, 0 = all
    latent_cache: str = "auto"        # memory | disk (memory-mapped RUN/latents) | auto: disk from 1000 images
    # Aspect-ratio buckets (data/buckets.py, docs/buckets.md).
    buckets: bool | None = None       # None: on when the images' aspect ratios differ
    bucket_step: int = 64             # bucket sides are multiples of this
    bucket_min: int = 0               # shortest bucket side; 0 = half the shorter training side
    bucket_max: int = 0               # longest bucket side; 0 = twice the longer training side
    vae: str | None = None            # a VAE folder or file used instead of the model's (models/vae.py)
    train_encoders: str = "both"      # SDXL: l | g | both: whose vectors train (the other's keep their start)
    # Augmentation as cached variants of each image (data/augment.py, docs/buckets.md).
    random_crop: bool = False         # crop positions jitter within the bucket's remainder
    color_jitter: str = ""            # "brightness,contrast,saturation,hue" maxima, e.g. "0.1,0.1,0.1,0.02"
    augment_variants: int = 4         # cached variants per image with --random-crop/--color-jitter

    @property
    def trained_file(self) -> str:
        """The file the run starts from and trains: its identity (runs/identity.py) and .optim."""
        return self.hypernetwork if self.method == "hypernetwork" else self.embedding

    def __post_init__(self):
        _check(self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1")
        _check(self.grad_accum >= 1, f"--grad-accum {self.grad_accum}: must be at least 1")
        _check(self.steps >= 1, f"--steps {self.steps}: must be at least 1")
        for opt, v in (("--width", self.width), ("--height", self.height)):
            _check(v is None or (v > 0 and v % 8 == 0), f"{opt} {v}: must be a positive multiple of 8")
        _check(0.0 <= self.tag_dropout < 1.0, f"--tag-dropout {self.tag_dropout}: use 0 <= p < 1")
        _check(self.precision in (None, *PRECISIONS), f"--precision {self.precision}: use {'|'.join(PRECISIONS)}")
        _check_speed(self)
        _check(self.latent_sampling in LATENT_SAMPLING,
               f"--latent-sampling {self.latent_sampling}: use {'|'.join(LATENT_SAMPLING)}")
        _check(self.clip_grad_mode in CLIP_GRAD_MODES,
               f"--clip-grad-mode {self.clip_grad_mode}: use {'|'.join(CLIP_GRAD_MODES)}")
        _check(self.preview_sampler in SAMPLERS, f"--preview-sampler {self.preview_sampler}: use {'|'.join(SAMPLERS)}")
        bad = [f for f in self.formats if f not in EMBEDDING_FORMATS]
        _check(not bad and bool(self.formats), f"--format {', '.join(bad) or '(none)'}: use "
               f"{'|'.join(EMBEDDING_FORMATS)}")
        _check(self.save_every >= 0 and self.preview_every >= 0, "--save-every/--preview-every: use 0 (off) or more")
        _check_monitoring(self)
        _check(self.method in METHODS, f"--method {self.method}: use {'|'.join(METHODS)}")
        if self.recipe.lr_scheduler != "step-grammar":
            build_schedule(self.lr, self.steps, self.recipe.lr_scheduler)
        _check(0 <= self.ema < 1, f"--ema {self.ema}: use 0 (off) to <1, e.g. 0.97")
        _check(self.ema_replace_every >= 0, f"--ema-replace-every {self.ema_replace_every}: use 0 (off) or more")
        _check(self.keep_last >= 0, f"--keep-last {self.keep_last}: use 0 (keep all) or more")
        _check(self.latent_cache in LATENT_CACHES, f"--latent-cache {self.latent_cache}: use {'|'.join(LATENT_CACHES)}")
        _check(self.bucket_step > 0 and self.bucket_step % 8 == 0,
               f"--bucket-step {self.bucket_step}: use a positive multiple of 8, e.g. 64")
        _check(self.bucket_min >= 0 and self.bucket_max >= 0 and (
            not (self.bucket_min and self.bucket_max) or self.bucket_min <= self.bucket_max),
            f"--bucket-min {self.bucket_min} / --bucket-max {self.bucket_max}: use 0 (automatic) or sides with min <= max")
        color_jitter(self.color_jitter)
        _check(self.augment_variants >= 1, f"--augment-variants {self.augment_variants}: must be at least 1")
        _check(self.train_encoders in TRAIN_ENCODERS, f"--train-encoders {self.train_encoders}: use {'|'.join(TRAIN_ENCODERS)}")
        _check(self.method != "hypernetwork" or self.train_encoders == "both",
               "--train-encoders chooses which embedding vectors train; a --hypernetwork run has none: drop it")
        _check_hypernetwork(self)
        _check(not (self.method == "dreamartist" and self.dreamartist.reconstruction and self.vae_offload),
               "--reconstruction decodes with the VAE every step; drop --vae-offload")
        if self.filename_regex:
            try:
                re.compile(self.filename_regex)
            except re.error as exc:
                raise TIStudioError(f"--filename-regex {self.filename_regex!r} is not a valid regex ({exc})") from None


def _check_hypernetwork(cfg: "TrainConfig") -> None:
    """A hypernetwork run trains a hypernetwork file, never an embedding (docs/hypernetworks.md)."""
    if cfg.method != "hypernetwork":
        _check(not cfg.hypernetwork, f"hypernetwork {cfg.hypernetwork!r} is trained with method "
               "\"hypernetwork\" (`tistudio train --hypernetwork FILE`); set method = \"hypernetwork\"")
        return
    _check(bool(cfg.hypernetwork), "method \"hypernetwork\" needs the file to train: --hypernetwork FILE "
           "(from `tistudio create-hypernetwork NAME --model M`)")
    given = [opt for opt, on in (("--embedding", cfg.embedding), ("--png-embeddings", cfg.png_embeddings),
                                 ("--max-norm", cfg.max_norm), ("--eval-clip", cfg.eval_clip),
                                 ("--eval-toy", cfg.eval_toy)) if on]
    _check(not given, f"{given[0] if given else ''} works on embeddings; a --hypernetwork run has none: drop it")
    _check(not cfg.output or cfg.output.lower().endswith(".pt"), f"--output {cfg.output}: a hypernetwork "
           "is saved in A1111's format only; end the path in .pt")


def _check_speed(cfg: "TrainConfig") -> None:
    _check(cfg.profile in PROFILES, f"--profile {cfg.profile}: use {'|'.join(PROFILES)}")
    _check(cfg.attention in ATTENTION, f"--attention {cfg.attention}: use {'|'.join(ATTENTION)}")
    _check(cfg.threads >= 0, f"--threads {cfg.threads}: use 0 (automatic) or more")
    _check(cfg.num_processes >= 1, f"--num-processes {cfg.num_processes}: must be at least 1")
    _check(isinstance(cfg.device, str) and bool(DEVICE_RE.match(cfg.device)),
           f"--device {cfg.device}: use auto, cpu, cuda, cuda:N or mps")


def _check_monitoring(cfg: "TrainConfig") -> None:
    _check(cfg.val_every >= 0, f"--val-every {cfg.val_every}: use 0 (off) or more")
    _check(0.0 <= cfg.val_split < 1.0, f"--val-split {cfg.val_split}: use a share 0 <= f < 1, e.g. 0.2")
    _check(not (cfg.val_split and cfg.val_data), "--val-split and --val-data: give one or the other")
    _check(cfg.val_images >= 1 and 1 <= cfg.val_timesteps <= 100,
           "--val-images must be at least 1 and --val-timesteps from 1 to 100")
    _check(cfg.early_stop >= 0, f"--early-stop {cfg.early_stop}: use 0 (off) or a number of evaluations")
    _check(cfg.max_norm is None or cfg.max_norm > 0, f"--max-norm {cfg.max_norm}: use a positive multiple, e.g. 3")
    _check(cfg.eval_samples >= 1, f"--eval-samples {cfg.eval_samples}: must be at least 1")
    needs_val = [opt for opt, on in (("--early-stop", cfg.early_stop), ("--val-split", cfg.val_split),
                                     ("--val-data", cfg.val_data), ("--eval-clip", cfg.eval_clip),
                                     ("--eval-toy", cfg.eval_toy)) if on]
    _check(cfg.val_every > 0 or not needs_val, f"{needs_val[0] if needs_val else ''} works at each "
           "evaluation: add --val-every N (e.g. 50)")


# The options a resumed run may change (--resume): how long it runs, what it writes and how often,
# and where it computes. Every other option shapes the trained vectors, so a resume keeps the run's
# own value from its config.toml and refuses a different one. Names are TrainConfig fields; a nested
# field is "section.field" (e.g. "model.clip_skip").
RESUMABLE = frozenset({
    "steps", "early_stop", "output", "formats", "save_every", "keep_last", "preview_every",
    "preview_prompt", "preview_negative", "preview_seed", "preview_steps", "preview_cfg", "preview_sampler",
    "png_embeddings", "plot", "tensorboard", "device", "threads", "heap_reuse",
})


def changes(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) for each field of two configs that differs; nested sections'
    fields as "section.field"."""
    out = []
    for f in fields(before):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if dataclasses.is_dataclass(old):
            out += changes(old, new, f"{prefix}{f.name}.")
        elif old != new:
            out.append((prefix + f.name, old, new))
    return out


def not_resumable(diff: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The changes a resume refuses (see RESUMABLE)."""
    return [d for d in diff if d[0] not in RESUMABLE]


def merge(base: dict, given: dict) -> dict:
    """Options `given` (e.g. on the command line) over `base` (a TOML file or a run's config),
    nested sections merged field by field."""
    sections = [f.name for f in fields(TrainConfig) if dataclasses.is_dataclass(f.default)]
    nested = {k: {**base.get(k, {}), **given.get(k, {})} for k in sections}
    return {**base, **given, **nested}


def to_dict(cfg: Any) -> dict:
    """Plain TOML-able dict (None values dropped, tuples as lists)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        if v is not None:
            out[f.name] = v
    return out


# Annotation word -> (accepted Python types, what to tell a person). bool is an int in Python, so
# it is refused explicitly where a number is expected (`steps = true` is a mistake, not 1).
_KINDS = {"int": ((int,), "a whole number"), "float": ((int, float), "a number"),
          "str": ((str,), "a quoted string"), "bool": ((bool,), "true or false")}


def _typed(f: dataclasses.Field, value: Any, source: str) -> Any:
    """`value` checked against the field's annotation (a string: annotations are postponed), so a
    TOML `steps = "many"` is named with its fix instead of failing inside validation."""
    words = [w.strip() for w in str(f.type).split("|")]
    if any(w.startswith("tuple") for w in words):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise TIStudioError(f"{source}: {f.name} = {_toml_value(value)}: give a list of strings, e.g. "
                            f"{f.name} = {_toml_value(list(f.default) if f.default else ['...'])}")
    kinds = [_KINDS[w] for w in words if w in _KINDS]
    if not kinds or (value is None and "None" in words):
        return value  # nested sections and None are the dataclass's business
    if "str" in words and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # lr = 0.01 or cfg = 3 in TOML: the grammar reads the same text
    for types, _ in kinds:
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return float(value) if float in types and not isinstance(value, float) else value
    example = f.default if f.default is not None and not dataclasses.is_dataclass(f.default) else None
    hint = f"; e.g. {f.name} = {_toml_value(example)}" if example is not None else ""
    raise TIStudioError(f"{source}: {f.name} = {_toml_value(value)} is not {' or '.join(k[1] for k in kinds)}{hint}")


def _toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool, list, tuple)) else repr(value)


def from_dict(cls, data: dict, source: str = "config"):
    """Build `cls` from a dict, naming any unknown key so typos are not silently ignored, and any
    value of the wrong type with an example of the right one."""
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key not in known:
            raise TIStudioError(f"{source}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        sub = known[key].default
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise TIStudioError(f"{source}: {key} must be a table ([{key}] with its own options)")
            value = from_dict(type(sub), value, source)
        else:
            value = _typed(known[key], value, source)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TIStudioError(f"{source}: {exc}") from None


def load_toml(path: str | Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TIStudioError(f"--config {path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TIStudioError(f"--config {path}: not valid TOML ({exc})") from None


def dump_toml(cfg: Any) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))
