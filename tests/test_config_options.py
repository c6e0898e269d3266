"""The config fields drive both faces: every field carries its help and group, the train CLI's flags
are exactly the fields' flags (the old ones kept), docs/options.md is the generated text, messages
reach the web UI in its labels, and the config's choice tuples match the registries they name."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from tistudio.cli.main import build_parser
from tistudio.cli.train import build_config
from tistudio.config import (EMBEDDING_FORMATS, FAMILIES, GROUPS, LOSS_WEIGHTINGS, LOSSES, OPTIMIZERS, PREDICTIONS,
                             SAMPLERS, TIMESTEP_SAMPLINGS, RecipeConfig, TrainConfig, all_options, in_labels, option_name)
from tistudio.config.reference import COMMAND, reference
from tistudio.errors import TIStudioError

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("model", "dreamartist", "recipe")
# Every flag `tistudio train` had before the flags were made from the fields, with its field.
OLD_FLAGS = {
    "--attention": "attention", "--batch-size": "batch_size", "--cfg": "dreamartist.cfg",
    "--channels-last": "channels_last", "--clip-grad": "clip_grad", "--clip-grad-mode": "clip_grad_mode",
    "--clip-skip": "model.clip_skip", "--compile": "compile", "--data": "data", "--device": "device",
    "--early-stop": "early_stop", "--ema": "ema", "--ema-neg": "dreamartist.ema_neg",
    "--ema-replace-every": "ema_replace_every", "--embedding": "embedding", "--eval-clip": "eval_clip",
    "--eval-samples": "eval_samples", "--eval-toy": "eval_toy", "--family": "model.family",
    "--filename-join": "filename_join", "--filename-regex": "filename_regex", "--flip": "flip",
    "--format": "formats", "--grad-accum": "grad_accum", "--gradient-checkpointing": "gradient_checkpointing",
    "--grayscale-copies": "grayscale_copies", "--height": "height", "--huber-delta": "recipe.huber_delta",
    "--hypernetwork": "hypernetwork", "--init-reg": "recipe.init_reg", "--keep-last": "keep_last",
    "--latent-cache": "latent_cache", "--latent-sampling": "latent_sampling", "--log-dir": "log_dir",
    "--loss": "recipe.loss", "--loss-weighting": "recipe.loss_weighting", "--lr": "lr",
    "--lr-cycles": "recipe.lr_cycles", "--lr-scheduler": "recipe.lr_scheduler", "--max-norm": "max_norm",
    "--method": "method", "--model": "model.model", "--model-config": "model.config",
    "--neg-lr-weight": "dreamartist.neg_lr_weight", "--neg-plain-template": "dreamartist.neg_plain_template",
    "--negative": "dreamartist.negative", "--no-heap-reuse": "heap_reuse", "--no-plot": "plot",
    "--noise-offset": "recipe.noise_offset", "--norm": "recipe.norm", "--num-processes": "num_processes",
    "--optimizer": "recipe.optimizer", "--output": "output", "--png-embeddings": "png_embeddings",
    "--precision": "precision", "--prediction": "model.prediction", "--preview-cfg": "preview_cfg",
    "--preview-every": "preview_every", "--preview-negative": "preview_negative",
    "--preview-prompt": "preview_prompt", "--preview-sampler": "preview_sampler", "--preview-seed": "preview_seed",
    "--preview-steps": "preview_steps", "--profile": "profile", "--rec-max-timestep": "dreamartist.rec_max_timestep",
    "--rec-timestep-weight": "dreamartist.rec_timestep_weight", "--rec-weight": "dreamartist.rec_weight",
    "--reconstruction": "dreamartist.reconstruction", "--save-every": "save_every", "--seed": "seed",
    "--shuffle-tags": "shuffle_tags", "--snr-gamma": "recipe.snr_gamma", "--steps": "steps",
    "--tag-dropout": "tag_dropout", "--template": "template", "--tensorboard": "tensorboard", "--threads": "threads",
    "--timestep-range": "recipe.timestep_range", "--timestep-sampling": "recipe.timestep_sampling",
    "--vae-offload": "vae_offload", "--val-data": "val_data", "--val-every": "val_every",
    "--val-images": "val_images", "--val-split": "val_split", "--val-timesteps": "val_timesteps",
    "--warmup-steps": "recipe.warmup_steps", "--width": "width", "--zero-terminal-snr": "recipe.zero_terminal_snr",
}


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_field_has_help_a_group_and_no_retyped_default():
    for opt in all_options():
        assert opt.help and opt.group in GROUPS, opt.key
        section = opt.key.partition(".")[0] if "." in opt.key else None
        assert opt.group == section if section else opt.group not in SECTIONS, opt.key
        assert "(default" not in opt.help or opt.default is None or opt.default == "", opt.key  # rendered, not typed
        assert all(isinstance(c, str) for c in opt.choices), opt.key


def test_flags_are_unique_the_parser_has_exactly_them_and_the_old_ones_mean_the_same():
    flags = [o.flag for o in all_options() if o.kind != "tables"]  # [[concept]]: from --data and --reg-data
    assert len(flags) == len(set(flags))
    # The command's, not the config's; --reg-data writes [[concept]] tables with is_reg.
    own = {"-h", "--help", "--config", "--resume", "--quiet", "--reg-data"}
    parsed = {s for a in _train_parser()._actions for s in a.option_strings} - own
    # A tri-state switch (bool | None: None decides elsewhere) also gets its --no-X twin.
    twins = {"--no-" + o.flag[2:] for o in all_options()
             if o.kind == "bool" and o.optional and not o.flag.startswith("--no-")}
    assert {"--no-buckets", "--no-compile"} <= twins and not twins & set(flags)
    assert parsed == set(flags) | twins
    assert {f: k for f, k in ((o.flag, o.key) for o in all_options()) if f in OLD_FLAGS} == OLD_FLAGS


def test_flags_fill_the_config_as_before(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('steps = 7\n[recipe]\nloss = "huber"\n')
    args = build_parser().parse_args([
        "train", "--config", str(toml), "--model", "m", "--model-config", str(tmp_path), "--embedding", "e.pt",
        "--no-plot", "--no-heap-reuse", "--gradient-checkpointing", "--no-compile", "--format", "safetensors", "--format",
        "a1111-pt", "--format", "safetensors", "--cfg", "2-5:cos", "--huber-delta", "0.5", "--lr", "0.01"])
    cfg = build_config(args)
    assert (cfg.steps, cfg.recipe.loss, cfg.recipe.huber_delta, cfg.lr) == (7, "huber", 0.5, "0.01")
    assert (cfg.plot, cfg.heap_reuse, cfg.gradient_checkpointing, cfg.compile) == (False, False, True, False)
    assert cfg.formats == ("safetensors", "a1111-pt") and cfg.dreamartist.cfg == "2-5:cos"
    assert (cfg.model.model, cfg.model.config) == ("m", str(tmp_path))


def test_the_toml_file_is_not_the_models_config_folder(tmp_path):
    """--config (the TOML file) and --model-config (model.config) once shared one argparse dest."""
    toml = tmp_path / "run.toml"
    toml.write_text("steps = 7\n")
    cfg = build_config(build_parser().parse_args(["train", "--config", str(toml)]))
    assert (cfg.steps, cfg.model.config) == (7, None)


def test_help_is_grouped_and_renders_defaults_from_the_fields():
    text = " ".join(_train_parser().format_help().split())
    for title in ("What to train, on which images:", "Speed and memory (docs/speed.md):", "Training recipe (docs/recipe.md):"):
        assert title in text
    assert "0.001' (default: 0.005)" in text and "(mse | huber | l1; default: mse)" in text
    assert "--no-plot write RUN/loss.png" in text and "(default: on; this flag turns it off)" in text
    assert option_name("dreamartist.cfg") == "--cfg" and option_name("formats") == "--format"


def test_docs_options_md_is_the_generated_reference():
    committed = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert committed == reference(), f"docs/options.md is stale: run `{COMMAND}` and commit it"
    assert "| `--steps` | `steps` | `3000` |" in committed and "| `--loss` | `recipe.loss` | `mse` |" in committed


def test_validation_messages_name_only_real_flags():
    """The web UI turns each flag into its label, so a message may name only the fields' flags."""
    source = (ROOT / "src" / "tistudio" / "config" / "validation.py").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", source))
    assert named and named <= {o.flag for o in all_options()}


