"""Run configuration as data: frozen dataclasses, validated on construction, saved with every run
and loadable from TOML. Only the standard library (and tomli_w for writing) is used here.

Each field carries its help, group, choices and flag (fields.option), so the CLI's flags, the web
form and docs/options.md are made from the one declaration (options.py, reference.py).

  choices.py       the names each choice option takes
  fields.py        option(): a field with its metadata; the groups
  sections.py      the nested sections: [model], [dreamartist], [recipe]; the [[concept]] and
                   [[embeddings]] tables
  train_config.py  TrainConfig
  validation.py    the rules each config checks on construction
  overrides.py     the one merge, a hypernetwork run's defaults, what a resume may change
  toml_io.py       to and from dicts and TOML
  options.py       the options as the faces see them; flags -> labels for messages
  reference.py     docs/options.md"""
from .choices import (ATTENTION, CAPTION_SOURCES, CLIP_GRAD_MODES, DEVICE_RE, EMBEDDING_FORMATS, FAMILIES, LATENT_CACHES,
                      LATENT_SAMPLING, LOSS_WEIGHTINGS, LOSSES, LR_SCHEDULERS, METHODS, NORMS, OPTIMIZERS,
                      PRECISIONS, PREDICTIONS, PROFILES, REC_TIMESTEP_WEIGHTS, SAMPLERS, TIMESTEP_SAMPLINGS, TRAIN_ENCODERS)
from .fields import GROUPS, option
from .options import Option, all_options, default_text, grouped, in_labels, option_name
from .overrides import RESUMABLE, changes, merge, method_defaults, nested, not_resumable
from .sections import ConceptConfig, DreamArtistConfig, EmbeddingConfig, ModelConfig, RecipeConfig
from .toml_io import dump_toml, from_dict, load_toml, to_dict
from .train_config import HYPERNETWORK_DEFAULTS, TrainConfig
from .validation import color_jitter, timestep_bounds

__all__ = [
    "ATTENTION", "CAPTION_SOURCES", "CLIP_GRAD_MODES", "DEVICE_RE", "EMBEDDING_FORMATS", "FAMILIES", "GROUPS", "HYPERNETWORK_DEFAULTS",
    "LATENT_CACHES", "LATENT_SAMPLING", "LOSSES", "LOSS_WEIGHTINGS", "LR_SCHEDULERS", "METHODS", "NORMS",
    "OPTIMIZERS", "PRECISIONS", "PREDICTIONS", "PROFILES", "REC_TIMESTEP_WEIGHTS", "RESUMABLE", "SAMPLERS",
    "TIMESTEP_SAMPLINGS", "TRAIN_ENCODERS", "ConceptConfig", "DreamArtistConfig", "EmbeddingConfig", "ModelConfig", "Option", "RecipeConfig", "TrainConfig",
    "all_options", "changes", "color_jitter", "default_text", "dump_toml", "from_dict", "grouped", "in_labels", "load_toml",
    "merge", "method_defaults", "nested", "not_resumable", "option", "option_name", "timestep_bounds", "to_dict",
]
