"""The training recipe (train/recipe.py, docs/recipe.md): what each option computes, as numbers."""
import csv
import math
import tomllib

import pytest
import torch

from tistudio import api
from tistudio.config import RecipeConfig, TrainConfig, dump_toml, from_dict
from tistudio.embedding.create import init_vectors
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError
from tistudio.models.conditioning import PromptEncoder
from tistudio.models.denoiser import per_sample_loss, per_sample_mse
from tistudio.train.health import vocabulary_medians
from tistudio.train.optimizers import build_optimizer
from tistudio.train.recipe import (Recipe, SNR_FLOOR, draw_timesteps, snr, timestep_weight,
                                   zero_terminal_scheduler)
from tistudio.train.run import train
from tistudio.schedules import ShapedSchedule, build_schedule, parse_lr

from run_config import quick_config, spied_run
from tiny_models import _scheduler


def test_losses_per_pixel_match_their_formulas():
    pred = torch.zeros(1, 1, 1, 4)
    target = torch.tensor([0.05, -0.2, 1.0, 0.0]).view(1, 1, 1, 4)
    e = target.abs().flatten()
    assert per_sample_loss(pred, target, kind="mse").item() == pytest.approx(float((e ** 2).mean()))
    assert per_sample_loss(pred, target, kind="l1").item() == pytest.approx(float(e.mean()))
    # δ = 0.1: 0.05²/(2·0.1) = 0.0125; 0.2 − 0.05 = 0.15; 1 − 0.05 = 0.95; 0
    assert per_sample_loss(pred, target, kind="huber", delta=0.1).item() == pytest.approx((0.0125 + 0.15 + 0.95) / 4)
    w = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 4)
    assert per_sample_loss(pred, target, w, kind="l1").item() == pytest.approx(0.05 / 4)
    assert torch.equal(per_sample_loss(pred, target), per_sample_mse(pred, target))


def test_snr_weights_for_epsilon_and_v_models():
    s = torch.tensor([0.5, 5.0, 20.0])
    assert timestep_weight(s, "none", 5, "epsilon").tolist() == [1.0, 1.0, 1.0]
    assert timestep_weight(s, "min-snr", 5, "epsilon").tolist() == pytest.approx([1.0, 1.0, 0.25])
    # v models: min(SNR, γ)/(SNR + 1)
    assert timestep_weight(s, "min-snr", 5, "v_prediction").tolist() == pytest.approx([0.5 / 1.5, 5 / 6, 5 / 21])
    assert timestep_weight(s, "debiased", 5, "epsilon").tolist() == pytest.approx([1 / math.sqrt(x) for x in s.tolist()])
    assert timestep_weight(s, "p2", 5, "epsilon").tolist() == pytest.approx([1 / 1.5, 1 / 6, 1 / 21])
    zero = timestep_weight(torch.tensor([0.0]), "debiased", 5, "epsilon")
    assert zero.item() == pytest.approx(1 / math.sqrt(SNR_FLOOR))  # finite under zero-terminal SNR


def test_snr_is_alpha_over_one_minus_alpha():
    sched = _scheduler("epsilon")
    t = torch.tensor([0, 500, 999])
    a = sched.alphas_cumprod[t]
    assert snr(sched.alphas_cumprod, t).tolist() == pytest.approx((a / (1 - a)).tolist())


def test_zero_terminal_snr_rescales_a_copy():
    sched = _scheduler("v_prediction")
    before = sched.alphas_cumprod.clone()
    zts = zero_terminal_scheduler(sched)
    assert float(zts.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-12)
    assert float(before[-1]) > 1e-3
    assert torch.equal(sched.alphas_cumprod, before)  # the model's own scheduler is untouched
    # The rescale keeps SNR at t=0 and makes the schedule end at pure noise.
    assert float(zts.alphas_cumprod[0]) == pytest.approx(float(before[0]), rel=1e-6)


def test_default_timestep_draw_is_the_original_randint():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(5):
        assert torch.equal(draw_timesteps(a, (0, 1000), "uniform", 1000), torch.randint(0, 1000, (1,), generator=b))


