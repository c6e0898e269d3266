"""`tistudio convert` and `tistudio inspect` from the command line, and inspect's model-aware facts
(vocabulary median norm, nearest tokens) through the Python function with a tiny model. The commands
run in process (the `cli` fixture); test_cli_smoke.py runs each once in its own process."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import read_embedding, save_embedding
from tistudio.embedding.formats.describe import describe, report


def test_convert_png_to_every_format_bit_identical(cli, tmp_path):
    emb = Embedding("hero", (torch.randn(3, 768),), step=40, sd_checkpoint="0011223344", sd_checkpoint_name="m")
    save_embedding(emb, tmp_path / "hero.png")
    outputs = {"a1111-pt": "out.pt", "safetensors": "out.safetensors", "diffusers": "outdir", "a1111-png": "out.png"}
    for fmt, name in outputs.items():
        run = cli("convert", tmp_path / "hero.png", tmp_path / name, "--to", fmt, "--name", "hero2")
        assert run.returncode == 0, run.stderr
        assert "3 vectors x 768" in run.stdout
        got = read_embedding(tmp_path / name)
        assert torch.equal(got.embedding.vectors[0].view(torch.int32), emb.vectors[0].view(torch.int32))
        assert got.embedding.step == 40 and got.embedding.sd_checkpoint == "0011223344"
    assert list(load_file(str(tmp_path / "outdir" / "learned_embeds.safetensors"))) == ["hero2"]
    assert read_embedding(tmp_path / "out.png").embedding.name == "hero2"


def test_convert_infers_format_from_extension_and_reports_bad_input(cli, tmp_path):
    save_embedding(Embedding("a", (torch.randn(1, 32),)), tmp_path / "a.pt")
    assert cli("convert", tmp_path / "a.pt", tmp_path / "b.safetensors").returncode == 0
    assert set(load_file(str(tmp_path / "b.safetensors"))) == {"emb_params"}
    bad = cli("convert", tmp_path / "a.pt", tmp_path / "b.txt")
    assert bad.returncode == 2 and "cannot tell the format" in bad.stderr and bad.stderr.count("\n") == 1
    bad = cli("convert", tmp_path / "a.pt", tmp_path / "c.pt", "--name", "../evil")
    assert bad.returncode == 2 and "not allowed" in bad.stderr and not (tmp_path / "c.pt").exists()
    missing = cli("convert", tmp_path / "nope.pt", tmp_path / "c.pt")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_inspect_cli_text_and_json(cli, tmp_path):
    emb = Embedding("xl", (torch.full((2, 768), 0.5), torch.full((2, 1280), 0.25)), step=9,
                    sd_checkpoint="aaaaabbbbb", sd_checkpoint_name="sd_xl_base")
    save_embedding(emb, tmp_path / "xl.safetensors")
    run = cli("inspect", tmp_path / "xl.safetensors")
    assert run.returncode == 0, run.stderr
    assert "family:       sdxl  width 768+1280" in run.stdout and "vectors:      2" in run.stdout
    assert "base model:   sd_xl_base  [aaaaabbbbb]" in run.stdout and "step:         9" in run.stdout
    assert "norms clip_l: 13.8564 13.8564" in run.stdout    # 0.5 * sqrt(768)
    info = json.loads(cli("inspect", tmp_path / "xl.safetensors", "--json").stdout)
    assert info["norms"][1] == [round(0.25 * 1280 ** 0.5, 4)] * 2 and info["layout"] == "clip_l+clip_g"


def test_inspect_with_a_model_finds_the_tokens_the_vectors_copy(tiny_models, tmp_path):
    components = tiny_models["sd1"]
    table = components.text_encoders[0].get_input_embeddings().weight.detach()
    ids = components.tokenizer.convert_tokens_to_ids(["cat</w>", "house</w>"])
    save_embedding(Embedding("probe", (table[ids].clone() * 3,)), tmp_path / "probe.pt")  # 3x the norm
    info = describe(read_embedding(tmp_path / "probe.pt"), components, top_k=3)
    assert [row[0] for row in info["nearest"][0]] == ["cat", "house"]
    median = float(table.norm(dim=1).median())
    assert abs(info["vocab_median_norm"][0] - median) < 1e-3
    text = report(info)
    assert "nearest tokens in tiny-sd1:" in text and f"(vocabulary median {round(median, 4)})" in text
    assert "encoder #0: cat, " in text


def test_inspect_cli_with_model_folder(cli, tiny_models, tiny_model_dirs, tmp_path):
    table = tiny_models["sdxl"].text_encoders[1].get_input_embeddings().weight.detach()
    dog = tiny_models["sdxl"].tokenizer.convert_tokens_to_ids("dog</w>")
    save_embedding(Embedding("x", (torch.randn(1, 32), table[dog:dog + 1].clone())), tmp_path / "x.safetensors")
    run = cli("inspect", tmp_path / "x.safetensors", "--model", tiny_model_dirs["sdxl"], "--top", "2")
    assert run.returncode == 0, run.stderr
    assert "family:       sdxl  width" in run.stdout and "clip_g #0: dog, " in run.stdout  # the model says
    wrong = cli("inspect", tmp_path / "x.safetensors", "--model", tiny_model_dirs["sd1"])
    assert wrong.returncode == 2 and "vector width 32+64" in wrong.stderr
