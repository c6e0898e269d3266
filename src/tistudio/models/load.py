"""Load a Stable Diffusion model into `Components`, fully offline.

Accepted: a diffusers pipeline folder (model_index.json) or a single `.safetensors`/`.ckpt` file in
the original layout (see single_file.py). Family and prediction type are detected and can be
overridden. Nothing here may reach the network: every load passes `local_files_only=True` and the
process is put in Hugging Face offline mode, so a missing file is an error, never a download.

`short_hash` is A1111's model hash (first 10 hex digits of the file's sha256). A folder has no
single file, so we hash its UNet weights file, the part that defines the model's identity.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TIStudioError, first_line
from ..hashing import file_sha256
from .components import Components, latent_factor, native_resolution
from .family import PREDICTIONS, get_family
from .single_file import (MODEL_HINT, Checkpoint, SafetensorsTensors, as_dtype, build_modules, detect_family,
                          detect_prediction, in_channels, read_checkpoint, shipped_config)
from .tokenizer import ASSET, load_clip_tokenizer

FOLDER_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def load_model(path: str | Path, family: str | None = None, prediction: str | None = None,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               config: str | Path | None = None, vae_dtype: torch.dtype | None = None) -> Components:
    """`config` (single files only): a diffusers folder whose configs describe the checkpoint's
    architecture, replacing the shipped full-size configs (e.g. for small custom models).
    `vae_dtype`: the VAE's dtype when it differs from `dtype` (training keeps it fp32)."""
    return open_model(path, family, prediction, config).load(dtype, device, vae_dtype)


@dataclass(frozen=True)
class ModelSource:
    """A model file or folder that is identified (family, prediction, architecture configs) but
    whose weights are not read yet: training decides its precision from `unet_parameters()` and
    then loads the weights straight in that precision."""

    path: Path
    family: str
    prediction: str
    config: Path                    # diffusers-layout folder whose configs describe the model
    checkpoint: Checkpoint | None   # single files: the lazily read tensors; None for a folder

    def unet_parameters(self) -> int:
        """The UNet's size from its config alone (built on the meta device: no memory, no weights)."""
        from accelerate import init_empty_weights
        from diffusers import UNet2DConditionModel

        config = self._config("unet")
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(config)
        return sum(p.numel() for p in unet.parameters())

    def _config(self, part: str) -> dict:
        file = self.config / part / "config.json"
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TIStudioError(f"--model {self.path}: no readable {part} config in {self.config} "
                                f"({first_line(exc)}); {MODEL_HINT}") from None

    def tokenizer(self):
        """The model's CLIP tokenizer (its folder's vocabulary, else the shipped one)."""
        return load_clip_tokenizer(_tokenizer_folder(self.config / "tokenizer"),
                                   get_family(self.family).encoders[0].pad_token)

    def widths(self) -> tuple[int, ...]:
        """The text encoders' token-embedding widths, from their configs (no weight is read): what
        Components.widths will be, so an embedding can be checked against it before the load."""
        parts = ("text_encoder", "text_encoder_2")[:len(get_family(self.family).encoders)]
        return tuple(int(self._config(part)["hidden_size"]) for part in parts)

    def resolution(self) -> int:
        """Components.resolution, from the UNet and VAE configs."""
        factor = latent_factor(self._config("vae").get("block_out_channels", (0,) * 4))
        return native_resolution(self._config("unet").get("sample_size"), factor,
                                 get_family(self.family).resolution)

    def load(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
             vae_dtype: torch.dtype | None = None) -> Components:
        vae_dtype = dtype if vae_dtype is None else vae_dtype
        if self.checkpoint is None:
            encoders, unet, vae = _folder_modules(self.path, self.family, dtype, vae_dtype)
            hash_file = _weights_file(self.path / "unet")
        else:
            encoders, unet, vae = build_modules(self.checkpoint.state_dict, self.family, self.config, dtype,
                                                self.path, vae_dtype)
            hash_file = self.path
        spec = get_family(self.family)
        tokenizer = self.tokenizer()
        return Components(
            family=spec, prediction=self.prediction, tokenizer=tokenizer,
            text_encoders=[te.to(device) for te in encoders],
            pad_ids=[tokenizer.convert_tokens_to_ids(e.pad_token) for e in spec.encoders],
            unet=unet.to(device), vae=vae.to(device), scheduler=_training_scheduler(self.config, self.prediction),
            name=self.path.name if self.checkpoint is None else self.path.stem, short_hash=_short_hash(hash_file),
            source=str(self.path), extra={"config": str(self.config)},
        ).freeze()