def test_timestep_range_and_logit_normal():
    gen = torch.Generator().manual_seed(0)
    ts = torch.cat([draw_timesteps(gen, (200, 300), "uniform", 1000) for _ in range(400)])
    assert int(ts.min()) >= 200 and int(ts.max()) <= 299 and len(set(ts.tolist())) > 80
    ln = torch.cat([draw_timesteps(gen, (0, 1000), "logit-normal", 1000) for _ in range(2000)]).float()
    # sigmoid(N(0,1)): median 500, and 68% within sigmoid(±1) = 269..731 (uniform would have 46%)
    assert abs(float(ln.median()) - 500) < 30
    assert 0.62 < float(((ln >= 269) & (ln < 731)).float().mean()) < 0.74
    assert int(ln.min()) >= 0 and int(ln.max()) <= 999


def _recipe(c, objective=None, **kw):
    return Recipe.build(RecipeConfig(**kw), c, objective or _Objective([]), vocabulary_medians(c), fresh=False)


class _Emb:
    def __init__(self, name, *params):
        self.name, self.params = name, tuple(torch.nn.Parameter(p.clone()) for p in params)


class _Objective:
    def __init__(self, embeddings):
        self.embeddings = embeddings


def test_noise_offset_is_one_shift_per_channel(tiny_models):
    c = tiny_models["sd1"]
    noise = torch.randn(2, 4, 8, 8)
    off = _recipe(c)
    gen = torch.Generator().manual_seed(1)
    assert off.offset(noise, gen) is noise and torch.equal(gen.get_state(), torch.Generator().manual_seed(1).get_state())
    on = _recipe(c, noise_offset=0.1)
    shifted = on.offset(noise, torch.Generator().manual_seed(1))
    expected = 0.1 * torch.randn((2, 4, 1, 1), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(shifted - noise, expected.expand_as(noise), atol=1e-6)


def test_weights_follow_the_noising_schedule(tiny_models):
    c = tiny_models["sd2"]  # v-prediction
    r = _recipe(c, loss_weighting="min-snr", snr_gamma=1.0, zero_terminal_snr=True)
    t = torch.tensor([10, 999])
    s = snr(r.noising.scheduler.alphas_cumprod, t)
    assert r.weights(t).tolist() == pytest.approx((s.clamp_min(SNR_FLOOR).clamp(max=1) / (s.clamp_min(SNR_FLOOR) + 1)).tolist())
    assert r.noising.scheduler is not c.scheduler and float(r.noising.scheduler.alphas_cumprod[-1]) < 1e-9
    a1111 = _recipe(c, loss_weighting="none")
    assert a1111.weights(t) is None and a1111.noising is c
    default = _recipe(c)  # min-SNR-5, the recipe sweep's winner (docs/toy.md)
    s = snr(c.scheduler.alphas_cumprod, t)
    assert default.weights(t).tolist() == pytest.approx(timestep_weight(s, "min-snr", 5.0, "v_prediction").tolist())


def test_init_reg_is_lambda_times_mean_squared_distance(tiny_models):
    start = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    emb = _Emb("tok", start)
    r = Recipe.build(RecipeConfig(init_reg=0.5), tiny_models["sd1"], _Objective([emb]), ())
    assert r.regularizer(_Objective([emb])).item() == 0.0
    with torch.no_grad():
        emb.params[0].add_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert r.regularizer(_Objective([emb])).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_norm_preserve_and_fixed_direction(tiny_models):
    c = tiny_models["sd1"]
    median = float(c.text_encoders[0].get_input_embeddings().weight.norm(dim=1).median())
    width = c.widths[0]
    emb = _Emb("tok", torch.randn(3, width) * 10)
    direction = emb.params[0].detach() / emb.params[0].detach().norm(dim=1, keepdim=True)
    r = Recipe.build(RecipeConfig(norm="fixed-direction"), c, _Objective([emb]), vocabulary_medians(c))  # fresh: renormalised
    assert emb.params[0].norm(dim=1).tolist() == pytest.approx([median] * 3, rel=1e-5)
    assert torch.allclose(emb.params[0] / median, direction, atol=1e-5)
    emb.params[0].grad = torch.randn(3, width)
    r.before_step(_Objective([emb]))
    radial = (emb.params[0].grad * emb.params[0].detach()).sum(dim=1)
    assert radial.abs().max() < 1e-4 * median  # only the direction may change
    with torch.no_grad():
        emb.params[0].mul_(3)
    Recipe.build(RecipeConfig(norm="preserve"), c, _Objective([]), vocabulary_medians(c)).renormalise(_Objective([emb]))
    assert emb.params[0].norm(dim=1).tolist() == pytest.approx([median] * 3, rel=1e-5)
    zero = _Emb("zero", torch.zeros(1, width))
    with pytest.raises(TIStudioError, match="--norm preserve: zero has a zero vector.*--init-text"):
        Recipe.build(RecipeConfig(norm="preserve"), c, _Objective([zero]), vocabulary_medians(c))


def test_shaped_schedules_are_pure_functions_of_the_step():
    base = parse_lr("0.01", 110)
    cos = ShapedSchedule(base, "cosine", warmup=10, total=110)
    assert cos.lr_at(0) == pytest.approx(0.01 / 11) and cos.lr_at(9) == pytest.approx(0.01 * 10 / 11)
    assert cos.lr_at(10) == pytest.approx(0.01) and cos.lr_at(60) == pytest.approx(0.005)
    assert cos.lr_at(109) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.99)))
    assert cos.lr_at(110) is None
    lin = ShapedSchedule(base, "linear", total=110)
    assert lin.lr_at(55) == pytest.approx(0.005)
    restarts = ShapedSchedule(base, "cosine-restarts", total=110, cycles=2)
    assert restarts.lr_at(0) == pytest.approx(0.01) and restarts.lr_at(55) == pytest.approx(0.01)
    assert restarts.lr_at(27) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 54 / 110)))
    assert ShapedSchedule(base, "constant", warmup=4, total=110).lr_at(50) == 0.01
    grammar = build_schedule("0.02:5, 0.01", 20, "step-grammar", warmup=3)
    assert [grammar.lr_at(s) for s in (0, 2, 3, 5)] == pytest.approx([0.005, 0.015, 0.02, 0.01])
    assert build_schedule("0.01", 20) == parse_lr("0.01", 20)  # the default stays the plain grammar


