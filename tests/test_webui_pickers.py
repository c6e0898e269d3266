"""The web UI's pickers without a browser: what is listed under the root and how it is labelled, that
nothing outside the root (a symlink out) is ever listed, that a refresh sees a new file and reads an
unchanged one no second time; plus the Runs table, Generate's embeddings list and uploads."""
from __future__ import annotations

import json
import unicodedata
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import save_embedding, save_png_embedding
from tistudio.webui import pickers
from tistudio.webui.safety import PathGuard, safe_filename, store_uploads


def _emb(name: str, vectors: int = 2, width: int = 768, step: int = 0) -> Embedding:
    return Embedding(name, (torch.randn(vectors, width),), step=step)


def _picture(path, size=(24, 16), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def root(tmp_path, tiny_model_dirs):
    """A root as people fill it: a model folder (a copy of the tiny sd1 one, by symlink), embeddings
    in three formats, a dataset with captions, a run folder, and plain pictures that are no embedding."""
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    (root / "models" / "tiny").symlink_to(tiny_model_dirs["sd1"])  # a link to a model out of the root
    save_embedding(_emb("tok", 2, step=120), root / "embeddings" / "tok.pt")
    save_embedding(_emb("other", 1), root / "embeddings" / "sub" / "other.safetensors", "safetensors")
    save_png_embedding(_emb("pic", 3), root / "embeddings" / "pic.png")
    for i, size in enumerate([(24, 16), (32, 32)]):
        _picture(root / "dataset" / f"img{i}.png", size)
        (root / "dataset" / f"img{i}.txt").write_text("a red square")
    _picture(root / "dataset" / "img2.png")
    run = root / "runs" / "tok"
    save_embedding(_emb("tok", 2, step=5), run / "embeddings" / "tok-5.pt")
    _picture(run / "images" / "tok-5.png")
    (run / "config.toml").write_text("steps = 5\n")
    return root


def _values(listing, kind):
    return [e.value for e in listing.of(kind)]


def test_the_root_is_listed_by_kind_with_labels(root, tiny_model_dirs):
    # The model folder is a link out of the root: it must not be listed; a real copy is.
    import shutil

    shutil.copytree(tiny_model_dirs["sd1"], root / "models" / "copy")
    listing = pickers.scan(PathGuard.at(root))
    assert _values(listing, "model") == ["models/copy"]
    [model] = listing.of("model")
    assert model.label == "models/copy · sd1 · epsilon · diffusers folder" and model.family == "sd1"
    assert _values(listing, "embedding") == ["embeddings/pic.png", "embeddings/tok.pt",
                                             "embeddings/sub/other.safetensors"]
    tok = next(e for e in listing.of("embedding") if e.trigger == "tok")
    assert tok.label == "embeddings/tok.pt · tok · sd1 · 2 vectors · step 120"
    assert (tok.family, tok.vectors, tok.step) == ("sd1", 2, 120)
    assert tok.summary == ("loads in: A1111 ✓ tok · Forge ✓ tok · ComfyUI ✓ embedding:tok · kohya ✓ "
                           "tok (tokens tok, tok1…) · InvokeAI ✓ <tok> · diffusers ✓ tok")
    pic = next(e for e in listing.of("embedding") if e.value.endswith(".png"))
    assert pic.trigger == "pic" and "3 vectors" in pic.label and "ComfyUI ✗" in pic.summary
    # The dataset: the doctor's counts and sizes; the run folder's previews and snapshots are not listed.
    [data] = listing.of("dataset")
    assert data.value == "dataset"
    assert data.label.startswith("dataset · 3 images · 24x16 to 32x32 · 2 captioned · usable, ")
    assert data.summary == data.label.removeprefix("dataset · ")
    assert not any(e.value.startswith("runs") for e in listing.entries)


def test_single_file_models_are_identified_from_their_header(root, tmp_path):
    """A .safetensors in the original layout is a model (a tiny file whose keys fake an SD2
    checkpoint: the keys decide, never the size or name); a LoRA is neither model nor embedding."""
    from safetensors.torch import save_file

    keys = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
            "first_stage_model.decoder.conv_in.weight": torch.zeros(1),
            "cond_stage_model.model.token_embedding.weight": torch.zeros(1)}
    (root / "checkpoints").mkdir()
    save_file(keys, root / "checkpoints" / "sd2-like.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 320),
               "lora_unet_down_blocks_0.lora_up.weight": torch.zeros(320, 4),
               "lora_unet_down_blocks_0.alpha": torch.tensor(4.0)}, root / "checkpoints" / "style-lora.safetensors")
    listing = pickers.scan(PathGuard.at(root))
    assert _values(listing, "model") == ["checkpoints/sd2-like.safetensors"]
    assert listing.of("model")[0].label == "checkpoints/sd2-like.safetensors · sd2 · v · single file"
    assert "checkpoints/style-lora.safetensors" not in [e.value for e in listing.entries]


