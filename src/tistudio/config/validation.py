"""The rules a config must satisfy, run by each dataclass on construction. Messages name options by
their CLI flag (`--steps 0: must be at least 1`); the web UI shows its own labels instead
(config.options.in_labels), so every flag written here must be a field's flag (a test checks)."""
from __future__ import annotations

import re

from ..cfg_schedule import parse_cfg
from ..errors import TIStudioError
from ..schedules import build_schedule
from .choices import (ATTENTION, CAPTION_SOURCES, CLIP_GRAD_MODES, DEVICE_RE, EMBEDDING_FORMATS, LATENT_CACHES, LATENT_SAMPLING,
                      LOSS_WEIGHTINGS, LOSSES, LR_SCHEDULERS, METHODS, NORMS, OPTIMIZERS, PRECISIONS, PROFILES,
                      REC_TIMESTEP_WEIGHTS, SAMPLERS, TIMESTEP_SAMPLINGS, TRAIN_ENCODERS)
# The checks take the config objects unannotated: the classes call them from __post_init__, so
# this module cannot import the classes (not even for type checking: that would be a cycle).


def check(ok: bool, message: str) -> None:
    if not ok:
        raise TIStudioError(message)


def _one_of(flag: str, value, allowed: tuple[str, ...]) -> None:
    check(value in allowed, f"{flag} {value}: use {'|'.join(allowed)}")


def timestep_bounds(text: str) -> tuple[int, int]:
    """"lo:hi" -> (lo, hi), the half-open range of training timesteps (0:1000 = all of them)."""
    lo, sep, hi = str(text).partition(":")
    try:
        bounds = (int(lo), int(hi))
    except ValueError:
        bounds = None
    check(bool(sep) and bounds is not None and 0 <= bounds[0] < bounds[1] <= 1000,
          f"--timestep-range {text!r}: write lo:hi with 0 <= lo < hi <= 1000, e.g. 200:800")
    return bounds


def color_jitter(text: str) -> tuple[float, float, float, float]:
    """--color-jitter "B,C,S,H": the largest change of each (factors within 1 ± B, C, S; a hue shift
    within ± H of a turn); fewer numbers leave the rest at 0, "" is none (data/augment.py)."""
    try:
        values = [float(v) for v in str(text).split(",")] if text else []
    except ValueError:
        values = [-1.0]
    check(len(values) <= 4 and all(0 <= v < 1 for v in values[:3]) and all(0 <= v <= 0.5 for v in values[3:]),
          f"--color-jitter {text!r}: give up to four numbers brightness,contrast,saturation,hue, e.g. "
          "0.1,0.1,0.1,0.02 (the first three below 1, hue at most 0.5)")
    return tuple(values + [0.0] * (4 - len(values)))


def check_model(m) -> None:
    check(m.clip_skip in (1, 2, 3, 4), f"--clip-skip {m.clip_skip}: use 1 to 4")


def check_dreamartist(d) -> None:
    parse_cfg(d.cfg)  # a grammar, never eval
    check(d.neg_lr_weight >= 0, f"--neg-lr-weight {d.neg_lr_weight}: use 0 or more")
    check(d.rec_weight >= 0, f"--rec-weight {d.rec_weight}: use 0 or more")
    check(0 <= d.rec_max_timestep <= 999, f"--rec-max-timestep {d.rec_max_timestep}: use 0 to 999")
    _one_of("--rec-timestep-weight", d.rec_timestep_weight, REC_TIMESTEP_WEIGHTS)
    check(d.ema_neg is None or 0 <= d.ema_neg < 1, f"--ema-neg {d.ema_neg}: use 0 (off) to <1, e.g. 0.97")


def check_recipe(r) -> None:
    for flag, value, allowed in (("--loss", r.loss, LOSSES), ("--loss-weighting", r.loss_weighting, LOSS_WEIGHTINGS),
                                 ("--timestep-sampling", r.timestep_sampling, TIMESTEP_SAMPLINGS),
                                 ("--optimizer", r.optimizer, OPTIMIZERS),
                                 ("--lr-scheduler", r.lr_scheduler, LR_SCHEDULERS), ("--norm", r.norm, NORMS)):
        _one_of(flag, value, allowed)
    check(r.huber_delta > 0, f"--huber-delta {r.huber_delta}: use a positive number, e.g. 0.1")
    check(r.snr_gamma > 0, f"--snr-gamma {r.snr_gamma}: use a positive number, e.g. 5")
    check(r.noise_offset >= 0, f"--noise-offset {r.noise_offset}: use 0 (off) or more, e.g. 0.05")
    timestep_bounds(r.timestep_range)
    check(r.lr_cycles >= 1, f"--lr-cycles {r.lr_cycles}: must be at least 1")
    check(r.warmup_steps >= 0, f"--warmup-steps {r.warmup_steps}: use 0 (off) or more")
    check(r.init_reg >= 0, f"--init-reg {r.init_reg}: use 0 (off) or more, e.g. 0.01")


