"""`inspect --compat`: each client's rule (embedding/compat.py) judged on real files our writers make
(and on older files other tools, or our earlier releases, made), and `convert` repairing a file a
client refuses. The A1111 verdicts are cross-checked with the independent restatement of A1111's
rules in test_formats_a1111_safe.py."""
from __future__ import annotations

import json

import pytest
import torch

from tistudio import api
from tistudio.cli.main import main
from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import load_embedding, save_embedding, save_png_embedding

from test_formats_a1111_safe import a1111_read, a1111_safe_check

WIDTHS = {"sd1": (768,), "sd2": (1024,), "sdxl": (768, 1280)}


def emb(family="sd1", name="tok", n=2):
    g = torch.Generator().manual_seed(n)
    return Embedding(name, tuple(torch.randn(n, w, generator=g) for w in WIDTHS[family]), step=40)


def verdicts(path, target=None):
    return {v.client: v for v in api.compat(path, target)}


def statuses(found):
    return {c: v.status for c, v in found.items()}


ALL_LOAD = {c: "loads" for c in ("A1111", "Forge", "ComfyUI", "kohya", "InvokeAI", "diffusers")}


@pytest.mark.parametrize("family", ["sd1", "sd2"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_our_sd1_sd2_files_load_everywhere_with_each_clients_trigger(tmp_path, family, suffix):
    path = save_embedding(emb(family), tmp_path / f"mytok{suffix}")
    found = verdicts(path)
    assert statuses(found) == ALL_LOAD
    assert {c: v.trigger for c, v in found.items()} == {
        "A1111": "mytok", "Forge": "mytok", "ComfyUI": "embedding:mytok", "kohya": "mytok (tokens mytok, mytok1…)",
        "InvokeAI": "<mytok>", "diffusers": "tok" if suffix == ".pt" else "mytok"}
    # diffusers: a .pt triggers on its stored name; the anonymous emb_params key needs token=.
    assert ("stored name" in found["diffusers"].note) == (suffix == ".pt")
    assert f"a {family} embedding" in found["InvokeAI"].note


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_our_sdxl_files_load_everywhere_and_diffusers_one_encoder_at_a_time(tmp_path, suffix):
    path = save_embedding(emb("sdxl"), tmp_path / f"xl{suffix}")
    found = verdicts(path)
    assert statuses(found) == {**ALL_LOAD, "diffusers": "partly"}
    assert "text_encoder_2" in found["diffusers"].note and "--to diffusers" in found["diffusers"].fix
    assert "sdxl" in found["InvokeAI"].note


def test_a1111_verdicts_agree_with_the_restated_rules(tmp_path):
    """compat's A1111 rule and the test oracle judge the same files the same way."""
    files = [save_embedding(emb(f), tmp_path / f"{f}.pt") for f in WIDTHS]
    files.append(save_embedding(emb(), tmp_path / "d" / "learned_embeds.bin", "diffusers"))
    old = tmp_path / "old.pt"
    torch.save({"string_to_param": {"*": torch.randn(1, 768)}, "name": "old"}, old)
    old_xl = tmp_path / "oldxl.pt"
    torch.save({"clip_l": torch.randn(1, 768), "clip_g": torch.randn(1, 1280), "name": "oldxl"}, old_xl)
    for path in [*files, old, old_xl]:
        try:
            a1111_safe_check(path)
            a1111_read(path)
            oracle = "loads"
        except (AssertionError, AttributeError):
            oracle = "refused"
        assert api.compat(path)[0].status == oracle, path


def test_a_plain_torch_save_pt_is_refused_by_a1111_and_convert_repairs_it_in_place(tmp_path, capsys):
    vectors = torch.randn(3, 768)
    path = tmp_path / "old.pt"
    torch.save({"string_to_param": {"*": vectors}, "string_to_token": {"*": 265}, "name": "old", "step": 7}, path)
    before = verdicts(path)
    assert before["A1111"].status == "refused" and ".format_version" in before["A1111"].note
    assert before["Forge"].status == "loads"  # Forge's safe.py is empty: plain torch.load
    assert before["A1111"].fix == f"tistudio convert {path} {path}"
    assert main(before["A1111"].fix.split()[1:]) == 0
    after = verdicts(path)
    assert statuses(after) == ALL_LOAD
    again = load_embedding(path)
    assert torch.equal(again.vectors[0], vectors) and again.step == 7


def test_an_older_sdxl_pt_with_strings_in_its_dict_is_refused_by_a1111_and_repaired(tmp_path):
    path = tmp_path / "xl.pt"
    e = emb("sdxl")
    torch.save({"clip_l": e.vectors[0], "clip_g": e.vectors[1], "name": "xl", "step": 5}, path)
    found = verdicts(path)
    assert found["A1111"].status == "refused"  # its zip entries, first
    assert found["Forge"].status == "refused" and "name, step (AttributeError)" in found["Forge"].note
    assert found["ComfyUI"].status == "loads"
    main(["convert", str(path), str(path)])
    assert statuses(verdicts(path)) == {**ALL_LOAD, "diffusers": "partly"} and load_embedding(path).step == 5


def test_png_embeddings_load_in_a1111_by_stored_name_and_nowhere_else(tmp_path):
    path = save_png_embedding(emb(name="tok-500"), tmp_path / "anything.png")
    found = verdicts(path)
    assert statuses(found) == {"A1111": "loads", "Forge": "loads", "ComfyUI": "refused", "kohya": "refused",
                               "InvokeAI": "refused", "diffusers": "refused"}
    assert found["A1111"].trigger == "tok-500"
    for client in ("ComfyUI", "kohya", "InvokeAI", "diffusers"):
        assert "not fixable in the image" in found[client].note
        assert found[client].fix == f"tistudio convert {path} {tmp_path / 'anything.safetensors'}"
    xl = save_png_embedding(emb("sdxl", name="xl"), tmp_path / "xl-500.png")
    assert verdicts(xl)["A1111"].trigger == "xl-500"  # tensors only in an SDXL PNG: the file stem


def test_diffusers_folder_triggers_per_client(tmp_path):
    folder = save_embedding(emb(n=1), tmp_path / "myfolder", "diffusers")
    found = verdicts(folder)
    assert statuses(found) == {"A1111": "partly", "Forge": "partly", "ComfyUI": "loads", "kohya": "refused",
                               "InvokeAI": "refused", "diffusers": "loads"}
    assert found["A1111"].trigger == "learned_embeds" and "not by the folder name" in found["A1111"].note
    assert found["ComfyUI"].trigger == "embedding:myfolder/learned_embeds"
    assert "IsADirectoryError" in found["kohya"].note
    assert "learned_embeds.bin" in found["InvokeAI"].note
    assert found["diffusers"].trigger == "tok"
    assert found["kohya"].fix == f"tistudio convert {folder} {tmp_path / 'myfolder.safetensors'}"


def test_sdxl_diffusers_folder(tmp_path):
    folder = save_embedding(emb("sdxl"), tmp_path / "xlf", "diffusers")
    found = verdicts(folder)
    assert found["A1111"].status == "refused" and "both are skipped" in found["A1111"].note
    assert found["ComfyUI"].status == "partly" and "clip_l only" in found["ComfyUI"].note
    assert found["diffusers"].status == "loads" and "two calls" in found["diffusers"].note


def test_one_vector_diffusers_file_is_1d_for_invokeai_and_refused_by_kohya(tmp_path):
    one = save_embedding(emb(n=1), tmp_path / "one" / "learned_embeds.bin", "diffusers")
    assert torch.load(one, weights_only=True)["tok"].shape == (768,)
    found = verdicts(one)
    assert found["InvokeAI"].status == "loads" and found["InvokeAI"].trigger == "<learned_embeds>"
    assert found["kohya"].status == "refused" and "1-D" in found["kohya"].note
    many = save_embedding(emb(n=3), tmp_path / "many" / "learned_embeds.bin", "diffusers")
    found = verdicts(many)
    assert found["InvokeAI"].status == "refused" and "shape[0]" in found["InvokeAI"].note
    assert found["kohya"].status == "loads"


def test_an_sd1_file_on_an_sdxl_model(tmp_path):
    found = verdicts(save_embedding(emb(), tmp_path / "tok.safetensors"), "sdxl")
    assert statuses(found) == {"A1111": "refused", "Forge": "refused", "ComfyUI": "partly", "kohya": "refused",
                               "InvokeAI": "refused", "diffusers": "refused"}
    assert "clip_l only" in found["ComfyUI"].note and "skipped" in found["A1111"].note
    assert "KeyError" in found["kohya"].note and "offered only with sd1 models" in found["InvokeAI"].note


def test_an_sdxl_file_on_an_sd1_model_depends_on_the_first_key(tmp_path):
    """kohya takes the first value: clip_l in our .pt, clip_g in a .safetensors (load_file sorts keys)."""
    pt = verdicts(save_embedding(emb("sdxl"), tmp_path / "xl.pt"), "sd1")
    st = verdicts(save_embedding(emb("sdxl"), tmp_path / "xl.safetensors"), "sd1")
    assert pt["kohya"].status == "partly" and st["kohya"].status == "refused"
    assert pt["ComfyUI"].status == st["ComfyUI"].status == "partly"  # its clip_l key, whatever the order
    assert pt["A1111"].status == "refused"


def test_invokeai_needs_a_known_width(tiny_models, tmp_path):
    path = api.create_embedding(tiny_models["sd1"], "tiny", "cat", 1, tmp_path)
    found = verdicts(path)
    assert found["InvokeAI"].status == "refused" and "768/1024/1280, not 32" in found["InvokeAI"].note
    assert found["A1111"].status == "loads"  # the tiny model's own width fits the tiny model


def test_inspect_compat_cli_text_and_json(tmp_path, capsys):
    path = save_embedding(emb(), tmp_path / "mytok.pt")
    assert main(["inspect", str(path), "--compat"]) == 0
    text = capsys.readouterr().out
    table = text[text.index("will it load?"):].splitlines()
    assert table[1].split()[:3] == ["client", "status", "trigger"]
    assert [row.split()[:3] for row in table[2:4]] == [["A1111", "loads", "mytok"], ["Forge", "loads", "mytok"]]
    assert main(["inspect", str(path), "--compat", "--on", "sdxl", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [v["client"] for v in info["compat"]] == ["A1111", "Forge", "ComfyUI", "kohya", "InvokeAI", "diffusers"]
    assert info["compat"][2] == {"client": "ComfyUI", "status": "partly", "trigger": "embedding:mytok",
                                 "note": "applied to clip_l only; the other encoder ignores it (shape mismatch "
                                         "warning)", "fix": None}
    with pytest.raises(SystemExit):  # argparse's choices
        main(["inspect", str(path), "--compat", "--on", "sd3"])
    assert "invalid choice: 'sd3'" in capsys.readouterr().err


def test_a_width_no_real_model_has_gets_no_fix_from_invokeai(tmp_path):
    """The toy model's 48-wide vectors: InvokeAI refuses them, and no conversion would help, so no
    `tistudio convert` is offered (it is for layouts a client cannot read)."""
    path = save_embedding(Embedding("toy", (torch.randn(2, 48),)), tmp_path / "toy.pt")
    invoke = verdicts(path)["InvokeAI"]
    assert invoke.status == "refused" and "not 48" in invoke.note and invoke.fix is None