def test_real_single_file_models_of_each_kind_are_listed_with_their_family(root, tiny_models, monkeypatch):
    """Tiny models written in the original layout: an SDXL .safetensors, an SD1 zip .ckpt, and a
    pre-zip pickle .ckpt, which would have to be read whole to be identified and so is listed
    without its family. None of them is built."""
    from ldm_layout import save_single_file

    (root / "checkpoints").mkdir()
    save_single_file(tiny_models["sdxl"], root / "checkpoints" / "xl.safetensors")
    save_single_file(tiny_models["sd1"], root / "checkpoints" / "one.ckpt")
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, root / "checkpoints" / "old.ckpt",
               _use_new_zipfile_serialization=False)
    loads = []
    import tistudio.models.load as load

    monkeypatch.setattr(load.ModelSource, "load", lambda *a, **k: loads.append(a) or None)
    models = {e.value: e.label for e in pickers.scan(PathGuard.at(root)).of("model")}
    assert models == {"checkpoints/old.ckpt": "checkpoints/old.ckpt · family known once loaded",
                      "checkpoints/one.ckpt": "checkpoints/one.ckpt · sd1 · epsilon · single file",
                      "checkpoints/xl.safetensors": "checkpoints/xl.safetensors · sdxl · epsilon · single file"}
    assert loads == []  # identified, never built


def test_links_out_of_the_root_are_never_listed(root, tmp_path):
    outside = tmp_path / "outside"
    save_embedding(_emb("secret"), outside / "secret.pt")
    _picture(outside / "photos" / "a.png")
    (root / "embeddings" / "secret.pt").symlink_to(outside / "secret.pt")
    (root / "elsewhere").symlink_to(outside)
    (root / "loop").symlink_to(root)  # a link back into the root is followed once, not forever
    inside = root / "embeddings" / "alias.pt"
    inside.symlink_to(root / "embeddings" / "tok.pt")
    listing = pickers.scan(PathGuard.at(root))
    values = [e.value for e in listing.entries]
    assert not any("secret" in v or "elsewhere" in v or "photos" in v for v in values), values
    assert "embeddings/alias.pt" in values  # a link that stays inside is fine
    with pytest.raises(Exception, match="outside the web UI root"):
        pickers.scan(PathGuard.at(root), "elsewhere")
    with pytest.raises(Exception, match="outside the web UI root"):
        pickers.scan(PathGuard.at(root), "../outside")


def test_a_refresh_lists_a_new_file_and_rereads_only_what_changed(root, monkeypatch):
    guard = PathGuard.at(root)
    assert "embeddings/new.pt" not in _values(pickers.scan(guard), "embedding")
    reads = []
    real = pickers._embedding
    monkeypatch.setattr(pickers, "_embedding", lambda g, p: reads.append(p.name) or real(g, p))
    save_embedding(_emb("new", 4), root / "embeddings" / "new.pt")
    listing = pickers.scan(guard)
    assert "embeddings/new.pt" in _values(listing, "embedding") and reads == ["new.pt"]
    assert pickers.scan(guard).entries == listing.entries and reads == ["new.pt"]  # nothing changed
    save_embedding(_emb("new", 1, step=9), root / "embeddings" / "new.pt")  # the file changes
    entry = next(e for e in pickers.scan(guard).of("embedding") if e.trigger == "new")
    assert (entry.vectors, entry.step) == (1, 9) and reads == ["new.pt", "new.pt"]
    _picture(root / "dataset" / "img3.png")
    assert pickers.scan(guard).of("dataset")[0].label.startswith("dataset · 4 images")


