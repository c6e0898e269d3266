import pytest
import torch

from tistudio import api
from tistudio.embedding.create import create_embedding, init_vectors
from tistudio.embedding.formats import load_embedding
from tistudio.errors import TIStudioError


def rows(c, text, enc=0):
    ids = c.tokenizer(text, add_special_tokens=False).input_ids
    return c.text_encoders[enc].get_input_embeddings().weight[ids].detach()


def test_vector_i_copies_token_i_k_over_n(tiny_models):
    c = tiny_models["sd1"]
    r = rows(c, "red blue green")  # k = 3 tokens
    five = init_vectors(c, "red blue green", 5)[0]  # stretch: tokens 0,0,1,1,2
    assert torch.equal(five, r[[0, 0, 1, 1, 2]])
    two = init_vectors(c, "red blue green", 2)[0]   # drop extras: tokens 0, 1
    assert torch.equal(two, r[[0, 1]])


def test_empty_init_text_gives_zeros_and_sdxl_gets_both_encoders(tiny_models):
    c = tiny_models["sdxl"]
    emb = create_embedding(c, "thing", "", 3)
    assert [tuple(v.shape) for v in emb.vectors] == [(3, 32), (3, 64)]
    assert all(torch.count_nonzero(v) == 0 for v in emb.vectors)
    emb = create_embedding(c, "thing", "cat", 2)
    assert torch.equal(emb.vectors[1], rows(c, "cat cat", enc=1))


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "-x", "a" * 65, "con:"])
def test_bad_names_refused(tiny_models, name):
    with pytest.raises(TIStudioError, match="name"):
        create_embedding(tiny_models["sd1"], name)


def test_vector_count_limits(tiny_models):
    for n in (0, 76):
        with pytest.raises(TIStudioError, match="--vectors"):
            create_embedding(tiny_models["sd1"], "ok", "cat", n)


def test_existing_file_refused_unless_overwrite(tiny_models, tmp_path):
    c = tiny_models["sd2"]
    path = api.create_embedding(c, "mine", "cat", 2, tmp_path)
    assert path == tmp_path / "mine.pt"
    emb = load_embedding(path)
    assert emb.name == "mine" and emb.step == 0 and emb.widths == (48,)
    with pytest.raises(TIStudioError, match="--overwrite"):
        api.create_embedding(c, "mine", "dog", 2, tmp_path)
    api.create_embedding(c, "mine", "dog", 4, tmp_path, overwrite=True)
    assert load_embedding(path).n_vectors == 4


def test_cli_create_writes_a1111_keys(cli, tiny_model_dirs, tmp_path):
    out = cli("create", "style1", "--model", tiny_model_dirs["sd1"], "--init-text", "oil painting", "--vectors", "3",
              "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    data = torch.load(tmp_path / "style1.pt", weights_only=True)
    assert set(data) >= {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint",
                         "sd_checkpoint_name"}
    assert data["string_to_param"]["*"].shape == (3, 32) and data["step"] == 0 and data["name"] == "style1"
    again = cli("create", "style1", "--model", tiny_model_dirs["sd1"], "--out", tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().count("\n") == 0 and again.stderr.startswith("error: ")
    assert "--overwrite" in again.stderr
