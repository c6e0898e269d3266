"""DreamArtist building blocks: the CFG grammar (never evaluated), prompt pairing, the guided
prediction from one encoder call and one UNet call, reconstruction, and the EMA."""
import builtins
import math

import pytest
import torch

from tistudio.config import DreamArtistConfig, TrainConfig
from tistudio.data.prompts import Prompt, fill
from tistudio.data.templates import load_template, plain_counterpart
from tistudio.embedding.create import create_embedding
from tistudio.errors import TIStudioError
from tistudio.models.conditioning import PromptEncoder
from tistudio.models.denoiser import noisy_and_target, predict
from tistudio.cfg_schedule import parse_cfg
from tistudio.train.ema import EMA
from tistudio.train.objectives.base import MicroBatch, TrainableEmbedding
from tistudio.train.objectives.dreamartist import DreamArtistObjective

CPU = torch.device("cpu")


# --- CFG schedule ----------------------------------------------------------------------------------

def test_cfg_constant_and_dynamic_curves():
    t = torch.tensor([0, 333, 999])
    assert torch.allclose(parse_cfg("3").scale(t), torch.tensor([3.0, 3.0, 3.0]))
    assert torch.allclose(parse_cfg("2-4").scale(t), torch.tensor([2.0, 2 + 2 * 333 / 999, 4.0]))
    r = 333 / 999
    assert torch.allclose(parse_cfg("2-4:cos").scale(t),
                          torch.tensor([2.0, 2 + 2 * math.cos((r - 1) * math.pi / 2), 4.0]), atol=1e-6)
    assert torch.allclose(parse_cfg("2-4:cos2").scale(t),
                          torch.tensor([2.0, 2 + 2 * (1 - math.cos(r * math.pi / 2)), 4.0]), atol=1e-6)
    assert parse_cfg(" 5 - 3 : ln ").scale(torch.tensor([999])).item() == pytest.approx(3.0)  # falling


@pytest.mark.parametrize("text", ["2:__import__('os')", "__import__('os').system('true')", "3+1", "lo-hi",
                                  "3-5:tan", "3-5:", "-3", "0", "", "1e3", "3,5"])
def test_cfg_string_is_never_evaluated(text, monkeypatch):
    def no_eval(*args, **kwargs):
        raise AssertionError("eval/exec must never be used on --cfg")

    monkeypatch.setattr(builtins, "eval", no_eval)
    monkeypatch.setattr(builtins, "exec", no_eval)
    with pytest.raises(TIStudioError, match="--cfg") as err:
        DreamArtistConfig(cfg=text)
    assert "\n" not in str(err.value)
    assert parse_cfg("3-5:cos2").curve == "cos2"  # valid strings parse with eval forbidden


# --- the objective ---------------------------------------------------------------------------------

def pair(c, pos_vectors=2, neg_vectors=3, neg_lr_weight=1.0):
    pos = TrainableEmbedding(create_embedding(c, "tok", "cat", pos_vectors), CPU)
    neg = TrainableEmbedding(create_embedding(c, "tok-neg", "*", neg_vectors, noise_std=1e-3), CPU, neg_lr_weight)
    return pos, neg


def micro_batch(c, lines, captions=("red, square", "blue, square"), timesteps=(100, 800), weights=None):
    b = len(captions)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(b, 4, 8, 8, generator=gen)
    noise = torch.randn(b, 4, 8, 8, generator=gen)
    t = torch.tensor(timesteps)
    noisy, target = noisy_and_target(c, latents, noise, t)
    prompts = [Prompt(i % len(lines), cap, fill(lines[i % len(lines)], "tok", cap)) for i, cap in enumerate(captions)]
    return MicroBatch(prompts=prompts, timesteps=t, noisy=noisy, target=target,
                      weights=weights, indices=list(range(b)), flips=[False] * b, pixel_size=(64, 64))


def count_calls(module):
    calls = []
    handle = module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls, handle


