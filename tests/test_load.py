"""Offline model loading: diffusers folders and original-layout single files give the same weights
as the model they were written from; family/prediction detection; safe .ckpt reading; errors."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket

import pytest
import torch
from ldm_layout import save_single_file, to_single_file
from safetensors.torch import save_file

from tistudio.errors import TIStudioError
from tistudio.models.load import load_model
from tistudio.models.single_file import (CONFIGS, Checkpoint, detect_family, detect_prediction,
                                         safe_torch_load, shipped_config)

FAMILIES = ("sd1", "sd2", "sdxl")


def sha10(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def assert_same_weights(source, loaded):
    """Every tensor of the source model comes back bit-identical, nothing extra, nothing missing."""
    pairs = [(source.unet, loaded.unet), (source.vae, loaded.vae),
             *zip(source.text_encoders, loaded.text_encoders, strict=True)]
    for a, b in pairs:
        assert type(a) is type(b)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys(), type(a).__name__
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{type(a).__name__}.{key}"


def assert_frozen(c):
    for m in (*c.text_encoders, c.unet, c.vae):
        assert not m.training and not any(p.requires_grad for p in m.parameters())


@pytest.fixture(scope="module")
def single_files(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("single-files")
    return {f: save_single_file(c, root / f"tiny-{f}.safetensors") for f, c in tiny_models.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_folder_loads_every_family(family, tiny_models, tiny_model_dirs):
    folder = tiny_model_dirs[family]
    c = load_model(folder)
    assert c.family.name == family
    assert c.prediction == ("v_prediction" if family == "sd2" else "epsilon")
    assert c.pad_ids == {"sd1": [49407], "sd2": [0], "sdxl": [49407, 0]}[family]
    assert [type(te).__name__ for te in c.text_encoders] == (
        ["CLIPTextModel", "CLIPTextModelWithProjection"] if family == "sdxl" else ["CLIPTextModel"])
    assert type(c.scheduler).__name__ == "DDPMScheduler"
    assert c.scheduler.config.prediction_type == c.prediction
    assert c.scheduler.config.num_train_timesteps == 1000 and not c.scheduler.config.clip_sample
    assert c.name == folder.name and c.source == str(folder)
    assert c.short_hash == sha10(folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert c.tokenizer("a photo").input_ids == [49406, 320, 1125, 49407]
    assert_same_weights(tiny_models[family], c)
    assert_frozen(c)


@pytest.mark.parametrize("family", FAMILIES)
def test_single_safetensors_in_original_layout_loads_every_family(family, tiny_models, tiny_model_dirs,
                                                                  single_files):
    path = single_files[family]
    c = load_model(path, config=tiny_model_dirs[family])
    assert c.family.name == family
    assert c.prediction == ("v_prediction" if family == "sd2" else "epsilon")
    assert c.pad_ids == [c.tokenizer.convert_tokens_to_ids(e.pad_token) for e in c.family.encoders]
    assert c.name == f"tiny-{family}" and c.short_hash == sha10(path)
    assert_same_weights(tiny_models[family], c)
    assert_frozen(c)
    # Same conditioning as the source: the text encoders compute the same hidden states.
    ids = c.tokenizer(["a photo of a cat"], padding="max_length", return_tensors="pt").input_ids
    for a, b in zip(tiny_models[family].text_encoders, c.text_encoders):
        assert torch.equal(a(ids).last_hidden_state, b(ids).last_hidden_state)


class LightningCallbackState:
    """Stands in for the pytorch_lightning objects real SD .ckpt files carry beside the weights."""

    def __init__(self):
        self.best_model_score = torch.tensor(0.5)
        self.monitor = "val/loss"


def test_sd1_ckpt_with_training_objects_loads(tiny_models, tiny_model_dirs, tmp_path):
    path = save_single_file(tiny_models["sd1"], tmp_path / "model.ckpt",
                            extra={"global_step": 470000, "epoch": 6,
                                   "callbacks": {"ModelCheckpoint": LightningCallbackState()}})
    with pytest.raises(Exception):  # noqa: B017  any refusal will do: proves the file really needs more than weights_only=True
        torch.load(path, weights_only=True)
    c = load_model(path, config=tiny_model_dirs["sd1"])
    assert c.family.name == "sd1" and c.prediction == "epsilon" and c.short_hash == sha10(path)
    assert_same_weights(tiny_models["sd1"], c)


def test_old_sd1_text_encoder_keys_without_text_model_level(tiny_models, tiny_model_dirs, tmp_path):
    state = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
             for k, v in to_single_file(tiny_models["sd1"]).items()}
    save_file(state, str(tmp_path / "old.safetensors"))
    assert_same_weights(tiny_models["sd1"], load_model(tmp_path / "old.safetensors",
                                                       config=tiny_model_dirs["sd1"]))


def test_dtype_is_applied(single_files, tiny_model_dirs):
    c = load_model(single_files["sd1"], config=tiny_model_dirs["sd1"], dtype=torch.bfloat16)
    for m in (c.unet, c.vae, c.text_encoders[0]):
        assert {p.dtype for p in m.parameters()} == {torch.bfloat16}


# --- family and prediction -------------------------------------------------------------------

def _keys(*names):
    return {n: torch.zeros(1) for n in names}


UNET_VAE = ("model.diffusion_model.out.2.weight", "first_stage_model.decoder.conv_in.weight")


@pytest.mark.parametrize("key, family", [
    ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "sd1"),
    ("cond_stage_model.model.ln_final.weight", "sd2"),
])
def test_detect_family_from_text_encoder_keys(key, family):
    assert detect_family(_keys(*UNET_VAE, key)) == family


def test_detect_family_sdxl_and_refiner():
    xl_l = "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"
    xl_g = "conditioner.embedders.1.model.ln_final.weight"
    assert detect_family(_keys(*UNET_VAE, xl_l, xl_g)) == "sdxl"
    with pytest.raises(TIStudioError, match="refiner"):
        detect_family(_keys(*UNET_VAE, xl_g))


@pytest.mark.parametrize("keys, expected", [
    (("lora_unet_down_blocks_0.alpha",), "not a full Stable Diffusion checkpoint"),
    ((*UNET_VAE, "text_encoders.t5xxl.weight"), "unknown text-encoder layout"),
])
def test_detect_family_rejects_other_layouts(keys, expected):
    with pytest.raises(TIStudioError, match=expected):
        detect_family(_keys(*keys), "x.safetensors")


@pytest.mark.parametrize("ckpt, family, fallback, expected", [
    (Checkpoint({}), "sd1", None, "epsilon"),
    (Checkpoint({}), "sdxl", None, "epsilon"),
    (Checkpoint({}), "sd2", None, "v_prediction"),               # diffusers: SD2 is 768-v ...
    (Checkpoint({}, {}, 875000), "sd2", None, "epsilon"),        # ... unless 512-base's global step
    (Checkpoint({}, {}, 140000), "sd2", "epsilon", "v_prediction"),
    (Checkpoint({}), "sd2", "epsilon", "epsilon"),               # a config folder's scheduler
    (Checkpoint({"v_pred": torch.zeros(())}), "sdxl", None, "v_prediction"),
    (Checkpoint({}, {"modelspec.prediction_type": "v"}), "sd1", None, "v_prediction"),
    (Checkpoint({}, {"modelspec.prediction_type": "epsilon"}), "sd2", None, "epsilon"),
])
def test_detect_prediction(ckpt, family, fallback, expected):
    assert detect_prediction(ckpt, family, fallback) == expected


def test_shipped_config_follows_sd2_prediction():
    assert shipped_config("sd2", "epsilon").name == "sd2"
    assert shipped_config("sd2", "v_prediction").name == "sd2-v"
    assert shipped_config("sdxl", "epsilon").name == "sdxl"


def test_sd2_ckpt_prediction_detected_and_overridden(tiny_models, tiny_model_dirs, tmp_path):
    path = save_single_file(tiny_models["sd2"], tmp_path / "base.ckpt", extra={"global_step": 875000})
    assert load_model(path, config=tiny_model_dirs["sd2"]).prediction == "epsilon"
    c = load_model(path, config=tiny_model_dirs["sd2"], prediction="v_prediction")
    assert c.prediction == "v_prediction" and c.scheduler.config.prediction_type == "v_prediction"


def test_folder_prediction_read_from_scheduler_and_overridden(tiny_model_dirs, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dirs["sd2"], tmp_path / "sd2-base")
    cfg_file = folder / "scheduler" / "scheduler_config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "prediction_type": "epsilon"}))
    assert load_model(folder).prediction == "epsilon"
    c = load_model(folder, prediction="v_prediction", family="sd2")
    assert c.prediction == "v_prediction" and c.scheduler.config.prediction_type == "v_prediction"


def test_family_override_may_not_contradict_keys(single_files, tiny_model_dirs):
    with pytest.raises(TIStudioError, match="--family sd2 contradicts .* sd1 layout"):
        load_model(single_files["sd1"], family="sd2", config=tiny_model_dirs["sd1"])
    assert load_model(single_files["sd1"], family="sd1", config=tiny_model_dirs["sd1"]).family.name == "sd1"


# --- errors ----------------------------------------------------------------------------------

def _error(*args, **kwargs) -> str:
    with pytest.raises(TIStudioError) as info:
        load_model(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_for_missing_path(tmp_path):
    message = _error(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in message and "no such file" in message
    assert "--model PATH to a diffusers folder or a .safetensors/.ckpt file" in message


def test_error_for_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "images").mkdir()
    assert "no model_index.json" in _error(tmp_path / "images")


def test_error_for_folder_missing_a_part(tiny_model_dirs, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dirs["sd1"], tmp_path / "broken")
    shutil.rmtree(folder / "vae")
    assert "cannot load vae/" in _error(folder)


def test_error_for_unknown_layout_and_file_type(tmp_path):
    save_file({"lora_unet_down.alpha": torch.zeros(1)}, str(tmp_path / "lora.safetensors"))
    assert "not a full Stable Diffusion checkpoint" in _error(tmp_path / "lora.safetensors")
    (tmp_path / "notes.txt").write_text("hi")
    assert "unsupported file type '.txt'" in _error(tmp_path / "notes.txt")
    (tmp_path / "junk.ckpt").write_bytes(os.urandom(256))
    assert "not a readable checkpoint" in _error(tmp_path / "junk.ckpt")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(256))
    assert "not a readable .safetensors file" in _error(tmp_path / "junk.safetensors")


def test_error_for_missing_weights(tiny_models, tiny_model_dirs, tmp_path):
    for dropped, part in (("model.diffusion_model.out.2.weight", "unet"),
                          ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "text_encoder")):
        state = to_single_file(tiny_models["sd1"])
        del state[dropped]
        save_file(state, str(tmp_path / "cut.safetensors"))
        assert f"{part} weights are missing" in _error(tmp_path / "cut.safetensors", config=tiny_model_dirs["sd1"])


def test_error_for_bad_arguments(single_files, tmp_path):
    assert "--prediction 'v'" in _error(single_files["sd1"], prediction="v")
    assert "--family 'sd3'" in _error(single_files["sd1"], family="sd3")
    assert "--config" in _error(single_files["sd1"], config=tmp_path)


def test_tiny_weights_against_shipped_full_size_config_is_a_clear_error(single_files):
    """With no config override the shipped SD1 config is used; tiny weights do not fit it."""
    message = _error(single_files["sd1"])
    assert "unet weights do not fit the sd1 architecture" in message and "configs/sd1" in message


# --- never execute pickled code ---------------------------------------------------------------

class Payload:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_malicious_pickle_in_ckpt_creates_nothing(tiny_models, tiny_model_dirs, tmp_path):
    marker_open, marker_system = tmp_path / "pwned-open", tmp_path / "pwned-system"
    path = save_single_file(tiny_models["sd1"], tmp_path / "evil.ckpt", extra={
        "a": Payload(open, str(marker_open), "w"),
        "b": Payload(os.system, f"touch {marker_system}"),
    })
    c = load_model(path, config=tiny_model_dirs["sd1"])
    assert_same_weights(tiny_models["sd1"], c)
    assert not marker_open.exists() and not marker_system.exists()
    loaded = safe_torch_load(path)
    assert type(loaded["a"]).__name__ == "Inert_io_open"  # pickle names builtins.open as io.open
    assert type(loaded["b"]).__name__ == "Inert_posix_system"
    assert not marker_open.exists() and not marker_system.exists()


def test_raw_malicious_pickle_creates_nothing(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps(Payload(open, str(marker), "w")))
    assert "not a readable checkpoint" in _error(tmp_path / "evil.ckpt")
    (tmp_path / "evil2.ckpt").write_bytes(pickle.dumps({"state_dict": Payload(open, str(marker), "w")}))
    assert "not a readable checkpoint" in _error(tmp_path / "evil2.ckpt")
    assert not marker.exists()


# --- never the network ------------------------------------------------------------------------

def test_loading_never_touches_the_network(monkeypatch, single_files, tiny_model_dirs, tiny_models):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert_same_weights(tiny_models["sdxl"], load_model(single_files["sdxl"], config=tiny_model_dirs["sdxl"]))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert_same_weights(tiny_models["sd2"], load_model(tiny_model_dirs["sd2"]))
    # The shipped-config path reads only local files: the failure is a weights mismatch, not a download.
    assert "do not fit" in _error(single_files["sd2"])


# --- shipped configs --------------------------------------------------------------------------

def test_shipped_configs_reproduce_published_architectures():
    """Parameter counts of the released models (built on the meta device: no memory, no weights)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    unets = {"sd1": 859_520_964, "sd2": 865_910_724, "sd2-v": 865_910_724, "sdxl": 2_567_463_684}
    texts = {"sd1": 123_060_480, "sd2": 340_387_840, "sd2-v": 340_387_840, "sdxl": 123_060_480}
    with init_empty_weights():
        for name in unets:
            folder = CONFIGS / name
            assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))) \
                == unets[name]
            assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))) == 83_653_863
            assert count(CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))) == texts[name]
        big_g = CLIPTextConfig.from_pretrained(CONFIGS / "sdxl" / "text_encoder_2")
        assert count(CLIPTextModelWithProjection(big_g)) == 694_659_840


