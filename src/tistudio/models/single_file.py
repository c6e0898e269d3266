"""Single-file checkpoints in the ORIGINAL key layout (CompVis LDM for SD1/SD2, Stability SGM for
SDXL): reading them without running pickled code, telling the family and prediction type from their
keys, and building diffusers/transformers modules from them with the configs shipped in
`assets/configs/` (or a caller's config folder for non-standard sizes such as our tiny models).

Key layout of the three families (prefixes of the state-dict keys):

| part        | SD1                             | SD2                       | SDXL                                   |
|-------------|---------------------------------|---------------------------|----------------------------------------|
| UNet        | model.diffusion_model.          | same                      | same                                   |
| VAE         | first_stage_model.              | same                      | same                                   |
| text enc. 1 | cond_stage_model.transformer.   | cond_stage_model.model.   | conditioner.embedders.0.transformer.   |
|             | (HF CLIP-L)                     | (OpenCLIP ViT-H)          | (HF CLIP-L)                            |
| text enc. 2 |                                 |                           | conditioner.embedders.1.model. (bigG)  |
"""
from __future__ import annotations

import json
import logging
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import TIStudioError, first_line
from .family import PREDICTIONS

CONFIGS = Path(__file__).parent / "assets" / "configs"
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
MODEL_HINT = "pass --model PATH to a diffusers folder or a .safetensors/.ckpt file"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT_L = "conditioner.embedders.0.transformer."
SDXL_TEXT_G = "conditioner.embedders.1.model."
# Stable Diffusion 2.0/2.1 512-base was released at this global step; diffusers treats every other
# SD2 checkpoint as the 768-v model. The weights themselves cannot tell the two apart.
SD2_BASE_GLOBAL_STEP = 875000
# The key prefixes each module is built from (the EMA copies some files carry are never read).
PARTS = {"unet": (UNET_PREFIX,), "vae": (VAE_PREFIX,), "text_encoder": (SD1_TEXT, SD2_TEXT, SDXL_TEXT_L),
         "text_encoder_2": (SDXL_TEXT_G,)}