def test_a_shape_needs_a_single_rate():
    with pytest.raises(TIStudioError, match=r"--lr '0.05:10, 0.01' is a step schedule; --lr-scheduler cosine"):
        TrainConfig(lr="0.05:10, 0.01", recipe=RecipeConfig(lr_scheduler="cosine"))


@pytest.mark.parametrize("change, message", [
    (dict(loss="l2"), "--loss l2: use mse|huber|l1"),
    (dict(timestep_range="800:200"), "--timestep-range '800:200': write lo:hi"),
    (dict(timestep_range="500"), "--timestep-range '500': write lo:hi"),
    (dict(optimizer="sgd"), "--optimizer sgd: use adamw|adafactor|prodigy|lion|schedule-free|adamw8bit"),
    (dict(norm="unit"), "--norm unit: use none|preserve|fixed-direction"),
    (dict(huber_delta=0), "--huber-delta 0: use a positive number"),
    (dict(init_reg=-1), "--init-reg -1: use 0 (off) or more"),
])
def test_bad_recipe_values_name_the_option(change, message):
    with pytest.raises(TIStudioError, match="^" + message.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")):
        RecipeConfig(**change)


def _groups():
    return [{"params": [torch.nn.Parameter(torch.ones(2, 3))], "lr_weight": 1.0, "lr": 0.0}]


@pytest.mark.parametrize("name, module", [("adamw", None), ("adafactor", "transformers"),
                                          ("prodigy", "prodigyopt"), ("lion", "lion_pytorch"),
                                          ("schedule-free", "schedulefree")])
def test_each_optimizer_steps_and_round_trips_its_state(name, module):
    if module:
        pytest.importorskip(module)

    def run(opt, steps, first=0):
        p = opt.param_groups[0]["params"][0]
        for i in range(first, first + steps):
            opt.zero_grad()
            opt.param_groups[0]["lr"] = 0.01 if name != "prodigy" else 1.0
            (p * torch.arange(6.0).view(2, 3) * (i + 1)).sum().backward()
            opt.step()
        return p

    whole = run(build_optimizer(name, _groups(), torch.device("cpu")), 4)
    first = build_optimizer(name, _groups(), torch.device("cpu"))
    p = run(first, 2)
    second = build_optimizer(name, [{"params": [torch.nn.Parameter(p.detach().clone())], "lr_weight": 1.0,
                                     "lr": 0.0}], torch.device("cpu"))
    second.load_state_dict(first.state_dict())
    assert not torch.equal(whole.detach(), torch.ones(2, 3))
    assert torch.equal(run(second, 2, first=2).detach(), whole.detach())  # state_dict is the whole state


def test_missing_optimizer_package_and_8bit_on_cpu_are_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # None in sys.modules: the import fails
    with pytest.raises(TIStudioError, match=r"^--optimizer prodigy needs the prodigyopt package: pip install prodigyopt"):
        build_optimizer("prodigy", _groups(), torch.device("cpu"))
    with pytest.raises(TIStudioError, match=r"^--optimizer adamw8bit runs on a CUDA GPU only \(this run is on cpu\)"):
        build_optimizer("adamw8bit", _groups(), torch.device("cpu"))


# -- on the loop, with tiny models -------------------------------------------------------------------


MIX = RecipeConfig(loss="huber", loss_weighting="min-snr", noise_offset=0.05, timestep_sampling="logit-normal",
                   timestep_range="100:900", optimizer="adafactor", lr_scheduler="cosine", warmup_steps=2,
                   norm="fixed-direction", init_reg=0.01)


def test_the_loop_uses_the_recipe_draws_loss_and_weights(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    recipe = RecipeConfig(loss="l1", loss_weighting="p2", timestep_range="500:501", noise_offset=0.1)
    seen = []
    _, logged = spied_run(quick_config(path, dataset, tmp_path, steps=3, save_every=0, recipe=recipe), c,
                          lambda mb, per_sample: seen.append((mb.timesteps.tolist(), mb.criterion.keywords,
                                                              float(per_sample.detach().sum()))))
    assert [t for t, _, _ in seen] == [[500]] * 3
    assert all(kw == {"kind": "l1", "delta": 0.1} for _, kw, _ in seen)
    p2 = float(timestep_weight(snr(c.scheduler.alphas_cumprod, torch.tensor([500])), "p2", 5, "epsilon"))
    assert logged == pytest.approx([loss * p2 for _, _, loss in seen], rel=1e-5)


def test_the_vocabulary_median_is_measured_once_per_run(tiny_models, dataset, tmp_path, monkeypatch):
    """The lr warning, --norm, --max-norm and the health watch all measure against the same medians,
    computed once by the session, whichever module would ask (every importer of the function is spied)."""
    import sys

    from tistudio.train import health

    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    calls = []
    real = health.vocabulary_medians

    def counted(components):
        calls.append(1)
        return real(components)

    for module in [m for name, m in sys.modules.items() if name.startswith("tistudio") and m is not None]:
        if getattr(module, "vocabulary_medians", None) is real:
            monkeypatch.setattr(module, "vocabulary_medians", counted)
    said = []
    cfg = quick_config(path, dataset, tmp_path, steps=3, save_every=0, max_norm=1.5, lr="1e6",
                       recipe=RecipeConfig(norm="preserve"))
    train(cfg, components=c, progress=False, callback=lambda e: said.append(getattr(e, "text", "")))
    assert len(calls) == 1
    assert any(t.startswith("--lr 1e+06: one step can move a vector") for t in said)  # the warning used them
    median = real(c)[0]
    final = load_embedding(tmp_path / "out" / "final.pt").vectors[0]
    assert final.norm(dim=1).tolist() == pytest.approx([median], rel=1e-5)  # --norm preserve used them


def _stopped_and_resumed(cfg, c, root):
    """Train `cfg` in `root`, stopped after step 2 (Ctrl-C) and resumed with the same --steps: the
    cosine and linear shapes span --steps, so a resume reaches the same vectors only with the same one."""
    from tistudio.events import Progress, StopToken

    stop = StopToken()
    stop_at_2 = lambda e: stop.stop() if isinstance(e, Progress) and e.step == 2 else None  # noqa: E731
    assert train(cfg, components=c, progress=False, callback=stop_at_2, stop=stop).step == 2
    train(cfg, components=c, progress=False, resume=str(root / "runs" / "tok"))


def _final(root):
    return load_embedding(root / "out" / "final.pt").vectors


def test_ti_resumes_exactly_with_the_recipe(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(recipe=MIX, lr="0.01")
    train(quick_config(path, dataset, tmp_path / "a", steps=4, **kw), components=c, progress=False)
    _stopped_and_resumed(quick_config(path, dataset, tmp_path / "b", steps=4, **kw), c, tmp_path / "b")
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert torch.equal(a[0], b[0])
    median = float(c.text_encoders[0].get_input_embeddings().weight.norm(dim=1).median())
    assert a[0].norm(dim=1).tolist() == pytest.approx([median] * 2, rel=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "b" / "runs" / "tok" / "loss.csv")))
    expected = [0.01 / 3, 0.01 * 2 / 3, 0.01, 0.01 * 0.5 * (1 + math.cos(math.pi / 2))]
    assert [float(r["learn_rate"]) for r in rows] == pytest.approx(expected)
    assert not (tmp_path / "a" / "out" / "final.pt.optim").exists()  # A1111's side file holds AdamW moments only


def test_schedule_free_resumes_exactly_and_saves_its_averaged_point(tiny_models, dataset, tmp_path):
    """Schedule-free AdamW trains at y and keeps an average x: the files hold x (eval mode), and a
    resume from a save point (state.pt written in eval mode) continues exactly."""
    pytest.importorskip("schedulefree")
    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 2, tmp_path / "emb")
    kw = dict(recipe=RecipeConfig(optimizer="schedule-free"), lr="0.05")
    train(quick_config(path, dataset, tmp_path / "a", steps=4, **kw), components=c, progress=False)
    _stopped_and_resumed(quick_config(path, dataset, tmp_path / "b", steps=4, **kw), c, tmp_path / "b")
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert torch.equal(a[0], b[0])
    # The saved vectors are the average x, not the training point y the last step left behind.
    saved = torch.load(tmp_path / "a" / "runs" / "tok" / "state.pt", weights_only=False)
    z = next(iter(saved["optimizer"]["state"].values()))["z"]
    assert not torch.equal(a[0], z.cpu()) and saved["optimizer"]["param_groups"][0]["train_mode"] is False


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_dreamartist_resumes_exactly_with_the_recipe(tiny_models, dataset, tmp_path, family):
    c = tiny_models[family]
    pos, _ = api.create_dreamartist_pair(c, "tok", "cat", 1, "*", 2, tmp_path / "emb")
    recipe = RecipeConfig(loss="l1", loss_weighting="debiased", zero_terminal_snr=True, optimizer="adafactor",
                          lr_scheduler="linear", norm="preserve", init_reg=0.1)
    kw = dict(recipe=recipe, method="dreamartist", lr="0.01")
    train(quick_config(pos, dataset, tmp_path / "a", steps=4, **kw), components=c, progress=False)
    _stopped_and_resumed(quick_config(pos, dataset, tmp_path / "b", steps=4, **kw), c, tmp_path / "b")
    for name in ("final.pt", "final-neg.pt"):
        a, b = (load_embedding(root / "out" / name).vectors for root in (tmp_path / "a", tmp_path / "b"))
        # float tolerance as the other DreamArtist resume tests: oneDNN may round a doubled batch differently
        assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b)), [(x - y).abs().max() for x, y in zip(a, b)]
        medians = [float(te.get_input_embeddings().weight.norm(dim=1).median()) for te in c.text_encoders]
        for v, m in zip(a, medians):  # SDXL: each encoder's own median
            assert v.norm(dim=1).tolist() == pytest.approx([m] * v.shape[0], rel=1e-5)