def test_shipped_config_folders_hold_only_configs_that_agree_with_the_family():
    from tistudio.models.family import get_family

    for name, family, prediction in (("sd1", "sd1", "epsilon"), ("sd2", "sd2", "epsilon"),
                                     ("sd2-v", "sd2", "v_prediction"), ("sdxl", "sdxl", "epsilon")):
        folder = CONFIGS / name
        assert not list(folder.rglob("vocab.json")) and not list(folder.rglob("*.safetensors"))
        index = json.loads((folder / "model_index.json").read_text())
        for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
            assert (part in index) == (folder / part / "config.json").is_file()
        sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        assert sched["prediction_type"] == prediction
        for i, enc in enumerate(get_family(family).encoders):
            tok = json.loads((folder / ("tokenizer" if i == 0 else "tokenizer_2") / "tokenizer_config.json")
                             .read_text())
            assert tok["pad_token"] == enc.pad_token


@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_original_key_layout_converts_onto_shipped_architectures(family):
    """Without allocating a byte: real-size models on the meta device, written in the original layout
    by our helper, converted back by diffusers' single-file mapping, give exactly the model's keys and
    shapes (covers SDXL's [1, 2, 10] transformer depths, which the slow test can't afford here)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)
    from ldm_layout import clip_l_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = shipped_config(family, "epsilon")
    with init_empty_weights():
        unet_cfg, vae_cfg = (UNet2DConditionModel.load_config(folder / "unet"),
                             AutoencoderKL.load_config(folder / "vae"))
        unet, vae = UNet2DConditionModel.from_config(unet_cfg), AutoencoderKL.from_config(vae_cfg)
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        big_g = (CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
                 if family == "sdxl" else None)

    def check(model, converted):
        expected = model.state_dict()
        converted = {k.removeprefix("text_model.") if not hasattr(model, "text_model") else k: v
                     for k, v in converted.items() if not k.endswith("position_ids")}
        assert converted.keys() == expected.keys()
        assert all(converted[k].shape == expected[k].shape for k in expected)

    check(unet, convert_ldm_unet_checkpoint(unet_to_ldm(unet.state_dict(), unet_cfg), unet_cfg))
    check(vae, convert_ldm_vae_checkpoint(vae_to_ldm(vae.state_dict(), vae_cfg), vae_cfg))
    if family == "sd2":
        check(text, convert_open_clip_checkpoint(text, open_clip_to_ldm(text.state_dict(), "cond_stage_model.model.",
                                                                        1024)))
    else:
        prefix = "cond_stage_model.transformer." if family == "sd1" else "conditioner.embedders.0.transformer."
        check(text, convert_ldm_clip_checkpoint(clip_l_to_ldm(text.state_dict(), prefix)))
    if big_g is not None:
        prefix = "conditioner.embedders.1.model."
        check(big_g, convert_open_clip_checkpoint(big_g, open_clip_to_ldm(big_g.state_dict(), prefix, 1280),
                                                  prefix=prefix))


# --- full-size architectures (slow: GBs of random weights) -------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_single_file_loads_with_shipped_configs(family, tmp_path):
    """A random model of the real size, written in the original layout, loads with NO config
    override: the shipped configs and diffusers' key conversion agree with the real layout.
    fp16 keeps it to ~2.6 GB per copy for SD1/SD2; SDXL needs ~7 GB per copy (~21 GB peak)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tistudio.models.components import Components
    from tistudio.models.family import get_family

    folder = shipped_config(family, "epsilon")
    torch.manual_seed(0)

    def materialize(module):
        module = module.to_empty(device="cpu").to(torch.float16)
        for p in module.parameters():
            p.data.normal_(0, 0.02)
        return module

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))]
        if family == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
    source = Components(get_family(family), "epsilon", None, [materialize(e) for e in encoders], [],
                        materialize(unet), materialize(vae), None)
    state = to_single_file(source)
    if family == "sd2":  # real SD2 files hold all 24 OpenCLIP blocks; SD2 uses the first 23
        prefix = "cond_stage_model.model.transformer.resblocks."
        state.update({k.replace(prefix + "22.", prefix + "23."): v.clone()
                      for k, v in state.items() if k.startswith(prefix + "22.")})
    path = tmp_path / f"{family}.safetensors"
    save_file(state, str(path), metadata={"modelspec.prediction_type": "epsilon"})
    del state
    loaded = load_model(path, dtype=torch.float16)
    assert loaded.family.name == family and loaded.prediction == "epsilon"
    assert loaded.extra["config"] == str(folder)
    assert_same_weights(source, loaded)