@dataclass(frozen=True)
class Checkpoint:
    """The tensors of a single-file model plus what the file says about itself. For .safetensors
    files `state_dict` is a SafetensorsTensors: each tensor is read when it is looked up."""

    state_dict: Mapping[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header `__metadata__`
    global_step: int | None = None                            # Lightning .ckpt top-level key


# ----------------------------------------------------------------------------------------------
# Reading files safely

class _Inert:
    """Stands in for any global a checkpoint names that is not a tensor or a plain container
    (pytorch_lightning callbacks, optimizer classes, os.system...). It is never called with the
    pickled arguments: constructing it stores nothing and does nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):  # pickle's SETITEMS on a stubbed dict subclass
        pass

    def append(self, value):             # pickle's APPENDS on a stubbed list subclass
        pass

    def extend(self, values):
        pass


# What rebuilding tensors needs, and nothing that can act on the world.
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    *(("torch", name) for name in ("float16", "float32", "float64", "bfloat16", "uint8", "int8",
                                   "int16", "int32", "int64", "bool")),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        # A fresh subclass per name keeps the original name visible when debugging.
        return type(f"Inert_{module.replace('.', '_')}_{name}", (_Inert,), {})


class _RestrictedPickleModule:
    """Handed to torch.load as `pickle_module`: torch wraps our Unpickler for its storages."""

    Unpickler = _RestrictedUnpickler
    __name__ = "tistudio_restricted_pickle"

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def safe_torch_load(path: str | Path) -> object:
    """torch.load that never executes pickled code. weights_only first; files carrying training
    objects (Lightning callbacks, numpy scalars) fall back to an allow-list unpickler that turns
    every other global into an inert stub."""
    path = Path(path)
    try:
        mmap = zipfile.is_zipfile(path)  # memory-map the multi-GB zip-format checkpoints
    except (OSError, zipfile.BadZipFile):  # e.g. a damaged end record claiming several disks
        mmap = False
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses anyway
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # a non-allow-listed global (or garbage: the second try reports it)
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=_RestrictedPickleModule)
    except Exception as exc:  # corrupt or not a torch file at all
        raise TIStudioError(f"{path}: not a readable checkpoint ({first_line(exc)}); {MODEL_HINT}") from None


# safetensors dtype names -> torch dtypes we read with plain file reads; others go through safe_open.
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsTensors(Mapping):
    """The tensors of a .safetensors file, each read from disk when it is looked up, into memory of
    its own. Not memory-mapped: every touched page of a map counts against the process until the
    map closes, so reading through one map adds the whole file (2-7 GB) to the loading peak, and
    one tensor kept alive (e.g. an fp32 VAE weight) keeps the whole file mapped. Keys are ours
    (normalized); `names` maps them to the file's."""

    def __init__(self, path: Path, names: dict[str, str]):
        self.path, self._names = path, names
        # safe_open has validated the header (offsets in bounds and consistent with the shapes).
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            self._header = json.loads(fh.read(size))
        self._data_start = 8 + size

    def __getitem__(self, key: str) -> torch.Tensor:
        name = self._names[key]
        entry = self._header[name]
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:  # fp8 and unsigned types: rare in SD files, safetensors' reader copes
            from safetensors import safe_open

            with safe_open(str(self.path), framework="pt", device="cpu") as fh:
                return fh.get_tensor(name).clone()  # a copy: the map closes with the file
        start, end = entry["data_offsets"]
        data = torch.empty(end - start, dtype=torch.uint8)
        with open(self.path, "rb") as fh:
            fh.seek(self._data_start + start)
            if fh.readinto(data.numpy()) != end - start:
                raise TIStudioError(f"{self.path}: file ends inside tensor {name}; {MODEL_HINT}")
        return data.view(dtype).reshape(entry["shape"])

    def __contains__(self, key: object) -> bool:  # Mapping's default would read the tensor
        return key in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The file's keys, metadata and (lazily, for .safetensors) tensors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                metadata = dict(fh.metadata() or {})
                keys = list(fh.keys())
            tensors = SafetensorsTensors(path, _normalize(keys))
        except (SafetensorError, OSError, ValueError) as exc:  # ValueError: a header json cannot parse
            raise TIStudioError(f"{path}: not a readable .safetensors file ({first_line(exc)}); "
                                f"{MODEL_HINT}") from None
        return Checkpoint(tensors, metadata)
    if suffix in PICKLE_SUFFIXES:
        obj = safe_torch_load(path)
        step = obj.get("global_step") if isinstance(obj, dict) else None
        while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise TIStudioError(f"{path}: holds no state dict of weights; {MODEL_HINT}")
        state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        state = {new: state[old] for new, old in _normalize(list(state)).items()}
        return Checkpoint(state, {}, step if isinstance(step, int) else None)
    raise TIStudioError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; {MODEL_HINT}")


def _normalize(keys: list[str]) -> dict[str, str]:
    """Our key -> the file's key. Old SD1 files were saved with transformers < 4.x, whose CLIP had
    no `text_model.` level."""
    old = SD1_TEXT + "embeddings."
    if not any(k.startswith(old) for k in keys):
        return {k: k for k in keys}
    return {(SD1_TEXT + "text_model." + k[len(SD1_TEXT):] if k.startswith(SD1_TEXT) else k): k for k in keys}


# ----------------------------------------------------------------------------------------------
# Detection

def detect_family(state: Mapping[str, torch.Tensor], source: str | Path = "checkpoint") -> str:
    has = lambda prefix: any(k.startswith(prefix) for k in state)  # noqa: E731
    if not (has(UNET_PREFIX) and has(VAE_PREFIX)):
        raise TIStudioError(f"{source}: not a full Stable Diffusion checkpoint in the original layout "
                            f"(no {UNET_PREFIX}/{VAE_PREFIX} weights; a LoRA, VAE or embedding?); {MODEL_HINT}")
    if has(SDXL_TEXT_G):
        if not has(SDXL_TEXT_L):
            raise TIStudioError(f"{source}: looks like an SDXL refiner (one OpenCLIP encoder); only SDXL "
                                f"base models are supported; {MODEL_HINT}")
        return "sdxl"
    if has(SD2_TEXT):
        return "sd2"
    if has(SD1_TEXT):
        return "sd1"
    raise TIStudioError(f"{source}: unknown text-encoder layout (expected {SD1_TEXT}, {SD2_TEXT} or "
                        f"{SDXL_TEXT_G} keys); {MODEL_HINT}")


def detect_prediction(ckpt: Checkpoint, family: str, fallback: str | None = None) -> str:
    """What the file itself says, else `fallback` (a config folder's scheduler), else the
    family default. Markers, in order: ModelSpec metadata, ComfyUI's `v_pred` tensor, and for SD2
    diffusers' rule (global_step 875000 = 512-base epsilon, any other step = 768-v)."""
    spec = ckpt.metadata.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if spec in ("epsilon", "eps"):
        return "epsilon"
    if "v_pred" in ckpt.state_dict:
        return "v_prediction"
    if family == "sd2" and ckpt.global_step is not None:
        return "epsilon" if ckpt.global_step == SD2_BASE_GLOBAL_STEP else "v_prediction"
    if fallback in PREDICTIONS:
        return fallback
    # diffusers' heuristic with no global step: an SD2 checkpoint is the 768-v model.
    return "v_prediction" if family == "sd2" else "epsilon"


def shipped_config(family: str, prediction: str) -> Path:
    """The shipped full-size config folder; SD2 512-base and 768-v differ in sample size and schedule."""
    name = "sd2-v" if family == "sd2" and prediction == "v_prediction" else family
    return CONFIGS / name


def in_channels(state: Mapping[str, torch.Tensor]) -> int | None:
    weight = state.get(UNET_PREFIX + "input_blocks.0.0.weight")
    return None if weight is None else int(weight.shape[1])


# ----------------------------------------------------------------------------------------------
# Building modules

def build_modules(state: Mapping[str, torch.Tensor], family: str, config: Path, dtype: torch.dtype,
                  source: str | Path = "checkpoint", vae_dtype: torch.dtype | None = None):
    """(text_encoders, unet, vae) from original-layout weights, shaped by `config` (a diffusers
    folder: only unet/, vae/, text_encoder(_2)/ config.json are read). diffusers converts the keys.
    The VAE gets `vae_dtype` (default: `dtype`). One module at a time, each from only its own
    tensors, cast to its dtype as they are read: the module then adopts them without a copy, so the
    peak is about the built model plus one tensor, never the file's size on top."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    kwargs = dict(config=str(config), local_files_only=True)
    loaders = {
        "unet": lambda part, dt: UNet2DConditionModel.from_single_file(part, subfolder="unet", torch_dtype=dt,
                                                                       **kwargs),
        "vae": lambda part, dt: AutoencoderKL.from_single_file(part, subfolder="vae", torch_dtype=dt, **kwargs),
        "text_encoder": lambda part, dt: create_diffusers_clip_model_from_ldm(
            CLIPTextModel, part, subfolder="text_encoder", torch_dtype=dt, **kwargs),
    }
    if family == "sdxl":
        loaders["text_encoder_2"] = lambda part, dt: create_diffusers_clip_model_from_ldm(
            CLIPTextModelWithProjection, part, subfolder="text_encoder_2", torch_dtype=dt, **kwargs)
    modules = {}
    for name, load in loaders.items():
        part_dtype = vae_dtype if name == "vae" and vae_dtype is not None else dtype
        part = {k: as_dtype(state[k], part_dtype) for k in state if k.startswith(PARTS[name])}
        try:
            with _quiet_cast_warning():
                modules[name] = module = load(part, part_dtype)
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            if "meta tensor" in str(exc):  # diffusers builds on the meta device; a weight was never filled
                raise TIStudioError(f"{source}: {name} weights are missing from the file; {MODEL_HINT}") from None
            raise TIStudioError(f"{source}: {name} weights do not fit the {family} architecture in {config} "
                                f"({first_line(exc)}); pass a config folder (diffusers layout) that "
                                f"describes this model") from None
        del part  # the module holds what it uses; the rest (e.g. SD2's unused 24th block) goes now
        missing = [n for n, p in module.named_parameters() if p.is_meta]
        if missing:
            raise TIStudioError(f"{source}: {name} weights are missing from the file (e.g. {missing[0]}); "
                                f"{MODEL_HINT}")
    encoders = [modules["text_encoder"]] + ([modules["text_encoder_2"]] if family == "sdxl" else [])
    unet, vae = modules["unet"], modules["vae"]
    return encoders, unet, vae


def as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Floating-point weights to `dtype`; integer buffers (CLIP's position ids) stay as they are."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


class _CastWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32" not in record.getMessage()


@contextmanager
def _quiet_cast_warning():
    """from_single_file given a dtype casts the built model with .to(dtype), and diffusers then warns
    about modules to keep in float32 even for models that list none (UNet and VAE list none)."""
    logger, quiet = logging.getLogger("diffusers.models.modeling_utils"), _CastWarningFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)

