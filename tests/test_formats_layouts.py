"""Every layout in docs/formats.md is read by content, and every writer writes the exact layout its
consumers expect."""
from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import load_embedding, read_embedding, save_embedding, save_png_embedding
from tistudio.embedding.formats import png_pixels
from tistudio.embedding.formats.a1111_optim import checksum, load_optim, save_optim
from tistudio.embedding.formats.scan import scan_embeddings
from tistudio.errors import TIStudioError


def sd1(n=3, width=768, name="thing", seed=0):
    g = torch.Generator().manual_seed(seed)
    return Embedding(name, (torch.randn(n, width, generator=g),), step=120, sd_checkpoint="0123456789",
                     sd_checkpoint_name="base-model")


def sdxl(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Embedding("xlthing", (torch.randn(n, 768, generator=g), torch.randn(n, 1280, generator=g)), step=7)


def same(a: Embedding, b: Embedding) -> bool:
    return len(a.vectors) == len(b.vectors) and all(
        torch.equal(x.view(torch.int32), y.view(torch.int32)) for x, y in zip(a.vectors, b.vectors))


# ---- readers of files other tools write -------------------------------------------------------

def test_a1111_pt_dict_with_old_hash_key_and_trigger_from_stem(tmp_path):
    vec = torch.randn(4, 768)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": "other",
                "step": 499, "hash": "abcdef1234"}, tmp_path / "mytrigger.pt")
    loaded = read_embedding(tmp_path / "mytrigger.pt")
    assert loaded.embedding.name == "mytrigger" and loaded.stored_name == "other"
    assert loaded.embedding.step == 499 and loaded.embedding.sd_checkpoint == "abcdef1234"
    assert torch.equal(loaded.embedding.vectors[0], vec)


def test_parameterdict_form(tmp_path):
    vec = torch.randn(2, 768)
    pd = torch.nn.ParameterDict({"*": torch.nn.Parameter(vec.clone())})
    torch.save({"string_to_param": pd, "name": "old"}, tmp_path / "old.pt")
    emb = load_embedding(tmp_path / "old.pt")
    assert torch.equal(emb.vectors[0], vec) and not emb.vectors[0].requires_grad


@pytest.mark.parametrize("key", ["emb_params", "emp_params", "<cat-toy>"])
@pytest.mark.parametrize("container", ["safetensors", "bin"])
def test_single_tensor_layouts(tmp_path, key, container):
    vec = torch.randn(3, 1024)
    path = tmp_path / f"thing.{container}"
    if container == "safetensors":
        save_file({key: vec}, str(path), metadata={"ss_network_module": "kohya"})
    else:
        torch.save({key: vec}, path)
    loaded = read_embedding(path)
    assert torch.equal(loaded.embedding.vectors[0], vec) and loaded.embedding.name == "thing"
    assert loaded.token == (key if key.startswith("<") else None)


def test_one_dimensional_diffusers_tensor_is_one_vector(tmp_path):
    torch.save({"<tok>": torch.arange(768.0)}, tmp_path / "learned_embeds.bin")
    emb = load_embedding(tmp_path / "learned_embeds.bin")
    assert emb.vectors[0].shape == (1, 768) and emb.vectors[0][0, 5] == 5.0


def test_clip_l_clip_g_with_onetrainer_out_extras_ignored(tmp_path):
    l, g = torch.randn(2, 768), torch.randn(2, 1280)
    save_file({"clip_l": l, "clip_g": g, "clip_l_out": torch.randn(2, 768), "clip_g_out": torch.randn(2, 1280)},
              str(tmp_path / "ot.safetensors"))
    loaded = read_embedding(tmp_path / "ot.safetensors")
    assert torch.equal(loaded.embedding.vectors[0], l) and torch.equal(loaded.embedding.vectors[1], g)
    assert loaded.ignored == ["clip_g_out", "clip_l_out"]


def test_emp_params_with_out_extra(tmp_path):
    vec = torch.randn(2, 768)
    save_file({"emp_params": vec, "emp_params_out": torch.randn(2, 768)}, str(tmp_path / "x.safetensors"))
    assert torch.equal(load_embedding(tmp_path / "x.safetensors").vectors[0], vec)


