"""A floor under the memory a resolution and batch need, checked before any image is read, so an
impossible size (`--width 100000 --height 100000`) is one line with the figure instead of a process
the kernel kills without a word.

The estimate counts only tensors that must exist whatever the settings: at full resolution the
images themselves and the VAE's widest activations (its first/last block holds `block_out_channels[0]`
channels per pixel, fp32, with a block's input, normalised copy and output alive together), and at
latent resolution the UNet's first-level activations kept for the backward pass. It is a lower
bound (weights, attention and allocator slack come on top), so it never refuses a size that fits.
"""
from __future__ import annotations

from ..errors import TIStudioError
from ..memory import available_bytes
from .components import Components

VAE_LIVE = 3      # full-resolution tensors of the VAE's first block alive at once
UNET_SAVED = 4    # first-level UNet activations kept per sample for the backward pass (training)


def floor_bytes(c: Components, width: int, height: int, images: int, training: bool,
                dtype_bytes: int = 2) -> int:
    """Bytes that `images` images at width x height need at least (see the module docstring). The
    VAE counts in fp32 (it encodes the latent cache in fp32), the UNet in `dtype_bytes` (default 2:
    the narrowest precision it runs in, so the figure stays a floor)."""
    pixels = width * height * images
    vae = pixels * 4 * (3 + VAE_LIVE * c.vae.config.block_out_channels[0])
    latent = pixels // c.vae_factor ** 2
    unet = latent * dtype_bytes * c.unet.config.block_out_channels[0] * (UNET_SAVED if training else 1)
    return vae + unet


def check_fits(c: Components, width: int, height: int, images: int, device, training: bool,
               what: str = "--width/--height") -> None:
    """Refuse a size whose floor exceeds the memory available now on `device` (host memory for the
    CPU, the GPU's free memory for CUDA); silent where the free memory cannot be read."""
    need = floor_bytes(c, width, height, images, training)
    have = available_bytes(device)
    if have is not None and need > have:
        gib = 2**30
        per = f" x {images} images at once" if images > 1 else ""
        raise TIStudioError(f"{what} {width}x{height}{per} needs at least {need / gib:,.1f} GiB but "
                            f"{have / gib:,.1f} GiB is free on {device}; use a smaller size (the model's own "
                            f"is {c.resolution}x{c.resolution}) or batch")
