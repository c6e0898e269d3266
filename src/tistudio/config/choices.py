"""The names a choice option may take. Config sits below the modules that implement them (formats,
samplers, optimizers, model families), so it holds the names; tests/test_config_options.py keeps
each tuple equal to its registry where one exists."""
from __future__ import annotations

import re

PROFILES = ("low-memory", "balanced", "fast")   # what each chooses: train/speed.py
ATTENTION = ("sdpa", "xformers", "classic")
PRECISIONS = ("fp32", "bf16", "fp16")
LATENT_SAMPLING = ("once", "deterministic", "random")
CLIP_GRAD_MODES = ("none", "norm", "value")
SAMPLERS = ("euler_a", "dpmpp_2m", "ddim", "euler")                     # generate/sample.py SAMPLER_CLASSES
EMBEDDING_FORMATS = ("a1111-pt", "a1111-png", "safetensors", "diffusers")  # embedding/formats/registry.py
METHODS = ("ti", "dreamartist", "hypernetwork")                          # train/objectives/select.py
LATENT_CACHES = ("auto", "memory", "disk")
TRAIN_ENCODERS = ("both", "l", "g")   # SDXL's CLIP-L (text encoder 1) and CLIP-G (2)
FAMILIES = ("sd1", "sd2", "sdxl")                                        # models/family.py FAMILIES
PREDICTIONS = ("epsilon", "v_prediction")                                # models/family.py PREDICTIONS
REC_TIMESTEP_WEIGHTS = ("none", "alpha")
LOSSES = ("mse", "huber", "l1")                                          # models/denoiser.py per_sample_loss
LOSS_WEIGHTINGS = ("none", "min-snr", "debiased", "p2")
TIMESTEP_SAMPLINGS = ("uniform", "logit-normal")
OPTIMIZERS = ("adamw", "adafactor", "prodigy", "lion", "schedule-free", "adamw8bit")    # train/optimizers.py
LR_SCHEDULERS = ("step-grammar", "constant", "cosine", "cosine-restarts", "linear")
NORMS = ("none", "preserve", "fixed-direction")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")  # whether one is present: train/session.pick_device
CAPTION_SOURCES = ("auto", "sidecar", "filename", "fixed")  # a [[concept]]'s captions (data/concepts.py)
