"""The concept-fidelity benchmark (tistudio.toy.fidelity, `tistudio bench fidelity`) and, because it
needs a model that can really learn, training on the shipped toy model: an embedding must beat
its init word."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tistudio import api
from tistudio.errors import TIStudioError
from tistudio.generate.sample import GenerateOptions
from tistudio.toy.classifier import fraction_of
from tistudio.toy.concepts import parse_concept
from tistudio.toy.evaluate import init_word_rate
from tistudio.toy.fidelity import NAME, FidelityResult, FidelitySettings, format_table, prepare_out, run_fidelity
from tistudio.schedules import parse_lr
from tistudio.toy.sample import SAMPLE_SEED, draw, sample_prompts


@pytest.fixture
def bench(cli):
    return lambda *args: cli("bench", "fidelity", *args)


def test_cli_prints_the_table_and_writes_json_and_every_file(bench, tmp_path):
    out = tmp_path / "bench"
    r = bench("--concept", "teal star", "--steps", "4", "--samples", "4", "--images", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("concept"))
    assert lines[head].split() == ["concept", "method", "fidelity", "baseline", "wall", "s", "train", "s",
                                   "steps", "loss", "(avg)"]
    row = lines[head + 2].split()
    assert row[:3] == ["teal", "star", "ti"] and row[3].endswith("%") and row[7] == "4"

    [report] = json.loads((out / "fidelity.json").read_text())
    assert report["concept"] == "teal star" and report["method"] == "ti" and report["init_word"] == "star"
    assert report["steps"] == 4 and report["samples"] == 4 and report["settings"]["steps"] == 4
    assert 0 <= report["fidelity"] <= 1 and 0 <= report["baseline"] <= 1
    assert report["wall_s"] >= report["train_s"] > 0 and np.isfinite(report["final_loss"])
    # The per-concept folder holds the same report and every file it names.
    folder = out / "teal-star-ti"
    assert json.loads((folder / "fidelity.json").read_text()) == [report]
    files = report["files"]
    assert sorted(p.rsplit("/", 1)[1] for p in files["embeddings"]) == \
        [f"{NAME}.pt", f"{NAME}.pt.optim", f"{NAME}.safetensors"]
    for key in ("loss_plot", "before_after", "json"):
        assert Path(files[key]).is_file(), key
    assert len(list((folder / "data").glob("*.png"))) == 3
    # The dataset's captions never name the concept's colour.
    assert all("teal" not in p.read_text() for p in (folder / "data").glob("*.txt"))


def test_dreamartist_trains_the_pair_and_prompts_the_negative(bench, tmp_path):
    r = bench("--concept", "pink triangle", "--method", "dreamartist", "--steps", "3", "--samples", "2",
              "--images", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    [report] = json.loads((tmp_path / "fidelity.json").read_text())
    assert report["method"] == "dreamartist" and report["init_word"] == "triangle"
    names = sorted(p.rsplit("/", 1)[1] for p in report["files"]["embeddings"])
    assert f"{NAME}-neg.safetensors" in names and f"{NAME}.safetensors" in names


def test_dreamartist_options_reach_the_run_and_the_twin_negative_is_drawn(tmp_path, toy_model_dir, monkeypatch):
    """FidelitySettings carries DreamArtist's options, the EMA and clipping into the run's config, and
    negative="twin" draws each prompt against its NAME-neg twin (the DreamArtist investigation's knobs)."""
    import tomllib

    from tistudio.config import DreamArtistConfig
    from tistudio.toy import fidelity

    calls = []
    real_draw = fidelity.draw
    monkeypatch.setattr(fidelity, "draw", lambda c, prompts, negatives, *a, **k:
                        calls.append((list(prompts), list(negatives))) or real_draw(c, prompts, negatives, *a, **k))
    settings = FidelitySettings(method="dreamartist", steps=2, samples=3, images=2, negative="twin", ema=0.9,
                                clip_grad_mode="norm", dreamartist=DreamArtistConfig(cfg="1.5", neg_lr_weight=0.25))
    report = run_fidelity(parse_concept("teal star"), settings, tmp_path, model=str(toy_model_dir))
    cfg = tomllib.loads((Path(report.files["run"]) / "config.toml").read_text())
    assert (cfg["ema"], cfg["clip_grad_mode"]) == (0.9, "norm")
    assert (cfg["dreamartist"]["cfg"], cfg["dreamartist"]["neg_lr_weight"]) == ("1.5", 0.25)
    (learned, negatives), (base, base_negatives) = calls
    assert learned == sample_prompts(NAME, 3) and base == sample_prompts("star", 3)
    assert negatives == [p.replace(NAME, f"{NAME}-neg") for p in learned] and base_negatives == [""] * 3
    assert negatives != [f"{NAME}-neg"] * 3  # not the bare name of negative="name"
    with pytest.raises(TIStudioError, match="negative 'both': use name or twin"):
        FidelitySettings(negative="both")


def test_bad_concept_and_options_are_one_line_errors(tmp_path, capsys):
    from tistudio.cli.main import main

    assert main(["bench", "fidelity", "--concept", "teal blob", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --concept 'teal blob'") and len(err.strip().splitlines()) == 1
    assert main(["bench", "fidelity", "--concept", "teal star", "--steps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--steps" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_out_folder_is_reused_only_when_it_holds_an_earlier_run(tmp_path):
    foreign = tmp_path / "mine"
    (foreign / "data").mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(TIStudioError, match="--out .*not empty"):
        prepare_out(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    earlier = tmp_path / "earlier"
    (earlier / "data").mkdir(parents=True)
    (earlier / "data" / "0042.png").write_bytes(b"stale")
    (earlier / "fidelity.json").write_text("[]")
    (earlier / "extra.txt").write_text("not ours")
    prepare_out(earlier)
    assert sorted(p.name for p in earlier.iterdir()) == ["extra.txt"]  # only our own files go


def test_table_has_one_aligned_row_per_result():
    common = dict(init_word="star", wall_s=61.0, train_s=40.2, steps=2000, final_loss=0.01,
                  final_loss_avg=0.03, samples=64, settings={})
    rows = [FidelityResult("teal star", "ti", 0.953, 0.031, **common),
            FidelityResult("purple square", "dreamartist", 0.5, 0.109, **common)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "95.3%" in lines[2] and "3.1%" in lines[2] and "dreamartist" in lines[3] and "10.9%" in lines[3]


def test_sample_prompts_are_toy_template_frames_around_the_word():
    prompts = sample_prompts("star", 32)
    assert all("star" in p for p in prompts) and len(set(prompts)) > 5
    assert sample_prompts("toy-concept", 32) == [p.replace("star", "toy-concept") for p in prompts]


def test_each_image_starts_from_its_own_seed_whatever_the_batch(toy_model):
    prompts = sample_prompts("star", 3)
    one = draw(toy_model, prompts, [""] * 3, {}, steps=3, batch=1)
    all_ = draw(toy_model, prompts, [""] * 3, {}, steps=3, batch=64)
    for a, b in zip(one, all_):  # the same noise; batching changes float rounding only
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert one[0].shape == (32, 32, 3) and not np.array_equal(one[0], one[1])


def test_toy_scores_draw_what_generate_draws(toy_model, tmp_path):
    """One sampler: the benchmark's image i is `tistudio generate`'s image with DDIM, CFG 5 and seed
    SAMPLE_SEED + i, and its init-word baseline is `toy score --baselines`' rate."""
    prompts = sample_prompts("star", 2)
    drawn = draw(toy_model, prompts, [""] * 2, {}, steps=4)
    for i, prompt in enumerate(prompts):
        options = GenerateOptions(prompt=prompt, sampler="ddim", steps=4, cfg=5.0, seed=SAMPLE_SEED + i)
        (path,) = api.generate(toy_model, options, out_dir=tmp_path / str(i))
        assert path.name == f"00000-{SAMPLE_SEED + i}.png"
        alone = np.asarray(Image.open(path).convert("RGB"), dtype=int)
        assert np.abs(alone - drawn[i]).max() <= 2  # drawn alone there, beside another here: float rounding only
    star = parse_concept("teal star")
    images = draw(toy_model, sample_prompts("star", 8), [""] * 8, {}, steps=4)
    assert init_word_rate(toy_model, star, 8, sampler_steps=4) == fraction_of(images, star.colour, star.shape)


def test_textual_inversion_on_the_toy_model_beats_its_init_word(tmp_path, toy_model_dir):
    """The toy model can really learn: 400 TI steps (5 s) already draw the held-out concept far
    more often than its init word does."""
    started = time.perf_counter()
    settings = FidelitySettings(steps=400, lr="0.05", samples=16, images=6)
    report = run_fidelity(parse_concept("teal star"), settings, tmp_path, model=str(toy_model_dir))
    assert report.fidelity >= report.baseline + 0.3, report
    assert report.steps == 400 and time.perf_counter() - started < 60


def test_default_rate_decays_in_a1111_grammar_and_fits_any_length():
    """The recipe sweep's winner: min-SNR-5 on a step-grammar decay (the sweep's fractions of 1000
    steps), which a run of a few steps (the tests') still parses."""
    s = FidelitySettings()
    assert (s.recipe.loss_weighting, s.recipe.snr_gamma, s.recipe.lr_scheduler) == ("min-snr", 5.0, "step-grammar")
    assert parse_lr(s.lr, s.steps).entries == parse_lr("0.1:0.25, 0.07:0.5, 0.035:0.75, 0.01", 1000).entries
    assert parse_lr(s.lr, s.steps).entries == ((0.1, 250), (0.07, 500), (0.035, 750), (0.01, 1000))
    assert parse_lr(s.lr, 3).entries == ((0.1, 3),)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["teal star", "pink triangle"])
def test_default_settings_meet_the_targets(tmp_path, spec):
    """The benchmark's targets with the defaults: fidelity >= 90%, baseline <= 20%, <= 3 minutes."""
    report = run_fidelity(parse_concept(spec), FidelitySettings(), tmp_path)
    assert report.fidelity >= 0.9 and report.baseline <= 0.2 and report.wall_s <= 180, report


@pytest.mark.slow
@pytest.mark.e2e
def test_demo_writes_every_file_it_names(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tistudio.demo"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "demo-output"
    for rel in (f"embeddings/{NAME}.pt", f"embeddings/{NAME}.safetensors", "before_after.png",
                f"runs/{NAME}/loss.png", "fidelity.json"):
        assert (out / rel).is_file(), rel
    assert list((out / "runs" / NAME / "images").glob("*.png"))
    [report] = json.loads((out / "fidelity.json").read_text())
    assert f"fidelity: {report['fidelity']:.0%}" in r.stdout


def test_the_bench_registers_the_toy_scorer_without_the_api():
    """bench/recipe_sweep.py imports tistudio.toy.fidelity and trains with --eval-toy: the scorer
    must be registered by that import alone (a fresh process, so no other test has loaded it)."""
    code = ("import tistudio.toy.fidelity; from tistudio.train import fidelity; "
            "assert 'eval_toy' in fidelity.REGISTERED; import sys; assert 'tistudio.api' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
