"""TrainConfig's nested sections, each a table of its own in TOML ([model], [dreamartist], [recipe])
and a group of its own in the faces; ConceptConfig, one table of the [[concept]] array; and
EmbeddingConfig, one table of the [[embeddings]] array."""
from __future__ import annotations

from dataclasses import dataclass

from .choices import (CAPTION_SOURCES, FAMILIES, LOSS_WEIGHTINGS, LOSSES, LR_SCHEDULERS, NORMS, OPTIMIZERS, PREDICTIONS,
                      REC_TIMESTEP_WEIGHTS, TIMESTEP_SAMPLINGS)
from .fields import option
from .validation import check_concept, check_dreamartist, check_embedding, check_model, check_recipe


@dataclass(frozen=True)
class ModelConfig:
    model: str = option("", "diffusers folder or single .safetensors/.ckpt checkpoint", group="model")
    family: str | None = option(None, "the model's family (default: detected)", group="model", choices=FAMILIES)
    prediction: str | None = option(None, "what the UNet predicts (default: detected)", group="model",
                                    choices=PREDICTIONS)
    clip_skip: int = option(1, "text-encoder layers to skip from the end, 1 = the last layer; the guide "
                            "suggests 2 for anime models", group="model")
    config: str | None = option(None, "diffusers folder whose configs describe a single-file model's "
                                "architecture (default: the shipped configs of the detected family)",
                                group="model", flag="--model-config", label="Architecture configs folder")

    def __post_init__(self):
        check_model(self)


@dataclass(frozen=True)
class DreamArtistConfig:
    """DreamArtist (APT) options (docs/dreamartist.md); used when method = "dreamartist"."""

    negative: str = option("", "negative embedding file (default: NAME-neg beside --embedding)",
                           group="dreamartist")
    cfg: str = option("3", "training guidance scale: 3 (characters), 5 (styles) or lo-hi[:ln|cos|cos2] "
                      "(parsed, never eval'd)", group="dreamartist", label="Training CFG scale")
    neg_lr_weight: float = option(1.0, "the negative's learning rate is --lr times this, at every schedule "
                                  "entry", group="dreamartist", label="Negative lr weight")
    neg_plain_template: bool = option(False, "negative prompt from the template's plain ([filewords]-free) twin",
                                      group="dreamartist", label="Negative from the plain template")
    reconstruction: bool = option(False, "add L1 between the VAE-decoded prediction x̂0 and the image",
                                  group="dreamartist")
    rec_weight: float = option(1.0, "weight of the reconstruction loss", group="dreamartist",
                               label="Reconstruction weight")
    rec_max_timestep: int = option(999, "no reconstruction loss above this timestep (x̂0 is mostly noise there)",
                                   group="dreamartist", label="Reconstruction max timestep")
    rec_timestep_weight: str = option("none", "alpha: scale the reconstruction loss by ᾱ_t, the signal share of "
                                      "x_t", group="dreamartist", choices=REC_TIMESTEP_WEIGHTS,
                                      label="Reconstruction timestep weight")
    ema_neg: float | None = option(None, "EMA decay of the negative embedding (default: the same as --ema)",
                                   group="dreamartist", label="Negative EMA decay")

    def __post_init__(self):
        check_dreamartist(self)


