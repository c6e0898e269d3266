"""Prompt encoding: injection positions, chunking past 75 tokens, several embeddings, SDXL pooling."""
import torch

from tistudio.models.triggers import CHUNK, TriggerMatcher
from tistudio.models.conditioning import PromptEncoder


def ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_real_tokenizer_vocabulary(tiny_models):
    tok = tiny_models["sd1"].tokenizer
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408


def test_trigger_matched_on_tokens_longest_first(tiny_models):
    tok = tiny_models["sd1"].tokenizer
    m = TriggerMatcher(tok, {"cat": 1, "cat style": 2})
    parsed = m.parse("a cat style painting of a cat, concatenate")
    assert parsed.count("cat style") == 1 and parsed.count("cat") == 1
    # "concatenate" tokenizes differently from "cat": never a match inside a word.
    assert parsed[-len(ids(tok, "concatenate")):] == ids(tok, "concatenate")


def test_embedding_never_split_across_chunks(tiny_models):
    tok = tiny_models["sd1"].tokenizer
    m = TriggerMatcher(tok, {"mything": 5})
    prompt = "a " * 73 + "mything"
    chunks = m.chunks(prompt)
    assert len(chunks) == 2
    assert len(chunks[0].tokens) == 73 and chunks[0].fixes == []
    assert chunks[1].fixes == [(0, "mything")] and len(chunks[1].tokens) == 5


def test_long_prompt_is_encoded_in_chunks(tiny_models):
    c = tiny_models["sd1"]
    enc = PromptEncoder(c)
    long_prompt = ", ".join(f"word{i}" for i in range(60))  # > 75 tokens
    n_tokens = len(ids(c.tokenizer, long_prompt))
    cond = enc.encode([long_prompt, "short"])
    chunks = -(-n_tokens // CHUNK)
    assert chunks >= 2
    assert cond.context.shape == (2, 77 * chunks, 32)
    # Each chunk is encoded on its own: the second chunk equals encoding its tokens alone.
    first = enc.encode([c.tokenizer.decode(ids(c.tokenizer, long_prompt)[:CHUNK])]).context
    assert torch.allclose(cond.context[0, :77], first[0], atol=1e-5)


def test_vectors_land_at_their_positions_and_only_there(tiny_models):
    c = tiny_models["sd1"]
    enc = PromptEncoder(c)
    table = c.text_encoders[0].get_input_embeddings().weight
    # An embedding whose vectors equal the token rows of "red square" must encode like those words.
    vec = table[ids(c.tokenizer, "red square")].detach().clone()
    with_emb = enc.encode(["a photo of foo"], {"foo": (vec,)}).context
    plain = enc.encode(["a photo of red square"]).context
    assert torch.allclose(with_emb, plain, atol=1e-5)


def test_several_embeddings_in_one_prompt_get_gradients(tiny_models):
    c = tiny_models["sd2"]
    enc = PromptEncoder(c)
    a = torch.randn(2, 48, requires_grad=True)
    b = torch.randn(3, 48, requires_grad=True)
    cond = enc.encode(["alpha and beta together", "only beta"], {"alpha": (a,), "beta": (b,)})
    cond.context.pow(2).mean().backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_sdxl_concatenates_encoders_and_pools_at_eos(tiny_models):
    c = tiny_models["sdxl"]
    enc = PromptEncoder(c)
    cond = enc.encode(["a photo of a cat"])
    assert cond.context.shape == (1, 77, 32 + 64) and cond.pooled.shape == (1, 64)
    row = torch.tensor([[49406, *ids(c.tokenizer, "a photo of a cat"), 49407] + [0] * 70])
    ref = c.text_encoders[1](row, output_hidden_states=True)
    assert torch.allclose(cond.pooled, ref.text_embeds, atol=1e-5)
    # An embedding in the prompt must not move the pooling position off the EOS token.
    v = (torch.randn(4, 32), torch.randn(4, 64))
    with_emb = enc.encode(["a photo of foo"], {"foo": v})
    assert with_emb.pooled.shape == (1, 64) and torch.isfinite(with_emb.pooled).all()


def test_clip_skip_two_uses_the_penultimate_layer(tiny_models):
    c = tiny_models["sd1"]
    one = PromptEncoder(c, clip_skip=1).encode(["a cat"]).context
    two = PromptEncoder(c, clip_skip=2).encode(["a cat"]).context
    row = c.tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    hidden = c.text_encoders[0](row, output_hidden_states=True).hidden_states
    assert torch.allclose(two, c.text_encoders[0].final_layer_norm(hidden[-2]), atol=1e-5)
    assert not torch.allclose(one, two)