def open_model(path: str | Path, family: str | None = None, prediction: str | None = None,
               config: str | Path | None = None) -> ModelSource:
    """Identify the model at `path` (reading only keys, shapes and configs); see load_model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if family is not None:
        get_family(family)
    if prediction is not None and prediction not in PREDICTIONS:
        raise TIStudioError(f"--prediction {prediction!r} is unknown; use one of {', '.join(PREDICTIONS)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise TIStudioError(f"--model {path}: no such file or folder; {MODEL_HINT}")
    if path.is_dir():
        return _open_folder(path, family, prediction)
    return _open_file(path, family, prediction, config)


def _open_folder(path: Path, family, prediction) -> ModelSource:
    if not (path / "model_index.json").is_file():
        raise TIStudioError(f"--model {path}: folder is not a diffusers model (no model_index.json); {MODEL_HINT}")
    family = family or _folder_family(path)
    prediction = prediction or _scheduler_config(path).get("prediction_type") or "epsilon"
    return ModelSource(path, family, prediction, path, None)


def _folder_modules(path: Path, family: str, dtype: torch.dtype, vae_dtype: torch.dtype):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    classes = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel,
               "text_encoder_2": CLIPTextModelWithProjection}
    loaded = {}
    # Text encoders first: transformers reads through a memory map whose pages count until it
    # closes, and that transient is smallest while the UNet is not loaded yet.
    for sub in sorted(FOLDER_PARTS[: 4 if family == "sdxl" else 3], key=lambda s: not s.startswith("text")):
        part_dtype = vae_dtype if sub == "vae" else dtype
        module = _read_diffusers_part(classes[sub], path / sub, part_dtype) if sub in ("unet", "vae") else None
        try:
            loaded[sub] = module if module is not None else classes[sub].from_pretrained(
                str(path), subfolder=sub, local_files_only=True, torch_dtype=part_dtype, variant=_variant(path / sub))
        except (OSError, ValueError) as exc:  # hub/offline errors are OSErrors too
            raise TIStudioError(f"--model {path}: cannot load {sub}/ ({first_line(exc)}); {MODEL_HINT}") from None
    encoders = [loaded["text_encoder"]] + ([loaded["text_encoder_2"]] if family == "sdxl" else [])
    return encoders, loaded["unet"], loaded["vae"]


def _read_diffusers_part(cls, folder: Path, dtype: torch.dtype):
    """A diffusers UNet/VAE read tensor by tensor and cast as read, as single files are, instead of
    through from_pretrained's memory map, whose pages add the file's size to the loading peak (an
    fp32 UNet read for bf16 training: 3.4 GB on top of 1.7). None, for from_pretrained to handle,
    unless the folder holds one .safetensors file whose keys are exactly the model's (not sharded,
    not .bin, not an older key layout)."""
    from accelerate import init_empty_weights
    from safetensors import SafetensorError, safe_open

    file = folder / f"diffusion_pytorch_model{'.fp16' if _variant(folder) else ''}.safetensors"
    if not file.is_file() or not (folder / "config.json").is_file():
        return None
    try:
        with safe_open(str(file), framework="pt", device="cpu") as fh:
            keys = list(fh.keys())
        tensors = SafetensorsTensors(file, {k: k for k in keys})
        with init_empty_weights():
            model = cls.from_config(cls.load_config(folder))
    except (SafetensorError, OSError, ValueError):
        return None  # from_pretrained reports it
    if set(keys) != set(model.state_dict()):
        return None
    try:
        model.load_state_dict({k: as_dtype(tensors[k], dtype) for k in keys}, assign=True)
    except RuntimeError:  # shapes that do not fit the config
        return None
    return model.eval()


def _open_file(path: Path, family, prediction, config) -> ModelSource:
    ckpt = read_checkpoint(path)
    family = _file_family(ckpt, family, path)
    if config is not None:
        config = Path(config).expanduser()
        if not (config / "unet" / "config.json").is_file():
            raise TIStudioError(f"--config {config}: not a diffusers config folder (no unet/config.json); "
                                f"pass a folder laid out like a diffusers model")
    fallback = _scheduler_config(config).get("prediction_type") if config else None
    prediction = prediction or detect_prediction(ckpt, family, fallback)
    cfg_dir = config or shipped_config(family, prediction)
    channels = in_channels(ckpt.state_dict)
    if config is None and channels not in (None, 4):
        raise TIStudioError(f"{path}: the UNet takes {channels} input channels (an inpainting or "
                            f"instruct model); only text-to-image models are supported")
    return ModelSource(path, family, prediction, cfg_dir, ckpt)


def _file_family(ckpt, family: str | None, path: Path) -> str:
    """The keys decide; an override serves files whose layout we cannot read, and may not
    contradict keys we can (a CLIP-L model called SD2 would get the wrong pad token)."""
    try:
        detected = detect_family(ckpt.state_dict, path)
    except TIStudioError:
        if family is None:
            raise
        return family
    if family is not None and family != detected:
        raise TIStudioError(f"--family {family} contradicts {path}, whose keys are the {detected} layout; "
                            f"drop --family or pass --family {detected}")
    return detected


def _folder_family(path: Path) -> str:
    if (path / "text_encoder_2").is_dir():
        return "sdxl"
    try:
        unet = json.loads((path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        raise TIStudioError(f"--model {path}: no readable unet/config.json; {MODEL_HINT}") from None
    if unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    # SD2's UNet uses linear projections in its transformers and 1024-wide OpenCLIP context.
    if unet.get("use_linear_projection") or unet.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def _scheduler_config(folder: Path) -> dict:
    file = folder / "scheduler" / "scheduler_config.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def _training_scheduler(folder: Path, prediction: str):
    from diffusers import DDPMScheduler

    cfg = {k: v for k, v in _scheduler_config(folder).items() if not k.startswith("_")}
    # Training only needs the noise schedule; clip_sample would clamp latents to [-1, 1] in step().
    return DDPMScheduler.from_config({**cfg, "prediction_type": prediction, "clip_sample": False})


def _tokenizer_folder(folder: Path) -> Path:
    has_vocab = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    return folder if has_vocab else ASSET


def _variant(folder: Path) -> str | None:
    """diffusers needs `variant="fp16"` to pick up folders that only hold *.fp16.* weights."""
    names = [p.name for p in folder.glob("*") if p.suffix in (".safetensors", ".bin")]
    return "fp16" if names and all(".fp16." in n for n in names) else None


def _weights_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise TIStudioError(f"--model {folder.parent}: no weights in {folder.name}/; {MODEL_HINT}")
    return files[0]


def _short_hash(file: Path) -> str:
    return file_sha256(file)[:10]  # A1111's model hash