def test_cli_flags_and_toml_fill_the_recipe_section(tmp_path):
    from tistudio.cli.main import build_parser
    from tistudio.cli.train import build_config
    from tistudio.config import option_name

    toml = tmp_path / "run.toml"
    toml.write_text('[recipe]\nloss = "huber"\nsnr_gamma = 2\n')
    args = build_parser().parse_args(["train", "--config", str(toml), "--loss-weighting", "min-snr",
                                      "--optimizer", "lion", "--timestep-range", "0:500", "--norm", "preserve",
                                      "--zero-terminal-snr", "--warmup-steps", "10", "--lr-scheduler", "cosine"])
    r = build_config(args).recipe
    assert (r.loss, r.snr_gamma, r.loss_weighting, r.optimizer, r.timestep_range, r.norm, r.zero_terminal_snr,
            r.warmup_steps, r.lr_scheduler) == ("huber", 2.0, "min-snr", "lion", "0:500", "preserve", True, 10,
                                                "cosine")
    assert option_name("recipe.init_reg") == "--init-reg"
    cfg = build_config(args)
    assert from_dict(TrainConfig, tomllib.loads(dump_toml(cfg))) == cfg  # config.toml keeps the section


def test_cli_bad_recipe_value_is_one_line(tmp_path, capsys):
    from tistudio.cli.main import main

    assert main(["train", "--model", "m", "--embedding", "e.pt", "--data", str(tmp_path),
                 "--timestep-range", "900:100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --timestep-range '900:100': write lo:hi with 0 <= lo < hi <= 1000, e.g. 200:800"]


# -- create --init ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_cross_init_is_the_text_encoder_output_at_the_init_words(tiny_models, family):
    c = tiny_models[family]
    ids = c.tokenizer("red cat", add_special_tokens=False).input_ids
    assert len(ids) == 2
    context = PromptEncoder(c).encode(["red cat"]).context[0].detach()
    vectors = init_vectors(c, "red cat", 3, "cross")
    start = 0
    for v, width in zip(vectors, c.widths):  # SDXL: CLIP-L's part of the context, then CLIP-G's
        own = context[:, start:start + width]
        assert v.shape == (3, width)
        assert torch.equal(v, own[[1, 1, 2]])  # vector i <- token ⌊i·2/3⌋, after BOS
        start += width
    words = init_vectors(c, "red cat", 3)
    assert not torch.allclose(vectors[0], words[0])


def test_other_inits_and_their_errors(tiny_models):
    c = tiny_models["sd1"]
    assert torch.equal(init_vectors(c, "cat", 2, "zeros")[0], torch.zeros(2, c.widths[0]))
    rnd = init_vectors(c, "", 4, "random", seed=3)[0]
    median = float(c.text_encoders[0].get_input_embeddings().weight.norm(dim=1).median())
    assert rnd.norm(dim=1).tolist() == pytest.approx([median] * 4, rel=1e-5)
    assert torch.equal(rnd, init_vectors(c, "", 4, "random", seed=3)[0])
    assert not torch.equal(rnd, init_vectors(c, "", 4, "random", seed=4)[0])
    with pytest.raises(TIStudioError, match=r"^--init cross encodes the init text: give words with --init-text"):
        init_vectors(c, "", 1, "cross")
    with pytest.raises(TIStudioError, match=r"^--init middle: use words\|cross\|zeros\|random"):
        init_vectors(c, "cat", 1, "middle")


def test_cli_create_init_cross(tiny_model_dirs, tiny_models, tmp_path, capsys):
    from tistudio.cli.main import main

    assert main(["create", "tok", "--model", str(tiny_model_dirs["sd1"]), "--init", "cross", "--init-text", "cat",
                 "--vectors", "2", "--out", str(tmp_path)]) == 0
    emb = load_embedding(tmp_path / "tok.pt")
    assert torch.allclose(emb.vectors[0], init_vectors(tiny_models["sd1"], "cat", 2, "cross")[0], atol=1e-5)
