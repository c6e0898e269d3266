"""`--vae PATH`: another VAE in place of the model's own (a fine-tuned one such as SD's ft-MSE, or
SDXL's fp16-fixed VAE), for the latent cache and the previews.

PATH is a diffusers AutoencoderKL folder (config.json and weights, or a model folder with vae/), or
a single .safetensors/.ckpt/.pt file in the original LDM layout (keys `encoder.down.0…`, with or
without `first_stage_model.`) or in diffusers' own layout. A single file has no config: it is built
with the model's own VAE config, so its weights must fit that architecture.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..errors import TIStudioError, first_line
from ..memory import trim_heap
from .single_file import read_checkpoint

_HINT = "pass --vae a diffusers AutoencoderKL folder or a VAE .safetensors/.ckpt file"


def load_vae(path: str | Path, like: torch.nn.Module) -> torch.nn.Module:
    """The VAE at `path`, fp32, frozen; `like` (the model's VAE) gives a single file its config."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.is_dir():
        folder = path if (path / "config.json").is_file() else path / "vae"
        if not (folder / "config.json").is_file():
            raise TIStudioError(f"--vae {path}: no config.json there (nor in vae/); {_HINT}")
        try:
            vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise TIStudioError(f"--vae {path}: cannot load it ({first_line(exc)}); {_HINT}") from None
    elif path.is_file():
        vae = _from_file(path, like)
    else:
        raise TIStudioError(f"--vae {path}: no such file or folder; {_HINT}")
    _check_fits(vae, like, path)
    return vae.requires_grad_(False).eval()


def _from_file(path: Path, like: torch.nn.Module) -> torch.nn.Module:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = dict(read_checkpoint(path).state_dict)
    vae = AutoencoderKL.from_config(like.config)
    own = vae.state_dict()
    if not set(own) <= set(state):  # not diffusers' layout: the LDM one
        state = convert_ldm_vae_checkpoint(state, vae.config)
    state = {k: v.float() for k, v in state.items() if k in own}
    try:
        vae.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TIStudioError(f"--vae {path}: its weights do not fit the model's VAE ({first_line(exc)}); {_HINT}") from None
    return vae


def _check_fits(vae, like, path: Path) -> None:
    """The UNet sees the latents: their channels and the downsampling (one per block but the last)
    must be the model's."""
    facts = [(c["latent_channels"], 2 ** (len(c["block_out_channels"]) - 1)) for c in (vae.config, like.config)]
    if facts[0] != facts[1]:
        raise TIStudioError(f"--vae {path}: latents of {facts[0][0]} channels at 1/{facts[0][1]} size, but the "
                            f"model's are {facts[1][0]} at 1/{facts[1][1]}; use a VAE made for this model family")


def drop_decoder(vae: torch.nn.Module) -> None:
    """Take the decoder half out of a VAE that will never decode (a run without previews or scores:
    the SD decoder is 0.2 GB in fp32), and hand its memory back to the system."""
    vae.decoder = vae.post_quant_conv = None
    trim_heap()


@contextlib.contextmanager
def vae_on(c, device: torch.device):
    """The model's VAE (`c`: Components) on `device` for the block, then back where it was: an
    offloaded VAE (--vae-offload) comes back only for the decodes of previews and scores."""
    home = next(c.vae.parameters()).device
    c.vae.to(device)
    try:
        yield
    finally:
        c.vae.to(home)
