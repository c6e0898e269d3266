"""Our default outputs load unmodified in diffusers' `load_textual_inversion` on tiny pipelines, and
the token-embedding rows diffusers installs equal our vectors. (The lead adds the prompt-embedding
comparison against our own injection once conditioning lands.)"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import save_embedding


@pytest.fixture(scope="module")
def pipelines(tiny_model_dirs):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    def load(family):
        cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
        return cls.from_pretrained(str(tiny_model_dirs[family]), local_files_only=True)

    return load


def rows(pipe, token: str, n: int, encoder: int = 0) -> torch.Tensor:
    tokenizer = pipe.tokenizer if encoder == 0 else pipe.tokenizer_2
    text_encoder = pipe.text_encoder if encoder == 0 else pipe.text_encoder_2
    names = [token] + [f"{token}_{i}" for i in range(1, n)]
    ids = tokenizer.convert_tokens_to_ids(names)
    return text_encoder.get_input_embeddings().weight.detach()[ids]


def load_sdxl_folder(pipe, folder) -> None:
    """diffusers' documented SDXL route: each file of the two-file layout into its own encoder."""
    pipe.load_textual_inversion(str(folder), weight_name="learned_embeds.safetensors",
                                text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(str(folder), weight_name="learned_embeds_2.safetensors",
                                text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)


@pytest.mark.parametrize("fmt,name,token", [
    ("a1111-pt", "mytok.pt", None),                 # diffusers takes the token from the "name" key
    ("diffusers", "learned_embeds.safetensors", None),  # the key is the token
    ("diffusers", "folder", None),
    ("diffusers", "learned_embeds.bin", None),
    ("safetensors", "mytok.safetensors", "mytok"),  # emb_params: diffusers needs token=
])
@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_sd1_sd2_outputs_load_in_diffusers(pipelines, tmp_path, family, fmt, name, token):
    width = {"sd1": 32, "sd2": 48}[family]
    emb = Embedding("mytok", (torch.randn(3, width),), step=5)
    path = save_embedding(emb, tmp_path / name, fmt)
    pipe = pipelines(family)
    kwargs = {"weight_name": "learned_embeds.safetensors"} if path.is_dir() else {}
    pipe.load_textual_inversion(str(path), token=token, **kwargs)
    assert torch.equal(rows(pipe, "mytok", 3), emb.vectors[0])
    prompt = pipe.maybe_convert_prompt("a mytok photo", pipe.tokenizer)  # diffusers' multi-vector expansion
    assert pipe.tokenizer.tokenize(prompt)[1:4] == ["mytok", "mytok_1", "mytok_2"]


@pytest.mark.parametrize("name", ["learned_embeds.bin", "learned_embeds.safetensors"])
def test_one_vector_diffusers_file_loads_in_diffusers(pipelines, tmp_path, name):
    """One vector is written 1-D (as InvokeAI's probe needs); diffusers reads that form too."""
    emb = Embedding("mytok", (torch.randn(1, 32),), step=5)
    path = save_embedding(emb, tmp_path / name, "diffusers")
    pipe = pipelines("sd1")
    pipe.load_textual_inversion(str(path))
    assert torch.equal(rows(pipe, "mytok", 1), emb.vectors[0])


def test_sdxl_outputs_load_in_diffusers_one_encoder_at_a_time(pipelines, tmp_path):
    emb = Embedding("xltok", (torch.randn(2, 32), torch.randn(2, 64)), step=5)
    # One file with clip_l + clip_g (A1111/ComfyUI layout), loaded as diffusers documents for SDXL.
    pipe = pipelines("sdxl")
    state = load_file(str(save_embedding(emb, tmp_path / "xltok.safetensors")))
    pipe.load_textual_inversion(state["clip_l"], token="xltok", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="xltok", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    assert torch.equal(rows(pipe, "xltok", 2, 0), emb.vectors[0])
    assert torch.equal(rows(pipe, "xltok", 2, 1), emb.vectors[1])
    # The diffusers two-file layout, each file loaded unmodified with its own encoder.
    pipe = pipelines("sdxl")
    load_sdxl_folder(pipe, save_embedding(emb, tmp_path / "xl", "diffusers"))
    assert torch.equal(rows(pipe, "xltok", 2, 0), emb.vectors[0])
    assert torch.equal(rows(pipe, "xltok", 2, 1), emb.vectors[1])


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_diffusers_prompt_embeddings_equal_our_injection(pipelines, tiny_models, tmp_path, family):
    """The same file, loaded by diffusers and by us, conditions the UNet identically."""
    from tistudio.embedding.formats import load_embedding
    from tistudio.models.conditioning import PromptEncoder

    width = {"sd1": 32, "sd2": 48}[family]
    emb = Embedding("mytok", (torch.randn(3, width) * 0.02,), step=5)
    path = save_embedding(emb, tmp_path / "mytok.pt", "a1111-pt")
    pipe = pipelines(family)
    pipe.load_textual_inversion(str(path))
    prompt = "a watercolour of mytok on a hill"
    theirs, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    ours = PromptEncoder(tiny_models[family]).encode([prompt], {"mytok": load_embedding(path).vectors})
    assert torch.allclose(theirs, ours.context, atol=1e-5), (theirs - ours.context).abs().max()


def test_sdxl_prompt_embeddings_and_pooled_equal_our_injection(pipelines, tiny_models, tmp_path):
    from tistudio.models.conditioning import PromptEncoder

    emb = Embedding("xltok", (torch.randn(2, 32) * 0.02, torch.randn(2, 64) * 0.02), step=5)
    pipe = pipelines("sdxl")
    load_sdxl_folder(pipe, save_embedding(emb, tmp_path / "xl", "diffusers"))
    prompt = "a photo of xltok in the snow"
    theirs, _, pooled, _ = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    ours = PromptEncoder(tiny_models["sdxl"]).encode([prompt], {"xltok": emb.vectors})
    assert torch.allclose(theirs, ours.context, atol=1e-5)
    assert torch.allclose(pooled, ours.pooled, atol=1e-5)