def test_negative_prompt_is_the_same_line_with_name_neg_or_its_plain_twin(tiny_models):
    c = tiny_models["sd1"]
    lines = load_template("subject_filewords")
    pos, neg = pair(c)
    prompts = micro_batch(c, lines).prompts
    same = DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(), lines)
    assert same.negative_prompts(prompts) == ["a photo of tok-neg, red, square", "a picture of tok-neg, blue, square"]
    plain = DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(), lines,
                                 plain_counterpart("subject_filewords"))
    assert plain.negative_prompts(prompts) == ["a photo of tok-neg", "a picture of tok-neg"]


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_guided_prediction_uses_one_encode_and_one_unet_call(tiny_models, family):
    """One text-encoder pass over all 2B prompts, one UNet pass over the doubled batch, and the result
    equals eps_neg + s(t)(eps_pos - eps_neg) from separate calls (SDXL: each branch's own pooled)."""
    c = tiny_models[family]
    lines = load_template("subject_filewords")
    pos, neg = pair(c)
    obj = DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(cfg="2-6:cos"), lines)
    mb = micro_batch(c, lines)
    unet_calls, h1 = count_calls(c.unet)
    text_calls, h2 = count_calls(c.text_encoders[0])
    try:
        with torch.no_grad():
            guided = obj.guided(mb)
    finally:
        h1.remove()
        h2.remove()
    assert unet_calls == [4] and text_calls == [4]
    enc = PromptEncoder(c)
    with torch.no_grad():
        vec = obj.vectors()
        eps_pos = predict(c, mb.noisy, mb.timesteps, enc.encode([p.text for p in mb.prompts], vec), (64, 64))
        eps_neg = predict(c, mb.noisy, mb.timesteps, enc.encode(obj.negative_prompts(mb.prompts), vec), (64, 64))
    s = parse_cfg("2-6:cos").scale(mb.timesteps).view(-1, 1, 1, 1)
    assert torch.allclose(guided, eps_neg + s * (eps_pos - eps_neg), atol=1e-5)
    assert not torch.allclose(eps_pos, eps_neg)


def test_loss_reaches_both_embeddings_and_weights_mask_pixels(tiny_models):
    c = tiny_models["sd1"]
    lines = load_template("subject_filewords")
    pos, neg = pair(c)
    obj = DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(), lines)
    obj.loss(micro_batch(c, lines)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for e in obj.embeddings for p in e.params)
    zero = obj.loss(micro_batch(c, lines, weights=torch.zeros(2, 1, 8, 8)))
    assert torch.equal(zero, torch.zeros(2))


def test_reconstruction_term_respects_the_timestep_limit_and_alpha_weight(tiny_models):
    c = tiny_models["sd1"]
    lines = load_template("subject_filewords")
    pos, neg = pair(c)
    images = torch.rand(2, 3, 64, 64) * 2 - 1

    def objective(**kw):
        return DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(reconstruction=True, **kw),
                                    lines, pixels=lambda i, flip: images[i])

    mb = micro_batch(c, lines, timesteps=(100, 800))
    with torch.no_grad():
        pred = objective().guided(mb)
        full = objective().reconstruction(mb, pred)
        limited = objective(rec_max_timestep=500).reconstruction(mb, pred)
        alpha = objective(rec_timestep_weight="alpha").reconstruction(mb, pred)
    assert (full > 0).all()
    # t=800 is above the limit: not decoded. Sample 0 is decoded alone there, in a batch of 2 in
    # `full`, and oneDNN's kernels may round a batch of 1 differently: equal to float tolerance.
    assert torch.allclose(limited[0], full[0], rtol=1e-5, atol=1e-7) and limited[1] == 0
    abar = c.scheduler.alphas_cumprod[torch.tensor([100, 800])].float()
    assert torch.allclose(alpha, full * abar)
    loss = objective(rec_weight=2.0).loss(mb)
    plain = DreamArtistObjective(c, PromptEncoder(c), pos, neg, DreamArtistConfig(), lines).loss(mb)
    assert torch.allclose(loss, plain + 2.0 * full, atol=1e-5)


# --- EMA -------------------------------------------------------------------------------------------

def test_ema_is_a_true_average_and_replaces_on_request(tiny_models):
    c = tiny_models["sd1"]
    pos, neg = pair(c)
    start = [p.detach().clone() for p in pos.params]
    ema = EMA([pos, neg], {"tok": 0.9, "tok-neg": 0.5}, replace_every=2)
    with torch.no_grad():
        for p in (*pos.params, *neg.params):
            p.add_(1.0)
    ema.update([pos, neg], step=1)
    assert torch.allclose(ema.shadow["tok"][0], start[0] + 0.1)
    assert torch.allclose(pos.params[0], start[0] + 1.0)  # not replaced at step 1
    restored = EMA([pos, neg], {"tok": 0.9, "tok-neg": 0.5})
    restored.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.shadow["tok-neg"], ema.shadow["tok-neg"]))
    ema.update([pos, neg], step=2)
    assert torch.allclose(ema.shadow["tok"][0], start[0] + 0.1 * 0.9 + 0.1)
    assert torch.equal(pos.params[0], ema.shadow["tok"][0])  # replaced at step 2
    with pytest.raises(TIStudioError, match="no EMA average of 'tok'"):
        EMA([pos], {"tok": 0.9}).load_state_dict({"shadow": {}})


def test_config_rejects_bad_dreamartist_options():
    for kw, flag in ((dict(ema=1.0), "--ema"), (dict(method="lora"), "--method")):
        with pytest.raises(TIStudioError, match=flag):
            TrainConfig(**kw)
    with pytest.raises(TIStudioError, match="--vae-offload"):
        TrainConfig(method="dreamartist", vae_offload=True, dreamartist=DreamArtistConfig(reconstruction=True))
    with pytest.raises(TIStudioError, match="--rec-timestep-weight"):
        DreamArtistConfig(rec_timestep_weight="snr")
