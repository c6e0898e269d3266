"""`tistudio generate` as a user meets it: numbered files that never overwrite, --seed -1, which
embeddings a prompt used, A1111's TI hashes, one embedding saved in two formats."""
import hashlib
import json
import re

import torch
from PIL import Image

from tistudio.cli.main import main
from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import save_embedding
from tistudio.embedding.usage import prompt_usage
from tistudio.generate.files import image_paths, next_number


def _gen(model, out, *extra):
    return main(["generate", "--model", str(model), "--steps", "1", "--width", "64", "--height", "64",
                 "--out", str(out), *map(str, extra)])


def _emb(name, value=0.1, n=2):
    return Embedding(name=name, vectors=(torch.full((n, 32), value),))


def test_images_are_numbered_and_never_overwritten(tiny_model_dirs, tmp_path):
    out = tmp_path / "out"
    assert _gen(tiny_model_dirs["sd1"], out, "--prompt", "a cat", "--seed", 7, "--n", 2) == 0
    assert _gen(tiny_model_dirs["sd1"], out, "--prompt", "a dog", "--seed", 7) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000-7.png", "00001-8.png", "00002-7.png"]
    assert Image.open(out / "00000-7.png").info["parameters"].startswith("a cat\n")
    assert Image.open(out / "00002-7.png").info["parameters"].startswith("a dog\n")


def test_numbering_follows_the_highest_number_and_skips_taken_names(tmp_path):
    (tmp_path / "00041-5.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not numbered")
    assert next_number(tmp_path) == 42
    (tmp_path / "00042-9.png").write_bytes(b"x")
    assert [p.name for p in image_paths(tmp_path, [9, 10])] == ["00043-9.png", "00044-10.png"]
    assert next_number(tmp_path / "missing") == 0


def test_seed_minus_one_draws_a_random_seed_and_records_it(tiny_model_dirs, tmp_path):
    assert _gen(tiny_model_dirs["sd1"], tmp_path, "--prompt", "a cat", "--seed", -1) == 0
    (path,) = tmp_path.iterdir()
    number, seed = re.fullmatch(r"(\d{5})-(\d+)\.png", path.name).groups()
    assert number == "00000" and int(seed) >= 0
    assert f"Seed: {seed}," in Image.open(path).info["parameters"]


def test_seed_below_minus_one_is_refused(tiny_model_dirs, tmp_path, capsys):
    assert _gen(tiny_model_dirs["sd1"], tmp_path, "--prompt", "x", "--seed", -5) == 2
    assert "--seed -5: use -1 (a random seed)" in capsys.readouterr().err


def test_used_embeddings_unknown_words_and_ti_hashes(tiny_model_dirs, tmp_path, capsys):
    emb_dir = tmp_path / "emb"
    first = save_embedding(_emb("mystyle"), emb_dir / "mystyle.pt", "a1111-pt")
    second = save_embedding(_emb("grain", 0.2, 1), emb_dir / "grain.safetensors", "safetensors")
    save_embedding(_emb("unused", 0.3), emb_dir / "unused.pt", "a1111-pt")
    code = _gen(tiny_model_dirs["sd1"], tmp_path / "out", "--embeddings", emb_dir, "--prompt",
                "a castle by mystyle, <mystlye>, <nothing>", "--negative-prompt", "grain")
    assert code == 0
    out = capsys.readouterr().out
    assert "embeddings used: mystyle, grain" in out
    assert "warning: '<mystlye>' in the prompt matches no embedding; did you mean 'mystyle'?" in out
    assert "warning: '<nothing>' in the prompt matches no embedding; no embedding has that name" in out
    (png,) = (tmp_path / "out").iterdir()
    short = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (first, second)}
    fields = Image.open(png).info["parameters"].splitlines()[-1]
    # A1111 quotes a value holding ':' or ',' as a JSON string.
    expected = json.dumps(f"mystyle: {short['mystyle']}, grain: {short['grain']}")
    assert fields.endswith(f"TI hashes: {expected}"), fields


