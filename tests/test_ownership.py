"""api.train leaves the caller's model as it found it: weights, dtypes, devices, memory formats,
train/eval modes, requires_grad, gradient checkpointing, attention processors, torch.compile and
torch's thread count; also when training fails or is interrupted."""
import pytest
import torch

from tistudio import api
from tistudio.config import DreamArtistConfig, TrainConfig
from tistudio.events import Progress
from tiny_models import build_tiny


def _modules(c):
    return {"unet": c.unet, "vae": c.vae, **{f"text_encoder{i}": te for i, te in enumerate(c.text_encoders)}}


def _tensor_facts(t):
    channels_last = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return t.dtype, t.device, t.is_contiguous(), channels_last


def _facts(c) -> dict:
    """Everything a caller could notice about its modules, with the values as copies."""
    out = {"threads": torch.get_num_threads()}
    for label, module in _modules(c).items():
        out[label] = {
            "values": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "tensors": {k: _tensor_facts(v) for k, v in module.state_dict().items()},
            "training": [m.training for m in module.modules()],
            "requires_grad": [p.requires_grad for p in module.parameters()],
            "checkpointing": [getattr(m, "gradient_checkpointing", None) for m in module.modules()],
            "compiled": "_compiled_call_impl" in vars(module),
            "processors": [type(m.processor).__name__ for m in module.modules() if hasattr(m, "processor")],
        }
    return out


def _assert_same(before: dict, after: dict) -> None:
    assert after["threads"] == before["threads"]
    for label in before:
        if label == "threads":
            continue
        b, a = before[label], after[label]
        assert a["values"].keys() == b["values"].keys(), label
        for key, value in b["values"].items():
            assert a["values"][key].dtype == value.dtype and torch.equal(a["values"][key], value), (label, key)
        for field in ("tensors", "training", "requires_grad", "checkpointing", "compiled", "processors"):
            assert a[field] == b[field], (label, field)


@pytest.fixture
def caller():
    """A model as a caller (the web UI) holds it: fp32, the UNet in train mode, a few parameters
    trainable, so a training run that forced its own modes would show."""
    c = build_tiny("sd1")
    c.unet.train()
    c.text_encoders[0].get_input_embeddings().weight.requires_grad_(True)
    return c


def _config(tmp_path, data, **kw):
    other_threads = 1 if torch.get_num_threads() > 1 else 2
    base = dict(data=str(data), steps=2, width=64, height=64, save_every=0, preview_every=0,
                log_dir=str(tmp_path / "runs"), lr="0.01", template="subject_filewords",
                output=str(tmp_path / "out" / "final.pt"), precision="bf16", gradient_checkpointing=True,
                channels_last=True, compile=True, attention="classic", threads=other_threads)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def cheap_compile(monkeypatch):
    """torch.compile's wrapper without compiling (the tiny UNet would take minutes on a CPU): the
    module still gets its _compiled_call_impl, which is what a caller would inherit."""
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **kw: fn)


@pytest.mark.parametrize("method", ["ti", "dreamartist", "hypernetwork"])
def test_training_hands_the_model_back_unchanged(caller, dataset, tmp_path, cheap_compile, method):
    if method == "ti":
        kw = dict(embedding=str(api.create_embedding(caller, "tok", "cat", 1, tmp_path / "emb")))
    elif method == "dreamartist":
        pos, _ = api.create_dreamartist_pair(caller, "tok", "cat", 1, "", 1, tmp_path / "emb")
        kw = dict(embedding=str(pos), method="dreamartist",
                  dreamartist=DreamArtistConfig(reconstruction=True))  # checkpoints the VAE decoder too
    else:
        kw = dict(hypernetwork=str(api.create_hypernetwork(caller, "hn", out_dir=tmp_path / "hn")),
                  method="hypernetwork", vae_offload=True)  # the text encoders leave the device
    before = _facts(caller)
    result = api.train(_config(tmp_path, dataset, **kw), components=caller, progress=False)
    assert result.step == 2
    _assert_same(before, _facts(caller))


def test_an_interrupted_run_hands_the_model_back(caller, dataset, tmp_path, cheap_compile):
    emb = api.create_embedding(caller, "tok", "cat", 1, tmp_path / "emb")
    before = _facts(caller)

    def interrupt(event):
        if isinstance(event, Progress) and event.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train(_config(tmp_path, dataset, embedding=str(emb)), components=caller, progress=False,
                  callback=interrupt)
    _assert_same(before, _facts(caller))


def test_a_refused_run_hands_the_model_back(caller, dataset, tmp_path, cheap_compile):
    """Refused after the model was cast and moved (the template is read after that)."""
    emb = api.create_embedding(caller, "tok", "cat", 1, tmp_path / "emb")
    before = _facts(caller)
    with pytest.raises(Exception, match="nosuch"):
        api.train(_config(tmp_path, dataset, embedding=str(emb), template="nosuch"), components=caller,
                  progress=False)
    _assert_same(before, _facts(caller))