def test_kohya_and_onetrainer_metadata_give_step_and_stored_name(tmp_path):
    vec = torch.randn(2, 768)
    save_file({"emb_params": vec}, str(tmp_path / "k.safetensors"),
              metadata={"ss_steps": "1500", "ss_output_name": "kohyachar", "ss_sd_model_name": "v1-5.safetensors",
                        "modelspec.title": "ignored-when-ss_output_name-exists"})
    kohya = read_embedding(tmp_path / "k.safetensors")
    assert kohya.embedding.step == 1500 and kohya.stored_name == "kohyachar"
    assert kohya.embedding.sd_checkpoint_name == "v1-5.safetensors" and kohya.embedding.name == "k"
    save_file({"emp_params": vec}, str(tmp_path / "ot.safetensors"),
              metadata={"modelspec.title": "otchar", "modelspec.architecture": "stable-diffusion-v1/textual-inversion",
                        "ot_branch": "master"})
    onetrainer = read_embedding(tmp_path / "ot.safetensors")
    assert onetrainer.stored_name == "otchar" and onetrainer.embedding.step == 0
    assert onetrainer.embedding.meta["ot_branch"] == "master"  # shown by inspect, written back on convert


def test_lora_with_one_bundled_embedding(tmp_path):
    vec = torch.randn(2, 768)
    save_file({"lora_unet_down.lora_up.weight": torch.randn(4, 4), "bundle_emb.mychar.string_to_param.*": vec},
              str(tmp_path / "lora.safetensors"))
    loaded = read_embedding(tmp_path / "lora.safetensors")
    assert torch.equal(loaded.embedding.vectors[0], vec) and loaded.stored_name == "mychar"
    save_file({"bundle_emb.a.emp_params": vec, "bundle_emb.b.emp_params": vec.clone()}, str(tmp_path / "two.safetensors"))
    with pytest.raises(TIStudioError, match="bundles 2 embeddings"):
        load_embedding(tmp_path / "two.safetensors")


def test_layout_is_sniffed_not_taken_from_extension(tmp_path):
    emb = sd1()
    save_embedding(emb, tmp_path / "a.safetensors", "safetensors")
    (tmp_path / "a.safetensors").rename(tmp_path / "a.pt")
    save_embedding(emb, tmp_path / "b.pt", "a1111-pt")
    (tmp_path / "b.pt").rename(tmp_path / "b.safetensors")
    save_png_embedding(emb, tmp_path / "c.png", None)
    (tmp_path / "c.png").rename(tmp_path / "c.bin")
    for name in ("a.pt", "b.safetensors", "c.bin"):
        assert same(load_embedding(tmp_path / name), emb)


def test_diffusers_two_file_sdxl_layout_written_by_hand(tmp_path):
    l, g = torch.randn(3, 768), torch.randn(3, 1280)
    folder = tmp_path / "mychar"
    folder.mkdir()
    save_file({"<mychar>": l}, str(folder / "learned_embeds.safetensors"))
    save_file({"<mychar>": g}, str(folder / "learned_embeds_2.safetensors"))
    for path in (folder, folder / "learned_embeds.safetensors"):
        loaded = read_embedding(path)
        assert loaded.embedding.name == "mychar" and loaded.token == "<mychar>"
        assert torch.equal(loaded.embedding.vectors[1], g)


