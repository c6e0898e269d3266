"""TrainConfig: every option of a training run, each declared once with its help, group and choices
(config/fields.py). The flat fields stay flat in TOML; the nested sections are tables."""
from __future__ import annotations

from dataclasses import dataclass

from .choices import (ATTENTION, CLIP_GRAD_MODES, EMBEDDING_FORMATS, LATENT_CACHES, LATENT_SAMPLING, METHODS,
                      PRECISIONS, PROFILES, SAMPLERS, TRAIN_ENCODERS)
from .fields import option
from .sections import ConceptConfig, DreamArtistConfig, EmbeddingConfig, ModelConfig, RecipeConfig
from .validation import check_train

# A hypernetwork run's own defaults where neither flag, file nor form gave one (config.overrides):
# A1111's Train-hypernetwork learning rate (the embedding default 0.005 would wreck the UNet's
# attention) and the template without [name].
HYPERNETWORK_DEFAULTS = {"lr": "0.00001", "template": "hypernetwork"}


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run. Derived numbers (epochs, steps per epoch) live in the plan."""

    model: ModelConfig = ModelConfig()
    embedding: str = option("", "the embedding file to train (from `tistudio create`); the flag is repeatable: "
                            "more files are more embeddings trained at once (docs/multi-embedding.md)", group="run",
                            label="Embedding file")
    embeddings: tuple[EmbeddingConfig, ...] = option((), "more embeddings after --embedding, trained in the same "
                                                     "run, each with its own lr_scale and stop_step", group="run",
                                                     flag="[[embeddings]]", table=EmbeddingConfig)
    data: str = option("", "folder of training images with optional sidecar .txt captions; the flag is "
                       "repeatable: more folders are more concepts (docs/concepts.md)", group="run",
                       label="Dataset folder")
    method: str = option("ti", "what to train: an embedding (ti), a DreamArtist positive + negative pair "
                         "(docs/dreamartist.md) or --hypernetwork", group="run", choices=METHODS)
    hypernetwork: str = option("", "train this A1111 hypernetwork .pt instead of an embedding (from `tistudio "
                               f"create-hypernetwork`); its run defaults to --lr {HYPERNETWORK_DEFAULTS['lr']} "
                               f"and --template {HYPERNETWORK_DEFAULTS['template']}", group="run",
                               label="Hypernetwork file (method hypernetwork)")
    log_dir: str = option("runs", "run folders go to LOG_DIR/NAME", group="output", label="Log folder")
    output: str | None = option(None, "final embedding path (default: overwrite --embedding)", group="output",
                                label="Final embedding path (empty: overwrite the embedding)")
    formats: tuple[str, ...] = option(("a1111-pt", "safetensors"), "output formats of the final embedding "
                                      "(the flag is repeatable)", group="output", choices=EMBEDDING_FORMATS,
                                      flag="--format")
    template: str = option("style_filewords", "prompt template: style, subject, style_filewords, "
                           "subject_filewords, none, or a file of your own", group="data", label="Prompt template")
    filename_regex: str | None = option(None, r"regex whose matches form the caption, e.g. '\w+'", group="data")
    filename_join: str = option(" ", "string joining the regex matches", group="data")
    shuffle_tags: bool = option(False, "shuffle the comma-separated caption tags each step", group="data")
    tag_dropout: float = option(0.0, "probability of dropping each caption tag each step", group="data")
    lr: str = option("0.005", "learning rate or schedule, e.g. '0.05:200, 0.005:1000, 0.001'", group="schedule",
                     label="Learning rate")
    batch_size: int = option(1, "images per micro-batch", group="schedule")
    grad_accum: int = option(1, "micro-batches per optimizer step", group="schedule",
                             label="Gradient accumulation steps")
    steps: int = option(3000, "the step to train up to, counted from the step the embedding already stores "
                        "(as in A1111): an embedding at step 1000 with --steps 3000 trains 2000 more",
                        group="schedule", label="Max steps")
    width: int | None = option(None, "training width, a multiple of 8 (default: the model's own size, from its "
                               "config)", group="data")
    height: int | None = option(None, "training height, a multiple of 8 (default: the model's own size)",
                                group="data")
    flip: bool = option(False, "randomly mirror images (exact: mirrored latents are encoded too)", group="data")
    seed: int = option(0, "seed for data order, flips, noise, timesteps and prompts", group="schedule")
    latent_sampling: str = option("once", "once: one VAE sample cached; deterministic: the posterior mean; "
                                  "random: a new sample each use", group="data", choices=LATENT_SAMPLING)
    vae_offload: bool = option(False, "the guide's \"Move VAE to RAM\": move the VAE off the accelerator after "
                               "caching latents (with --hypernetwork also the text encoders, after caching the "
                               "prompts)", group="speed", label="VAE offload")
    save_every: int = option(500, "snapshot the embedding every N steps, 0 = off", group="output",
                             label="Save embedding every N steps")
    preview_every: int = option(500, "preview image every N steps, 0 = off", group="preview",
                                label="Preview image every N steps")
    preview_prompt: str = option("", "preview prompt (empty: a prompt from the dataset)", group="preview")
    preview_negative: str = option("", "preview negative prompt", group="preview")
    preview_seed: int = option(1234, "preview seed", group="preview")
    preview_steps: int = option(20, "preview sampling steps", group="preview")
    preview_cfg: float = option(7.0, "preview CFG scale", group="preview", label="Preview CFG")
    preview_sampler: str = option("euler_a", "preview sampler", group="preview", choices=SAMPLERS)
    png_embeddings: bool = option(False, "also save previews with the embedding inside (A1111 PNG embeddings)",
                                  group="preview", label="Save PNG embeddings with the previews")
    precision: str | None = option(None, "dtype of the frozen weights; the vectors stay fp32 (default: from "
                                   "--profile)", group="speed", choices=PRECISIONS,
                                   label="Precision of the frozen model")
    clip_grad_mode: str = option("none", "gradient clipping, per embedding", group="schedule",
                                 choices=CLIP_GRAD_MODES)
    clip_grad: float = option(1.0, "clipping threshold", group="schedule")
    gradient_checkpointing: bool | None = option(None, "recompute UNet and text-encoder activations: less memory, "
                                                 "~1.3x compute (default: from --profile)", group="speed")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps", group="speed")
    # Speed and memory (train/speed.py, docs/speed.md); None: the profile decides per device and model.
    profile: str = option("balanced", "speed and memory defaults per device (docs/speed.md)", group="speed",
                          choices=PROFILES)
    channels_last: bool | None = option(None, "NHWC layout for the UNet (default: from --profile)", group="speed")
    compile: bool | None = option(None, "torch.compile the UNet (default: on with --profile fast)", group="speed")
    attention: str = option("sdpa", "attention implementation", group="speed", choices=ATTENTION)
    threads: int = option(0, "CPU threads, 0 = from the profile", group="speed")
    heap_reuse: bool | None = option(None, "CPU: keep freed memory for the next step instead of giving it back to "
                                     "the system after every step, which is slower (default: on for a CPU; "
                                     "train/speed.py)",
                                     group="speed", flag="--no-heap-reuse")
    num_processes: int = option(1, "data-parallel processes on this machine (train/distributed.py)", group="speed")
    # Knowing when to stop (docs/when-to-stop.md).
    val_every: int = option(0, "deterministic validation loss every N steps, 0 = off", group="validation")
    val_split: float = option(0.0, "hold out this share of the images for validation (never trained on), e.g. 0.2",
                              group="validation")
    val_data: str | None = option(None, "folder of held-out validation images (instead of --val-split)",
                                  group="validation", label="Validation images folder")
    val_images: int = option(8, "at most this many validation images", group="validation")
    val_timesteps: int = option(5, "timesteps per validation image, a grid across the schedule", group="validation")
    early_stop: int = option(0, "stop after this many evaluations without a better validation loss, 0 = off",
                             group="validation")
    max_norm: float | None = option(None, "cap each vector's norm at this multiple of the vocabulary's median",
                                    group="schedule")
    plot: bool = option(True, "write RUN/loss.png, refreshed at each evaluation and at the end", group="monitoring",
                        flag="--no-plot", label="Loss plot")
    tensorboard: bool = option(False, "write TensorBoard scalars and previews to RUN/tensorboard",
                               group="monitoring", label="TensorBoard")
    eval_clip: str | None = option(None, "local CLIP model folder: image-image and text-image scores",
                                   group="validation", label="Eval CLIP model folder")
    eval_toy: str | None = option(None, "toy-world concept, e.g. 'teal star': classifier fidelity",
                                  group="validation")
    eval_samples: int = option(4, "images generated per evaluation for --eval-clip and --eval-toy",
                               group="validation")
    dreamartist: DreamArtistConfig = DreamArtistConfig()
    recipe: RecipeConfig = RecipeConfig()   # loss, timesteps, optimizer, schedule shape, norm control
    ema: float = option(0.0, "keep an EMA of the vectors with this decay for previews and outputs, 0 = off "
                        "(the guide suggests 0.97)", group="schedule", label="EMA decay")
    ema_replace_every: int = option(0, "copy the EMA into the trained vectors every N steps, 0 = never",
                                    group="schedule", label="EMA replace every")
    grayscale_copies: bool = option(False, "add a greyscale copy of every image (captioned monochrome)",
                                    group="data")
    keep_last: int = option(0, "keep only the N latest snapshot steps in RUN/embeddings, 0 = all", group="output")
    latent_cache: str = option("auto", "where latents are kept: memory, disk (memory-mapped and reused, in "
                               "RUN/latents) or auto (disk from 64 MiB of latents, mirrors and variants included: "
                               "~1000 images at 512 px)", group="data", choices=LATENT_CACHES)
    # Aspect-ratio buckets (data/buckets.py), the VAE and SDXL's encoders (docs/buckets.md); flat fields
    # in group "data", as "model" is the [model] table's own group.
    buckets: bool | None = option(None, "train each image at the aspect-ratio bucket nearest its shape instead of "
                                  "cropping it to --width x --height (default: on when the images' aspect ratios "
                                  "differ)", group="data", label="Aspect-ratio buckets")
    bucket_step: int = option(64, "bucket sides are multiples of this", group="data")
    bucket_min: int = option(0, "shortest bucket side, 0 = half the shorter training side", group="data")
    bucket_max: int = option(0, "longest bucket side, 0 = twice the longer training side", group="data")
    vae: str | None = option(None, "VAE to use instead of the model's, for caching and previews: a diffusers "
                             "AutoencoderKL folder or a .safetensors/.ckpt file", group="data", label="VAE")
    train_encoders: str = option("both", "SDXL: train only CLIP-L's (l) or CLIP-G's (g) vectors; the other's stay "
                                 "at their start and the file still holds both", group="data",
                                 choices=TRAIN_ENCODERS, label="Train encoders (SDXL)")
    # Augmentation as cached variants of each image (data/augment.py, docs/buckets.md).
    random_crop: bool = option(False, "jitter the crop within the bucket's remainder (cached variants)",
                               group="data")
    color_jitter: str = option("", "B,C,S,H: brightness, contrast, saturation (±factor) and hue (± turn) jitter, "
                               "e.g. 0.1,0.1,0.1,0.02 (cached variants; empty: none)", group="data")
    augment_variants: int = option(4, "variants per image cached for --random-crop/--color-jitter (each costs "
                                   "one more encoding)", group="data")

    # Concepts and caption extras (data/concepts.py, data/prompts.py, docs/concepts.md).
    concept: tuple[ConceptConfig, ...] = option((), "more folders after --data, each with repeats, loss weight, "
                                                "captions and template; --reg-data DIR adds a regularization "
                                                "concept", group="data", flag="[[concept]]", table=ConceptConfig)
    prior_loss_weight: float = option(1.0, "the loss of regularization (is_reg) samples is multiplied by this",
                                      group="data")
    keep_tokens: int = option(0, "with --shuffle-tags and --tag-dropout the first N tags stay in place",
                              group="data")
    caption_prefix: str = option("", "text before every caption's tags (never shuffled or dropped)", group="data")
    caption_suffix: str = option("", "text after every caption's tags", group="data")
    caption_dropout: float = option(0.0, "probability of training a sample without its caption", group="data")
    preview_prompts: str = option("", "file of preview prompts, one per line with optional --n --w --h --s --l "
                                  "--d: a grid per preview in RUN/previews", group="preview")

    @property
    def embedding_tables(self) -> tuple[EmbeddingConfig, ...]:
        """The run's embeddings: --embedding (one with every default), then the [[embeddings]] tables."""
        return ((EmbeddingConfig(path=self.embedding),) if self.embedding else ()) + tuple(self.embeddings)

    @property
    def trained_file(self) -> str:
        """The file the run starts from and trains (the first embedding's when there are several):
        its identity (runs/identity.py) and .optim."""
        if self.method == "hypernetwork":
            return self.hypernetwork
        return self.embedding_tables[0].path if self.embedding_tables else ""

    def __post_init__(self):
        check_train(self)