def check_train(cfg) -> None:
    check(cfg.batch_size >= 1, f"--batch-size {cfg.batch_size}: must be at least 1")
    check(cfg.grad_accum >= 1, f"--grad-accum {cfg.grad_accum}: must be at least 1")
    check(cfg.steps >= 1, f"--steps {cfg.steps}: must be at least 1")
    for flag, v in (("--width", cfg.width), ("--height", cfg.height)):
        check(v is None or (v > 0 and v % 8 == 0), f"{flag} {v}: must be a positive multiple of 8")
    check(0.0 <= cfg.tag_dropout < 1.0, f"--tag-dropout {cfg.tag_dropout}: use 0 <= p < 1")
    check(cfg.precision in (None, *PRECISIONS), f"--precision {cfg.precision}: use {'|'.join(PRECISIONS)}")
    _check_speed(cfg)
    _one_of("--latent-sampling", cfg.latent_sampling, LATENT_SAMPLING)
    _one_of("--clip-grad-mode", cfg.clip_grad_mode, CLIP_GRAD_MODES)
    _one_of("--preview-sampler", cfg.preview_sampler, SAMPLERS)
    bad = [f for f in cfg.formats if f not in EMBEDDING_FORMATS]
    check(not bad and bool(cfg.formats), f"--format {', '.join(bad) or '(none)'}: use {'|'.join(EMBEDDING_FORMATS)}")
    check(cfg.save_every >= 0 and cfg.preview_every >= 0, "--save-every/--preview-every: use 0 (off) or more")
    _check_monitoring(cfg)
    _one_of("--method", cfg.method, METHODS)
    if cfg.recipe.lr_scheduler != "step-grammar":
        build_schedule(cfg.lr, cfg.steps, cfg.recipe.lr_scheduler)
    check(0 <= cfg.ema < 1, f"--ema {cfg.ema}: use 0 (off) to <1, e.g. 0.97")
    check(cfg.ema_replace_every >= 0, f"--ema-replace-every {cfg.ema_replace_every}: use 0 (off) or more")
    check(cfg.keep_last >= 0, f"--keep-last {cfg.keep_last}: use 0 (keep all) or more")
    _one_of("--latent-cache", cfg.latent_cache, LATENT_CACHES)
    _check_buckets(cfg)
    _check_embeddings(cfg)
    _check_hypernetwork(cfg)
    _check_concepts(cfg)
    check(not (cfg.method == "dreamartist" and cfg.dreamartist.reconstruction and cfg.vae_offload),
          "--reconstruction decodes with the VAE every step; drop --vae-offload")
    if cfg.filename_regex:
        try:
            re.compile(cfg.filename_regex)
        except re.error as exc:
            raise TIStudioError(f"--filename-regex {cfg.filename_regex!r} is not a valid regex ({exc})") from None


def _check_buckets(cfg) -> None:
    """Aspect-ratio buckets, augmentation variants, the VAE and SDXL's encoders (docs/buckets.md)."""
    check(cfg.bucket_step > 0 and cfg.bucket_step % 8 == 0,
          f"--bucket-step {cfg.bucket_step}: use a positive multiple of 8, e.g. 64")
    check(cfg.bucket_min >= 0 and cfg.bucket_max >= 0 and (
        not (cfg.bucket_min and cfg.bucket_max) or cfg.bucket_min <= cfg.bucket_max),
        f"--bucket-min {cfg.bucket_min} / --bucket-max {cfg.bucket_max}: use 0 (automatic) or sides with min <= max")
    color_jitter(cfg.color_jitter)
    check(cfg.augment_variants >= 1, f"--augment-variants {cfg.augment_variants}: must be at least 1")
    _one_of("--train-encoders", cfg.train_encoders, TRAIN_ENCODERS)
    check(cfg.method != "hypernetwork" or cfg.train_encoders == "both",
          "--train-encoders chooses which embedding vectors train; a --hypernetwork run has none: drop it")


def _check_hypernetwork(cfg) -> None:
    """A hypernetwork run trains a hypernetwork file, never an embedding (docs/hypernetworks.md)."""
    if cfg.method != "hypernetwork":
        check(not cfg.hypernetwork, f"hypernetwork {cfg.hypernetwork!r} is trained with method "
              "\"hypernetwork\" (`tistudio train --hypernetwork FILE`); set method = \"hypernetwork\"")
        return
    check(bool(cfg.hypernetwork), "method \"hypernetwork\" needs the file to train: --hypernetwork FILE "
          "(from `tistudio create-hypernetwork NAME --model M`)")
    given = [flag for flag, on in (("--embedding", cfg.embedding), ("--png-embeddings", cfg.png_embeddings),
                                   ("--max-norm", cfg.max_norm), ("--eval-clip", cfg.eval_clip),
                                   ("--eval-toy", cfg.eval_toy)) if on]
    check(not given, f"{given[0] if given else ''} works on embeddings; a --hypernetwork run has none: drop it")
    check(not cfg.output or cfg.output.lower().endswith(".pt"), f"--output {cfg.output}: a hypernetwork "
          "is saved in A1111's format only; end the path in .pt")