def test_choices_keep_a_typed_or_given_value_and_details_follow_the_pick(root):
    listing = pickers.scan(PathGuard.at(root))
    entries = listing.of("embedding")
    pairs = pickers.choices(entries, ("/models/given", "embeddings/tok.pt"))
    assert pairs[0] == ("/models/given", "/models/given") and len(pairs) == len(entries) + 1
    assert pickers.details_line(entries, " embeddings/tok.pt ").startswith("loads in: A1111 ✓ tok")
    assert pickers.details_line(entries, "typed/elsewhere.pt") == ""


def test_the_model_given_at_start_is_listed_first(root, tiny_model_dirs):
    from tistudio.webui.app import make_context

    ctx = make_context(root, str(tiny_model_dirs["sd1"]))
    [given] = pickers.listed(ctx, "model").entries
    assert given.value == str(tiny_model_dirs["sd1"].resolve()) and " · sd1 · epsilon · diffusers folder" in given.label


def test_the_pickers_of_one_page_load_share_one_walk(root, monkeypatch):
    from tistudio.webui.app import make_context

    ctx = make_context(root)
    walks = []
    real = pickers.scan
    monkeypatch.setattr(pickers, "scan", lambda guard, under=None: walks.append(guard) or real(guard, under))
    monkeypatch.setattr(pickers, "time", SimpleNamespace(monotonic=lambda: 100.0))  # one sharing period
    pickers._shared_scan.cache_clear()
    kinds = [[e.kind for e in pickers.listed(ctx, k, fresh=False).entries] for k in ("model", "embedding", "dataset")]
    assert kinds == [[], ["embedding"] * 3, ["dataset"]] and len(walks) == 1
    pickers.listed(ctx, "embedding")  # the ↻ button: a walk of its own, now
    assert len(walks) == 2


def test_a_walk_that_stops_early_says_so(root, monkeypatch):
    monkeypatch.setattr(pickers, "MAX_FOLDERS", 2)
    listing = pickers.scan(PathGuard.at(root))
    assert listing.truncated and [e.kind for e in listing.entries] == ["dataset"]  # root, then dataset/
    assert pickers.help_line(listing, "", "folder of images") == (
        "folder of images (the list stopped after 2 folders: type the path, or start the web UI with a "
        "narrower --root)")
    assert pickers.help_line(pickers.Listing(listing.entries), "dataset", None).startswith("3 images · ")


def test_generate_lists_the_embeddings_of_its_folder_and_inserts_triggers(root):
    from tistudio.webui.app import make_context
    from tistudio.webui.tab_generate import found_embeddings, insert_trigger

    ctx = make_context(root)
    save_embedding(_emb("tok", 2, step=120), root / "embeddings" / "tok.safetensors", "safetensors")
    rows = found_embeddings(ctx, "embeddings")
    assert [r[:5] for r in rows] == [["other", "sd1", 1, 0, "embeddings/sub/other.safetensors"],
                                     ["pic", "sd1", 3, 0, "embeddings/pic.png"],
                                     ["tok", "sd1", 2, 120, "embeddings/tok.pt, embeddings/tok.safetensors"]]
    assert rows[2][5].startswith("A1111 ✓ tok")
    assert found_embeddings(ctx, "missing", quiet=True) == []
    with pytest.raises(Exception, match="no such folder"):
        found_embeddings(ctx, "missing")
    assert insert_trigger("", "tok") == "tok"
    assert insert_trigger("a photo of ", "tok") == "a photo of tok"
    assert insert_trigger("tok2, red,", "tok") == "tok2, red, tok"
    assert insert_trigger("a photo of tok, red", "tok") == "a photo of tok, red"


def test_runs_without_validation_have_no_best_step_and_show_the_moving_average(tmp_path):
    from tistudio.webui import runs

    run = tmp_path / "runs" / "plain"
    run.mkdir(parents=True)
    (run / "config.toml").write_text("steps = 3\n")
    (run / "loss.csv").write_text("step,epoch,epoch_step,loss,learn_rate,loss_ema,val_loss\n"
                                  "1,0,0,0.1,0.01,0.1,\n2,0,1,0.9,0.01,0.18,\n3,0,2,0.5,0.01,0.212,\n")
    (run / "summary.json").write_text(json.dumps({"best_step": None, "reason": "completed"}))
    [info] = runs.list_runs(tmp_path / "runs")
    assert (info.final_loss, info.best_step, info.best_loss) == (0.212, None, None)
    assert info.row() == ["plain", 3, "0.2120", "—", "—", "completed"]
    assert runs.RUN_COLUMNS[2] == "final loss (moving average)"
    # A loss.csv from before loss_ema existed: the raw loss, as `tistudio runs` falls back to it.
    (run / "loss.csv").write_text("step,epoch,epoch_step,loss,learn_rate\n1,0,0,0.4,0.01\n")
    assert runs.list_runs(tmp_path / "runs")[0].final_loss == 0.4