def test_a_typo_of_a_trigger_is_reported(tiny_models):
    usage = prompt_usage(tiny_models["sd1"].tokenizer, {"mystyle": 2}, "a castle, mystlye style")
    assert usage.used == ()
    assert usage.unknown == (("mystlye", "mystyle"),)
    assert prompt_usage(tiny_models["sd1"].tokenizer, {"mystyle": 2}, "by mystyle").lines() == \
        ["embeddings used: mystyle"]


def test_pt_and_safetensors_with_equal_vectors_are_one_embedding(tiny_model_dirs, tmp_path, capsys):
    emb_dir = tmp_path / "emb"
    save_embedding(_emb("mystyle"), emb_dir / "mystyle.pt", "a1111-pt")
    save_embedding(_emb("mystyle"), emb_dir / "mystyle.safetensors", "safetensors")
    save_embedding(_emb("other", 0.1), emb_dir / "other.pt", "a1111-pt")
    save_embedding(_emb("other", 0.5), emb_dir / "sub" / "other.pt", "a1111-pt")
    assert _gen(tiny_model_dirs["sd1"], tmp_path / "out", "--embeddings", emb_dir, "--prompt", "mystyle") == 0
    out = capsys.readouterr().out
    assert "'mystyle' is used by" not in out
    assert f"warning: trigger 'other' is used by 2 files; using {emb_dir / 'other.pt'}" in out


def test_out_that_is_a_file_is_one_line_before_any_model_load(tmp_path, capsys):
    target = tmp_path / "picture.png"
    target.write_bytes(b"keep me")
    code = main(["generate", "--model", str(tmp_path / "no-model"), "--prompt", "x", "--out", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: --out {target}: is a file; give a folder")
    assert target.read_bytes() == b"keep me"


def test_scan_lists_equal_copies_apart_from_duplicates(tmp_path):
    from tistudio.embedding.formats.scan import scan_embeddings

    save_embedding(_emb("mystyle"), tmp_path / "mystyle.pt", "a1111-pt")
    save_embedding(_emb("mystyle"), tmp_path / "mystyle.safetensors", "safetensors")
    save_embedding(_emb("MyStyle", 0.1, 3), tmp_path / "more" / "MyStyle.pt", "a1111-pt")  # other shape
    result = scan_embeddings(tmp_path)
    assert list(result.embeddings) == ["mystyle"]
    assert result.copies == {"mystyle": [tmp_path / "mystyle.safetensors"]}
    assert result.duplicates == {"mystyle": [tmp_path / "mystyle.pt", tmp_path / "more" / "MyStyle.pt"]}


def test_batched_images_are_the_images_drawn_one_at_a_time(tiny_models, tmp_path):
    """One pipeline call per batch, a generator per image: image i (seed 7 + i) is the same drawn alone
    or in a batch (up to float rounding), with the same names and seeds; euler_a also draws noise at
    every step, from that image's own generator."""
    import numpy as np

    from tistudio import api
    from tistudio.generate.sample import GenerateOptions

    c = tiny_models["sd1"]
    opts = dict(prompt="a cat", steps=3, width=64, height=64, seed=7, n=3)
    batched = api.generate(c, GenerateOptions(**opts, batch_size=3), out_dir=tmp_path / "batched")
    split = api.generate(c, GenerateOptions(**opts, batch_size=2), out_dir=tmp_path / "split")
    alone = [api.generate(c, GenerateOptions(**{**opts, "seed": 7 + i, "n": 1}), out_dir=tmp_path / f"alone{i}")[0]
             for i in range(3)]
    assert [p.name for p in batched] == [p.name for p in split] == ["00000-7.png", "00001-8.png", "00002-9.png"]
    pixels = [[np.asarray(Image.open(p), dtype=int) for p in paths] for paths in (batched, split, alone)]
    for i in range(3):
        assert np.abs(pixels[0][i] - pixels[2][i]).max() <= 2 and np.abs(pixels[1][i] - pixels[2][i]).max() <= 2
        assert Image.open(batched[i]).info["parameters"] == Image.open(alone[i]).info["parameters"]
    assert not np.array_equal(pixels[0][0], pixels[0][1])  # each image its own noise


def test_batch_size_below_one_is_refused(tiny_model_dirs, tmp_path, capsys):
    assert _gen(tiny_model_dirs["sd1"], tmp_path, "--prompt", "x", "--batch-size", 0) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
