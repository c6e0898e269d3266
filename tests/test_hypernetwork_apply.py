"""Hypernetworks on the UNet: the context before to_k/to_v becomes x + mlp(x) × strength, several
chain in order, strength 0 is no hypernetwork, nothing stays on the UNet afterwards; and
`generate` applies <hypernet:name:mult> tags from the prompt."""
import numpy as np
import pytest
import torch
from PIL import Image

from tistudio import api
from tistudio.cli.main import main
from tistudio.errors import TIStudioError
from tistudio.generate.sample import GenerateOptions
from tistudio.hypernetwork import format as hn_format
from tistudio.hypernetwork.apply import _attentions, applied, attention_widths, parse_tags
from tistudio.hypernetwork.model import Structure, create


def unet_out(c, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    ctx = torch.randn(2, 77, c.widths[0], generator=gen)
    with torch.no_grad():
        return c.unet(x, torch.tensor([10, 500]), encoder_hidden_states=ctx).sample


def strong(c, seed=0, name="hn"):
    """Xavier weights: a visible change even on a tiny random UNet."""
    return create(name, attention_widths(c.unet), Structure(activation="tanh", weight_init="XavierUniform"), seed)


def test_strength_zero_equals_no_hypernetwork_and_nothing_stays_on_the_unet(tiny_models):
    c = tiny_models["sd1"]
    base = unet_out(c)
    hn = strong(c)
    with applied(c.unet, [(hn, 0.0)]):
        assert torch.equal(unet_out(c), base)
    with applied(c.unet, [(hn, 1.0)]):
        changed = unet_out(c)
    assert not torch.allclose(changed, base, atol=1e-4)
    assert torch.equal(unet_out(c), base)
    assert all(not a.to_k._forward_pre_hooks and not a.to_v._forward_pre_hooks for a in _attentions(c.unet))


def test_the_context_before_to_k_and_to_v_is_transformed_and_several_chain(tiny_models):
    c = tiny_models["sd1"]
    first, second = strong(c, 1, "a"), strong(c, 2, "b")
    first.train(False), second.train(False)
    seen = {}

    def record(key):
        def hook(module, args):
            seen.setdefault(key, []).append(args[0].detach().clone())
        return hook

    attn = next(a for a in _attentions(c.unet) if a.to_k.in_features != a.to_q.in_features)  # cross-attention
    hidden = torch.randn(1, 16, attn.to_q.in_features)
    ctx = torch.randn(1, 77, attn.to_k.in_features)
    with torch.no_grad(), applied(c.unet, [(first, 0.5), (second, 2.0)]):
        handles = [attn.to_k.register_forward_pre_hook(record("k")), attn.to_v.register_forward_pre_hook(record("v"))]
        attn(hidden, encoder_hidden_states=ctx)
        for h in handles:
            h.remove()
    w = ctx.shape[-1]
    with torch.no_grad():
        for side, key in ((0, "k"), (1, "v")):
            expected = second.layers[w][side](first.layers[w][side](ctx, 0.5), 2.0)
            assert torch.allclose(seen[key][0], expected, atol=1e-6)
        assert not torch.allclose(seen["k"][0], seen["v"][0])  # separate key and value networks


def test_prompt_tags_are_parsed_and_removed():
    assert parse_tags("a cat <hypernet:anime:0.7>, on grass <hypernet:ink>") == \
        ("a cat , on grass", [("anime", 0.7), ("ink", 1.0)])
    assert parse_tags("no tags here") == ("no tags here", [])
    with pytest.raises(TIStudioError, match="the strength must be a number"):
        parse_tags("x <hypernet:anime:lots>")


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_applies_hypernet_tags_and_strength_zero_is_none(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    hn_format.save(strong(c), tmp_path / "hns" / "sub" / "hn.pt")  # found recursively, by file stem
    opts = dict(steps=3, width=64, height=64, seed=3)
    plain = api.generate(c, GenerateOptions(prompt="a red square", **opts), out_dir=tmp_path / "plain")[0]
    zero = api.generate(c, GenerateOptions(prompt="a red square <hypernet:hn:0>", **opts), out_dir=tmp_path / "zero",
                        hypernetworks_dir=tmp_path / "hns")[0]
    full = api.generate(c, GenerateOptions(prompt="a red square <hypernet:hn:1>", **opts), out_dir=tmp_path / "one",
                        hypernetworks_dir=tmp_path / "hns")[0]
    assert np.array_equal(_pixels(plain), _pixels(zero))
    assert not np.array_equal(_pixels(plain), _pixels(full))
    # The tag is removed from what is encoded but kept in the PNG's parameters, as A1111 keeps it.
    assert Image.open(full).info["parameters"].startswith("a red square <hypernet:hn:1>")
    assert unet_out(c).shape == (2, 4, 8, 8) and all(not a.to_k._forward_pre_hooks for a in _attentions(c.unet))


def test_generate_names_a_missing_hypernetwork_and_the_folder_flag(tiny_model_dirs, tmp_path, capsys):
    model = str(tiny_model_dirs["sd1"])
    (tmp_path / "hns").mkdir()
    rc = main(["generate", "--model", model, "--prompt", "x <hypernet:nope:1>", "--hypernetworks",
               str(tmp_path / "hns"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "<hypernet:nope>: no nope.pt under" in capsys.readouterr().err
    rc = main(["generate", "--model", model, "--prompt", "x <hypernet:nope:1>", "--out", str(tmp_path / "o")])
    assert rc == 2 and "pass --hypernetworks DIR" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_hypernetwork_for_other_widths_is_refused(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    hn_format.save(create("wide", (768, 1280), Structure()), tmp_path / "wide.pt")
    with pytest.raises(TIStudioError, match="match none of the model's attention widths"):
        api.generate(c, GenerateOptions(prompt="<hypernet:wide>", steps=1, width=64, height=64),
                     out_dir=tmp_path / "o", hypernetworks_dir=tmp_path)