def test_the_web_ui_names_options_by_their_labels(tmp_path):
    from tistudio.webui.context import user_message
    from tistudio.webui.forms import build_train_config, train_fields
    from tistudio.webui.safety import PathGuard

    guard = PathGuard.at(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "emb.pt").write_bytes(b"x")
    specs = train_fields()
    values = [{"embedding": "emb.pt", "data": "data", "steps": 0}.get(s.key, s.default) for s in specs]
    values = [list(v) if isinstance(v, tuple) else v for v in values]
    with pytest.raises(TIStudioError) as err:
        build_train_config(specs, values, guard, "/m")
    assert str(err.value) == "--steps 0: must be at least 1"  # the config's own words
    assert user_message(err.value) == "Max steps 0: must be at least 1"
    assert in_labels("--save-every/--preview-every: use 0") == \
        "Save embedding every N steps/Preview image every N steps: use 0"
    assert in_labels("run `tistudio train --steps 5` or set --steps") == "run `tistudio train --steps 5` or set Max steps"
    labels = {s.key: s.label for s in specs}
    assert labels["steps"] == "Max steps" and labels["width"] == "Width (0 = default)"
    info = next(s.info for s in specs if s.key == "steps")
    assert "with Max steps 3000" in info and "--" not in info  # the help, in the page's words
    assert {s.section for s in specs} <= set(GROUPS) and [s.key for s in specs if s.section == "dreamartist"]