def test_unknown_or_multi_tensor_files_are_refused(tmp_path):
    save_file({"a": torch.randn(2, 8), "b": torch.randn(2, 8)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(TIStudioError, match="no embedding found"):
        load_embedding(tmp_path / "m.safetensors")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(TIStudioError, match="not a known embedding format"):
        load_embedding(tmp_path / "t.txt")


# ---- writers -----------------------------------------------------------------------------------

def test_a1111_pt_writer_layout(tmp_path):
    emb = sd1()
    save_embedding(emb, tmp_path / "thing.pt")
    data = torch.load(tmp_path / "thing.pt", weights_only=True)
    assert set(data) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"}
    assert data["string_to_token"] == {"*": 265} and data["name"] == "thing" and data["step"] == 120
    assert data["sd_checkpoint"] == "0123456789" and torch.equal(data["string_to_param"]["*"], emb.vectors[0])


def test_safetensors_writer_layout_and_metadata(tmp_path):
    emb = sd1()
    emb.meta["init_text"] = "a photo"
    save_embedding(emb, tmp_path / "a.safetensors")
    save_embedding(sdxl(), tmp_path / "b.safetensors")
    assert set(load_file(str(tmp_path / "a.safetensors"))) == {"emb_params"}
    assert set(load_file(str(tmp_path / "b.safetensors"))) == {"clip_l", "clip_g"}
    with safe_open(str(tmp_path / "a.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert meta["name"] == "thing" and meta["step"] == "120" and meta["init_text"] == "a photo"
    again = load_embedding(tmp_path / "a.safetensors")
    assert again.meta == {"init_text": "a photo"} and again.sd_checkpoint_name == "base-model"


def test_diffusers_writer_layouts(tmp_path):
    save_embedding(sd1(), tmp_path / "one.bin", "diffusers")
    assert list(torch.load(tmp_path / "one.bin", weights_only=True)) == ["thing"]
    save_embedding(sd1(n=1), tmp_path / "single.bin", "diffusers")  # 1 vector: 1-D, as InvokeAI reads it
    assert torch.load(tmp_path / "single.bin", weights_only=True)["thing"].shape == (768,)
    save_embedding(sd1(), tmp_path / "folder", "diffusers")
    assert set(load_file(str(tmp_path / "folder" / "learned_embeds.safetensors"))) == {"thing"}
    save_embedding(sdxl(), tmp_path / "xl", "diffusers")
    assert load_file(str(tmp_path / "xl" / "learned_embeds_2.safetensors"))["xlthing"].shape == (2, 1280)
    with pytest.raises(TIStudioError, match="give a folder"):
        save_embedding(sdxl(), tmp_path / "xl.safetensors", "diffusers")


# ---- A1111 PNG ---------------------------------------------------------------------------------

def test_keystream_and_block_size_follow_the_reference():
    assert png_pixels.keystream(6).tolist() == [253, 242, 127, 44, 157, 27]
    seeds, s = [], 0
    for _ in range(5000):
        s = (1664525 * s + 1013904223) % 2**32
        seeds.append(s % 255)
    assert png_pixels.keystream(5000).tolist() == seeds
    assert png_pixels.block_size(100, 32) == 192      # 100 -> 128 -> 192 (3h = 96)
    assert png_pixels.block_size(96, 32) == 192       # padding is never zero


def _a1111_rule_decode(path):
    """A1111's documented decode steps, literally (trim, first/last black column, keystream XOR)."""
    arr = np.asarray(Image.open(path).convert("RGB"), np.uint8)
    lit = (arr > 0).all(2)
    rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
    arr = arr[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] & 0x0F
    black = np.flatnonzero(arr.sum(axis=(0, 2)) == 0)
    low, high = arr[:, :black.min()], arr[:, black.max() + 1:]
    low = low ^ (png_pixels.keystream(low.size).reshape(low.shape) & 0x0F)
    high = high ^ (png_pixels.keystream(high.size).reshape(high.shape) & 0x0F)
    raw = zlib.decompressobj().decompress(((high << 4) | low).tobytes())
    return json.loads(raw)


def test_png_embedding_text_chunk_pixels_and_caption(tmp_path):
    emb = sd1(n=2, width=96)
    preview = Image.new("RGB", (48, 64), (180, 90, 40))
    save_png_embedding(emb, tmp_path / "e.png", preview)
    image = Image.open(tmp_path / "e.png")
    data = json.loads(base64.b64decode(image.text["sd-ti-embedding"]))
    assert data["name"] == "thing" and data["step"] == 120
    assert torch.equal(torch.tensor(data["string_to_param"]["*"]["TORCHTENSOR"]), emb.vectors[0])
    # Pixel blocks either side of the 48-px preview, 1-px black separators, same height.
    width = (image.width - 48 - 2) // 2
    payload = zlib.compress(json.dumps(data).encode(), 9)  # the same JSON text we wrote
    assert image.height == 64 and width * 64 * 3 == png_pixels.block_size(len(payload), 64)
    pixels = np.asarray(image.convert("RGB"))
    assert pixels[:, width].max() == 0 and pixels[:, width + 49].max() == 0
    # The caption darkened the preview's top rows and left its middle as it was.
    middle = pixels[32, width + 1 + 24]
    assert tuple(middle) == (180, 90, 40) and pixels[63, width + 1 + 24].sum() < middle.sum()
    # An independent decoder following A1111's documented steps reads our pixels.
    decoded = _a1111_rule_decode(tmp_path / "e.png")
    assert decoded["name"] == "thing"
    assert torch.equal(torch.tensor(decoded["string_to_param"]["*"]["TORCHTENSOR"]), emb.vectors[0])


@pytest.mark.parametrize("fmt,kwargs", [("PNG", {}), ("WEBP", {"lossless": True})])
def test_png_embedding_survives_resave_without_chunk(tmp_path, fmt, kwargs):
    emb = sdxl(n=2)
    save_png_embedding(emb, tmp_path / "e.png", Image.new("RGB", (40, 40), (10, 200, 90)))
    out = tmp_path / f"resaved.{fmt.lower()}"
    Image.open(tmp_path / "e.png").save(out, fmt, **kwargs)
    if fmt == "PNG":
        assert "sd-ti-embedding" not in Image.open(out).text
    loaded = read_embedding(out)
    # SDXL PNGs hold tensors only (A1111 needs that), so a re-saved one triggers on its file stem,
    # as in A1111; the original, whose note chunk survives, still knows its stored name and step.
    assert same(loaded.embedding, emb) and loaded.embedding.name == "resaved"
    original = read_embedding(tmp_path / "e.png")
    assert original.embedding.name == "e" and original.stored_name == "xlthing" and original.embedding.step == 7


def test_png_pixels_found_with_black_border_and_black_preview(tmp_path):
    emb = sd1(n=1, width=64)
    save_png_embedding(emb, tmp_path / "e.png", Image.new("RGB", (32, 32)))  # preview mostly black
    framed = Image.new("RGB", (Image.open(tmp_path / "e.png").width + 10, 42))
    framed.paste(Image.open(tmp_path / "e.png"), (5, 5))
    framed.save(tmp_path / "framed.png")
    assert same(load_embedding(tmp_path / "framed.png"), emb)


def test_png_trigger_is_stored_name_and_garbled_chunk_falls_back_to_pixels(tmp_path):
    from PIL import PngImagePlugin

    emb = sd1(n=1, width=64, name="thing-500")
    save_png_embedding(emb, tmp_path / "any.png", None)
    assert load_embedding(tmp_path / "any.png").name == "thing-500"
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", "!!!not base64!!!")
    Image.open(tmp_path / "any.png").save(tmp_path / "bad.png", pnginfo=info)
    assert same(load_embedding(tmp_path / "bad.png"), emb)


def test_plain_and_lossy_images_are_not_embeddings(tmp_path):
    Image.new("RGB", (32, 32), (5, 5, 5)).save(tmp_path / "plain.png")
    save_png_embedding(sd1(n=1, width=64), tmp_path / "e.png", None)
    Image.open(tmp_path / "e.png").save(tmp_path / "e.jpg", quality=90)
    for name in ("plain.png", "e.jpg"):
        with pytest.raises(TIStudioError, match="holds no embedding"):
            load_embedding(tmp_path / name)


# ---- optimizer side file -----------------------------------------------------------------------

def test_optim_checksum_rule():
    # values x100 truncated: [1, -2, 0]: r = 997; r = (997*281) ^ (-1994); r = (r*281) ^ 0
    r = 0
    for v in (1, -2, 0):
        r = ((r * 281) ^ (v * 997)) & 0xFFFFFFFF
    assert checksum(torch.tensor([[0.0101, -0.025, 0.003]])) == f"{r & 0xFFFF:04x}"
    assert checksum(torch.tensor([[float("nan"), 1.0]])) == checksum(torch.tensor([[0.0, 1.0]]))


def test_optim_side_file_round_trip_and_mismatch(tmp_path):
    vec = torch.randn(2, 768)
    opt = torch.optim.AdamW([torch.nn.Parameter(vec.clone())], lr=0.01)
    opt.param_groups[0]["params"][0].grad = torch.ones(2, 768)
    opt.step()
    path = save_optim(tmp_path / "e.pt", vec, opt.state_dict())
    assert path.name == "e.pt.optim"
    assert torch.load(path, weights_only=True)["hash"] == checksum(vec)
    state = load_optim(tmp_path / "e.pt", vec)
    assert torch.equal(state["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert load_optim(tmp_path / "e.pt.optim", vec + 1.0) is None   # vectors changed: state ignored
    assert load_optim(tmp_path / "missing.pt", vec) is None
    pair = (torch.randn(1, 768), torch.randn(1, 1280))
    save_optim(tmp_path / "xl.safetensors", pair, {"state": {}, "param_groups": []})
    assert load_optim(tmp_path / "xl.safetensors", pair) == {"state": {}, "param_groups": []}


# ---- folder scan -------------------------------------------------------------------------------

def test_scan_recursive_duplicates_and_unreadable(tmp_path):
    root = tmp_path / "embeddings"
    save_embedding(sd1(name="ignored"), root / "alpha.pt")
    save_embedding(sd1(seed=1), root / "sub" / "Alpha.safetensors")
    save_embedding(sd1(seed=2), root / "sub" / "deeper" / "beta.safetensors")
    save_png_embedding(sd1(n=1, width=64, name="gamma-500"), root / "preview.png", None)
    save_embedding(sdxl(), root / "xlchar", "diffusers")
    (root / "broken.pt").write_bytes(b"PK\x03\x04 garbage")
    (root / "empty.pt").write_bytes(b"")
    (root / "notes.txt").write_text("not an embedding")
    (root / "dangling.pt").symlink_to(root / "gone.pt")
    result = scan_embeddings(root)
    assert sorted(result.embeddings) == ["alpha", "beta", "gamma-500", "xlchar"]
    assert result.duplicates == {"alpha": [root / "alpha.pt", root / "sub" / "Alpha.safetensors"]}
    assert [p.name for p, _ in result.skipped] == ["broken.pt"]
    assert result.embeddings["xlchar"].embedding.widths == (768, 1280)
