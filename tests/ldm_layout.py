"""Test helper: write a diffusers-form model (e.g. a tiny one from tiny_models.py) as a
single-file checkpoint in the ORIGINAL layout (CompVis LDM for SD1/SD2, Stability SGM for SDXL),
the way real `.safetensors`/`.ckpt` model files are laid out, so loader tests can round-trip it.

The mapping is the inverse of what loaders do:
- UNet: input_blocks.k / middle_block / output_blocks.k, k counted over levels x (layers + 1);
  ResNet parts renamed (norm1 -> in_layers.0, conv1 -> in_layers.2, time_emb_proj -> emb_layers.1,
  norm2 -> out_layers.0, conv2 -> out_layers.3, conv_shortcut -> skip_connection); transformer
  blocks keep their names.
- VAE: encoder.down.i.block.j, decoder.up.(n-1-i).block.j (the decoder is numbered bottom-up),
  mid.block_1/attn_1/block_2; the mid attention uses 1x1 convolutions (weights [C, C, 1, 1]).
- CLIP-L (HF layout under `transformer.text_model.`), with the `position_ids` buffer real files carry.
- OpenCLIP (SD2 ViT-H, SDXL bigG): resblocks with fused in_proj (q, k, v stacked on dim 0),
  `positional_embedding` without `.weight`, and `text_projection` stored transposed ([width, proj]).
"""
from __future__ import annotations

from pathlib import Path

import torch

RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
RESNET_VAE = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_prefixes(state: dict, prefixes: dict[str, str], inner: dict[str, dict[str, str]]) -> dict:
    """Map each key through the one prefix it starts with; `inner[prefix]` renames the rest."""
    out = {}
    for key, value in state.items():
        match = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
        if match is None:
            raise KeyError(f"no original-layout name for {key}")
        rest = key[len(match):]
        for old, new in inner.get(match, {}).items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
        out[prefixes[match] + rest] = value
    return out


def unet_to_ldm(state: dict, config) -> dict:
    levels, per = len(config["block_out_channels"]), config["layers_per_block"]
    prefixes = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
                "time_embedding.linear_2.": "time_embed.2.", "add_embedding.linear_1.": "label_emb.0.0.",
                "add_embedding.linear_2.": "label_emb.0.2.", "conv_norm_out.": "out.0.",
                "conv_out.": "out.2.", "mid_block.resnets.0.": "middle_block.0.",
                "mid_block.attentions.0.": "middle_block.1.", "mid_block.resnets.1.": "middle_block.2."}
    for i in range(levels):
        for j in range(per):
            k = 1 + i * (per + 1) + j
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{k}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{k}.1."
        for j in range(per + 1):
            k = i * (per + 1) + j
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{k}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{k}.1."
        if i < levels - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{1 + i * (per + 1) + per}.0.op."
            # The upsampler follows the resnet, and the attention when the up block has one.
            slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
            prefixes[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{i * (per + 1) + per}.{slot}.conv."
    inner = {p: RESNET_UNET for p in prefixes if ".resnets." in p}
    return {"model.diffusion_model." + k: v for k, v in _rename_prefixes(state, prefixes, inner).items()}


def vae_to_ldm(state: dict, config) -> dict:
    levels, per = len(config["block_out_channels"]), config["layers_per_block"]
    prefixes = {}
    for part in ("encoder", "decoder"):
        prefixes.update({f"{part}.conv_in.": f"{part}.conv_in.", f"{part}.conv_out.": f"{part}.conv_out.",
                         f"{part}.conv_norm_out.": f"{part}.norm_out.",
                         f"{part}.mid_block.resnets.0.": f"{part}.mid.block_1.",
                         f"{part}.mid_block.resnets.1.": f"{part}.mid.block_2.",
                         f"{part}.mid_block.attentions.0.": f"{part}.mid.attn_1."})
    prefixes.update({"quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."})
    for i in range(levels):
        for j in range(per):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(per + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{levels - 1 - i}.block.{j}."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{levels - 1 - i}.upsample.conv."
    inner = {p: RESNET_VAE for p in prefixes if ".resnets." in p}
    inner.update({p: VAE_ATTENTION for p in prefixes if ".attentions." in p})
    out = _rename_prefixes(state, prefixes, inner)
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]  # linear -> 1x1 conv
    return {"first_stage_model." + k: v for k, v in out.items()}


def _text_model_keys(state: dict) -> dict:
    """transformers 5 flattens CLIPTextModel (no `text_model.` level); WithProjection keeps it."""
    return {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v
            for k, v in state.items()}


def clip_l_to_ldm(state: dict, prefix: str) -> dict:
    out = {prefix + k: v for k, v in _text_model_keys(state).items() if not k.startswith("text_projection.")}
    positions = out[prefix + "text_model.embeddings.position_embedding.weight"].shape[0]
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def open_clip_to_ldm(state: dict, prefix: str, width: int) -> dict:
    state = _text_model_keys(state)
    out = {prefix + "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
           prefix + "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
           prefix + "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
           prefix + "ln_final.bias": state.pop("text_model.final_layer_norm.bias")}
    projection = state.pop("text_projection.weight", None)
    # SD2 files carry OpenCLIP's projection even though SD2 never uses it.
    out[prefix + "text_projection"] = torch.eye(width) if projection is None else projection.T.contiguous()
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")})
    for n in layers:
        src, dst = f"text_model.encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{src}self_attn.{q}_proj.{kind}") for q in ("q", "k", "v")])
            for old, new in names.items():
                out[f"{dst}{new}.{kind}"] = state.pop(f"{src}{old}.{kind}")
    if state:
        raise KeyError(f"unmapped text-encoder keys: {sorted(state)[:3]}")
    return out


def to_single_file(components) -> dict[str, torch.Tensor]:
    """The whole model as one original-layout state dict."""
    family = components.family.name
    out = unet_to_ldm(components.unet.state_dict(), components.unet.config)
    out.update(vae_to_ldm(components.vae.state_dict(), components.vae.config))
    encoders = components.text_encoders
    if family == "sd1":
        out.update(clip_l_to_ldm(encoders[0].state_dict(), "cond_stage_model.transformer."))
    elif family == "sd2":
        out.update(open_clip_to_ldm(encoders[0].state_dict(), "cond_stage_model.model.",
                                    encoders[0].config.hidden_size))
    else:
        out.update(clip_l_to_ldm(encoders[0].state_dict(), "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(encoders[1].state_dict(), "conditioner.embedders.1.model.",
                                    encoders[1].config.hidden_size))
    return {k: v.detach().contiguous() for k, v in out.items()}


def save_single_file(components, path: str | Path, metadata: dict | None = None,
                     extra: dict | None = None) -> Path:
    """`.safetensors` (with optional header metadata) or `.ckpt` (a Lightning-style dict:
    {"state_dict": ..., **extra}, e.g. extra={"global_step": 875000})."""
    path = Path(path)
    state = to_single_file(components)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata=metadata)
    else:
        torch.save({"state_dict": state, **(extra or {})}, path)
    return path