def test_choice_tuples_equal_their_registries():
    from tistudio.embedding.formats.registry import FORMATS
    from tistudio.generate.sample import SAMPLER_CLASSES
    from tistudio.models import family

    assert EMBEDDING_FORMATS == tuple(FORMATS)
    assert set(SAMPLERS) == set(SAMPLER_CLASSES)
    assert FAMILIES == tuple(family.FAMILIES) and PREDICTIONS == family.PREDICTIONS


def test_every_choice_name_is_implemented_and_others_are_not():
    """The recipe's names have no table to compare: each implementing function is asked for each."""
    from tistudio.models.denoiser import per_sample_loss
    from tistudio.train.optimizers import build_optimizer
    from tistudio.train.recipe import draw_timesteps, timestep_weight

    x = torch.zeros(1, 4, 2, 2)
    snr = torch.ones(2)
    for loss in LOSSES:
        assert per_sample_loss(x, x, kind=loss).shape == (1,)
    for weighting in LOSS_WEIGHTINGS:
        assert timestep_weight(snr, weighting, 5.0, "epsilon").shape == (2,)
    for sampling in TIMESTEP_SAMPLINGS:
        assert 0 <= int(draw_timesteps(torch.Generator().manual_seed(0), (0, 1000), sampling, 1000)) < 1000
    groups = [{"params": [torch.zeros(1, requires_grad=True)]}]
    for name in OPTIMIZERS:
        try:
            assert isinstance(build_optimizer(name, groups, torch.device("cpu")), torch.optim.Optimizer)
        except TIStudioError as exc:  # a missing optional package or CUDA: known, not implemented elsewhere
            assert name in str(exc)
    for call in (lambda: per_sample_loss(x, x, kind="nope"), lambda: timestep_weight(snr, "nope", 5.0, "epsilon"),
                 lambda: build_optimizer("nope", groups, torch.device("cpu"))):
        with pytest.raises(ValueError):
            call()


def test_saved_configs_keep_their_toml_layout():
    """config.toml of earlier runs loads: flat fields flat, the sections as tables."""
    import tomllib

    from tistudio.config import dump_toml, from_dict

    cfg = TrainConfig(steps=9, recipe=RecipeConfig(loss="l1"))
    data = tomllib.loads(dump_toml(cfg))
    assert data["steps"] == 9 and data["recipe"]["loss"] == "l1" and isinstance(data["model"], dict)
    assert set(data) - {"model", "dreamartist", "recipe"} == {o.key for o in all_options()
                                                                  if "." not in o.key and o.default is not None}
    assert from_dict(TrainConfig, data) == cfg


def test_a_field_without_option_metadata_is_named_with_the_fix():
    from dataclasses import dataclass

    from tistudio.config.options import _records

    @dataclass(frozen=True)
    class Bare:
        steps: int = 3

    with pytest.raises(TypeError, match=r"Bare\.steps: declare it with config\.option\(default, help, group=\.\.\.\)"):
        _records(Bare, "")