@dataclass(frozen=True)
class RecipeConfig:
    """The training recipe beyond A1111's (docs/recipe.md): loss, its timestep weighting, noise and
    timestep draws, optimizer, schedule shape and norm control. Every default is A1111's behaviour
    but one: min-SNR-5 loss weighting, which won the recipe sweep on every concept and seed
    (docs/toy.md "Recipe sweep"); --loss-weighting none restores A1111's loss exactly."""

    loss: str = option("mse", "the loss per latent pixel", group="recipe", choices=LOSSES)
    huber_delta: float = option(0.1, "Huber loss: quadratic below this error, linear above (kohya's huber_c)",
                                group="recipe")
    loss_weighting: str = option("min-snr", "weight each sample by its timestep's SNR(t); none is A1111's "
                                 "loss", group="recipe",
                                 choices=LOSS_WEIGHTINGS)
    snr_gamma: float = option(5.0, "min-snr: weights capped at min(SNR, γ)/SNR (invoke-training's TI default)",
                              group="recipe", label="SNR gamma")
    noise_offset: float = option(0.0, "add offset·N(0,1) per sample and channel to the noise (darker or "
                                 "brighter images), e.g. 0.05", group="recipe")
    zero_terminal_snr: bool = option(False, "rescale betas so the last timestep is pure noise, SNR(T) = 0 "
                                     "(Lin et al. 2023); meant for v-prediction models", group="recipe",
                                     label="Zero terminal SNR")
    timestep_range: str = option("0:1000", "train on timesteps lo:hi only (half-open)", group="recipe")
    timestep_sampling: str = option("uniform", "how timesteps are drawn over the range; logit-normal (SD3's: "
                                    "sigmoid of N(0,1)) favours the middle", group="recipe",
                                    choices=TIMESTEP_SAMPLINGS)
    optimizer: str = option("adamw", "the optimizer of the vectors; prodigy wants --lr 1; prodigy, lion and "
                            "schedule-free (AdamW without a schedule: previews, validation and files use its "
                            "averaged point) need their PyPI package; adamw8bit needs CUDA", group="recipe",
                            choices=OPTIMIZERS)
    lr_scheduler: str = option("step-grammar", "the learning-rate shape: step-grammar follows --lr's schedule, "
                               "the others shape a single --lr rate over --steps", group="recipe",
                               choices=LR_SCHEDULERS, label="LR scheduler")
    lr_cycles: int = option(3, "cosine-restarts: number of cosine cycles", group="recipe", label="LR cycles")
    warmup_steps: int = option(0, "linear learning-rate warm-up from 0 over this many steps, on any scheduler",
                               group="recipe")
    norm: str = option("none", "norm control: preserve keeps the vectors at the vocabulary's median norm, "
                       "fixed-direction (DTI) trains only their direction", group="recipe", choices=NORMS)
    init_reg: float = option(0.0, "weight λ of the L2 pull toward the vectors the run started from, e.g. 0.01",
                             group="recipe", label="Init regularisation")

    def __post_init__(self):
        check_recipe(self)


@dataclass(frozen=True)
class ConceptConfig:
    """One folder of a run's dataset, a `[[concept]]` table (docs/concepts.md): kohya's subset,
    OneTrainer's concept. TrainConfig.data is shorthand for one more with every default."""

    path: str = option("", "folder of the concept's images (scanned flat, as --data)", group="data")
    repeats: int = option(1, "each image counts this many times per epoch", group="data")
    loss_weight: float = option(1.0, "multiplies the loss of this concept's samples", group="data")
    caption_source: str = option("auto", "auto (.txt, else the file name), sidecar (.txt required), filename, "
                                 "or fixed (`caption` for every image)", group="data", choices=CAPTION_SOURCES)
    caption: str = option("", "caption_source = \"fixed\": every image's caption", group="data")
    template: str = option("", "this concept's prompt template; empty: the run's --template", group="data")
    is_reg: bool = option(False, "regularization images: loss x --prior-loss-weight, drawn alongside",
                          group="data")
    embedding: str = option("", "the name (trigger) of the run's embedding this concept trains: [name] in its "
                            "template and captions is that one (docs/multi-embedding.md); empty: the first",
                            group="data")

    def __post_init__(self):
        check_concept(self)


@dataclass(frozen=True)
class EmbeddingConfig:
    """One embedding of a run that trains several, an `[[embeddings]]` table (docs/multi-embedding.md):
    OneTrainer's additional embeddings. Its name, vectors and init are the file's (`tistudio create`).
    TrainConfig.embedding is shorthand for one more, first, with every default."""

    path: str = option("", "the embedding file (from `tistudio create`)", group="run")
    lr_scale: float = option(1.0, "this embedding's learning rate is --lr times this", group="run")
    stop_step: int = option(0, "this embedding's vectors stop changing after this step (counted as --steps "
                            "is); 0: they train to --steps", group="run")

    def __post_init__(self):
        check_embedding(self)