@pytest.mark.parametrize("name, stored", [
    ("日本語 の 写真.png", "日本語 の 写真.png"),
    (unicodedata.normalize("NFD", "café.png"), "café.png"),   # a Mac's decomposed accent, stored composed
    ("../../etc/passwd.png", "passwd.png"),
    ("a\\b\\..\\c.png", "c.png"),
    ("..", "upload"),
    (".hidden.png", "hidden.png"),
    ("\u202egnp.exe.png", "_gnp.exe.png"),                   # a right-to-left override cannot disguise it
    ("a:b*?.png", "a_b__.png"),
])
def test_upload_names_keep_their_letters_and_never_make_a_path(name, stored):
    assert safe_filename(name) == stored


def test_a_long_unicode_name_fits_a_file_system_and_keeps_its_extension():
    name = safe_filename("字" * 300 + ".png")
    assert name.endswith(".png") and len(name.encode("utf-8")) <= 255 and name.startswith("字" * 50)


def test_captions_are_stored_beside_their_images_only(tmp_path):
    src, dest = tmp_path / "in", tmp_path / "dest"
    _picture(src / "写真.png")
    (src / "写真.txt").write_text("a red square, 日本")
    (src / "orphan.txt").write_text("no image")
    (src / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    _picture(src / "latin1.png")
    dest.mkdir()
    _picture(dest / "earlier.jpg")  # uploaded before: its caption may come now
    (src / "earlier.txt").write_text("an earlier picture")
    stored, rejected = store_uploads([src / n for n in ("写真.png", "写真.txt", "orphan.txt", "latin1.png",
                                                        "latin1.txt", "earlier.txt")], dest)
    assert sorted(p.name for p in stored) == ["earlier.txt", "latin1.png", "写真.png", "写真.txt"]
    assert (dest / "写真.txt").read_text(encoding="utf-8") == "a red square, 日本"
    assert rejected == ["orphan.txt: no image named orphan beside it; upload the image too",
                        "latin1.txt: not UTF-8 text; re-save it as UTF-8"]
    assert not (dest / "orphan.txt").exists() and not (dest / "latin1.txt").exists()


def test_generate_reads_no_embedding_through_a_link_out_of_the_root(root, tmp_path):
    """The Generate tab loads the embeddings of a folder under the root: a link in that folder to a
    file (or folder) elsewhere on the disk is skipped with a note, never read."""
    from tistudio.api import scan_for_model

    outside = tmp_path / "outside"
    save_embedding(_emb("secret"), outside / "secret.pt")
    save_embedding(_emb("hidden"), outside / "more" / "hidden.pt")
    (root / "embeddings" / "secret.pt").symlink_to(outside / "secret.pt")
    (root / "embeddings" / "more").symlink_to(outside / "more")
    notes = []
    found = scan_for_model(root / "embeddings", (768,), notes.append, within=root)
    assert sorted(found) == ["other", "pic", "tok"]
    assert sum("outside" in n and "not read" in n for n in notes) == 2, notes
    assert {"secret", "hidden"} <= set(scan_for_model(root / "embeddings", (768,), lambda _: None))


def test_picking_an_entry_shows_its_summary_without_walking_the_root_again(root, monkeypatch):
    gr = pytest.importorskip("gradio")
    from tistudio.webui.app import make_context

    ctx = make_context(root)
    walks = []
    real = pickers.scan
    monkeypatch.setattr(pickers, "scan", lambda guard, under=None: walks.append(guard) or real(guard, under))
    with gr.Blocks() as page:
        box = pickers.dropdown(ctx, "embedding", "Embedding file", info="the file to train")
    assert len(walks) == 1
    [picked] = [f.fn for f in page.fns.values() if (box._id, "change") in f.targets]
    assert picked("embeddings/tok.pt")["info"].startswith("loads in: A1111 ✓ tok") and len(walks) == 1
    assert picked("typed/elsewhere.pt")["info"] == "the file to train" and len(walks) == 1