def check_concept(c) -> None:
    where = f"[[concept]] {c.path or '(no path)'}"
    check(bool(c.path), "[[concept]]: path is required: the folder of the concept's images")
    check(c.repeats >= 1, f"{where}: repeats = {c.repeats}: must be at least 1")
    check(c.loss_weight >= 0, f"{where}: loss_weight = {c.loss_weight}: use 0 or more")
    check(c.caption_source in CAPTION_SOURCES,
          f"{where}: caption_source = {c.caption_source!r}: use {'|'.join(CAPTION_SOURCES)}")
    check((c.caption_source == "fixed") == bool(c.caption), f"{where}: caption_source = \"fixed\" goes with "
          "caption = \"...\" (and caption only with it); give both or neither")


def check_embedding(e) -> None:
    where = f"[[embeddings]] {e.path or '(no path)'}"
    check(bool(e.path), "[[embeddings]]: path is required: an embedding file made by `tistudio create NAME`")
    check(e.lr_scale >= 0, f"{where}: lr_scale = {e.lr_scale}: use 0 or more")
    check(e.stop_step >= 0, f"{where}: stop_step = {e.stop_step}: use 0 (train to --steps) or a step")


def first_repeat(items):
    """The first item seen a second time, or None (a file given twice, two outputs on one path)."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _check_embeddings(cfg) -> None:
    """Several embeddings (docs/multi-embedding.md): Textual Inversion only, each file once."""
    if not cfg.embeddings:
        return
    check(cfg.method == "ti", f"[[embeddings]] {cfg.embeddings[0].path}: several embeddings train with --method ti "
          f"only (this run has --method {cfg.method}); train them in separate runs")
    twice = first_repeat(e.path for e in cfg.embedding_tables)
    check(twice is None, f"[[embeddings]] {twice}: the file is given twice; name each embedding once")


def _check_concepts(cfg) -> None:
    check(not cfg.concept or bool(cfg.data) or any(not c.is_reg for c in cfg.concept),
          "[[concept]]: every concept is is_reg; add --data or a concept of training images")
    check(cfg.prior_loss_weight >= 0, f"--prior-loss-weight {cfg.prior_loss_weight}: use 0 or more, e.g. 1")
    check(cfg.keep_tokens >= 0, f"--keep-tokens {cfg.keep_tokens}: use 0 (off) or more")
    check(0.0 <= cfg.caption_dropout <= 1.0, f"--caption-dropout {cfg.caption_dropout}: use 0 <= p <= 1")
    # DreamArtist pairs each prompt with the same line of the run's template (its negative twin).
    check(cfg.method != "dreamartist" or not any(c.template for c in cfg.concept),
          "[[concept]] template: DreamArtist pairs its prompts with the run's --template; drop the concept's")


def _check_speed(cfg) -> None:
    _one_of("--profile", cfg.profile, PROFILES)
    _one_of("--attention", cfg.attention, ATTENTION)
    check(cfg.threads >= 0, f"--threads {cfg.threads}: use 0 (automatic) or more")
    check(cfg.num_processes >= 1, f"--num-processes {cfg.num_processes}: must be at least 1")
    check(isinstance(cfg.device, str) and bool(DEVICE_RE.match(cfg.device)),
          f"--device {cfg.device}: use auto, cpu, cuda, cuda:N or mps")


def _check_monitoring(cfg) -> None:
    check(cfg.val_every >= 0, f"--val-every {cfg.val_every}: use 0 (off) or more")
    check(0.0 <= cfg.val_split < 1.0, f"--val-split {cfg.val_split}: use a share 0 <= f < 1, e.g. 0.2")
    check(not (cfg.val_split and cfg.val_data), "--val-split and --val-data: give one or the other")
    check(cfg.val_images >= 1 and 1 <= cfg.val_timesteps <= 100,
          "--val-images must be at least 1 and --val-timesteps from 1 to 100")
    check(cfg.early_stop >= 0, f"--early-stop {cfg.early_stop}: use 0 (off) or a number of evaluations")
    check(cfg.max_norm is None or cfg.max_norm > 0, f"--max-norm {cfg.max_norm}: use a positive multiple, e.g. 3")
    check(cfg.eval_samples >= 1, f"--eval-samples {cfg.eval_samples}: must be at least 1")
    needs_val = [flag for flag, on in (("--early-stop", cfg.early_stop), ("--val-split", cfg.val_split),
                                       ("--val-data", cfg.val_data), ("--eval-clip", cfg.eval_clip),
                                       ("--eval-toy", cfg.eval_toy)) if on]
    check(cfg.val_every > 0 or not needs_val, f"{needs_val[0] if needs_val else ''} works at each "
          "evaluation: add --val-every N (e.g. 50)")
