"""Every pickle we write passes AUTOMATIC1111's default loader: its safe unpickler (modules/safe.py)
and its embedding reader (textual_inversion.py). Both rules are restated here from A1111's
documented behaviour, independently of `tistudio.embedding.compat` (which must agree), and every
file is also read back by torch's weights-only loader with the same vectors.

A1111's rules, as read in its source:
- a torch zip archive may hold only `<dir>/data.pkl`, `<dir>/version` and `<dir>/data/<digits>`
  (newer releases also `byteorder` and `.data/serialization_id`; we hold to the older, stricter
  list), with exactly one data.pkl;
- data.pkl may import only: collections.OrderedDict; torch._utils._rebuild_tensor_v2,
  _rebuild_parameter, _rebuild_device_tensor_from_numpy; torch.{Float,Half,Int,Long,Double,Byte,
  BFloat16}Storage and torch.float32; torch.nn.modules.container.ParameterDict; numpy's scalar,
  _reconstruct, dtype, ndarray; _codecs.encode; __builtin__.set; persistent ids start with 'storage';
- an SDXL dict (clip_l and clip_g present) has `.detach()` called on every value; a PNG triggers on
  its stored `name`, else its file stem; every other file on its file stem.
"""
from __future__ import annotations

import base64
import json
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from tistudio import api, pickle_zip
from tistudio.config import DreamArtistConfig, TrainConfig
from tistudio.embedding.embedding import Embedding
from tistudio.embedding.formats import load_embedding, save_embedding, save_png_embedding
from tistudio.embedding.formats.a1111_optim import load_optim, save_optim
from tistudio.embedding.formats.scan import scan_embeddings
from tistudio.train.run import train

ENTRY = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
ALLOWED = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"), ("torch", "FloatStorage"), ("torch", "HalfStorage"),
    ("torch", "IntStorage"), ("torch", "LongStorage"), ("torch", "DoubleStorage"), ("torch", "ByteStorage"),
    ("torch", "float32"), ("torch", "BFloat16Storage"), ("torch.nn.modules.container", "ParameterDict"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"), ("numpy", "dtype"),
    ("numpy", "ndarray"), ("_codecs", "encode"), ("__builtin__", "set"),
}
FAMILIES = {"sd1": (768,), "sd2": (1024,), "sdxl": (768, 1280)}


class _Inert:
    """Stands in for every allowed global: the check is which globals a file names, not rebuilding."""

    def __init__(self, *args, **kwargs):
        pass

    def __setitem__(self, key, value):
        pass

    def __setstate__(self, state):
        pass


class A1111Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}/{name}' is forbidden")
        return _Inert

    def persistent_load(self, saved_id):
        assert saved_id[0] == "storage"
        return _Inert()


def a1111_safe_check(path: Path) -> None:
    """Raises as A1111's check would; returns when it would go on to torch.load the file."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        for name in names:
            assert ENTRY.match(name), f"bad file inside {path}: {name}"
        pickles = [n for n in names if n.endswith("/data.pkl") and ENTRY.match(n)]
        assert len(pickles) == 1, f"{len(pickles)} data.pkl in {path}"
        with z.open(pickles[0]) as fh:
            A1111Unpickler(fh).load()


def a1111_read(path: Path) -> tuple[str, tuple[torch.Tensor, ...]]:
    """A1111's embedding reader on a file that passed the safe check: (trigger, vectors)."""
    trigger = path.stem
    if path.suffix == ".png":
        data = json.loads(base64.b64decode(Image.open(path).text["sd-ti-embedding"]))
        trigger = data.get("name", trigger)
        data = {k: (torch.tensor(v["TORCHTENSOR"]) if isinstance(v, dict) and "TORCHTENSOR" in v else v)
                for k, v in data.items()}
        if isinstance(data.get("string_to_param"), dict):
            data["string_to_param"] = {k: torch.tensor(v["TORCHTENSOR"]) for k, v in data["string_to_param"].items()}
    else:
        data = torch.load(path, map_location="cpu")  # A1111's call, after its check
    if "string_to_param" in data:
        params = data["string_to_param"]
        assert len(params) == 1, "embedding file has multiple terms in it"
        return trigger, (next(iter(params.values())).detach().float(),)
    if type(data) is dict and "clip_g" in data and "clip_l" in data:
        vec = {k: v.detach().float() for k, v in data.items()}  # a str value raises AttributeError here
        return trigger, (vec["clip_l"], vec["clip_g"])
    assert len(data) == 1, "embedding file has multiple terms in it"
    emb = next(iter(data.values()))
    return trigger, ((emb.unsqueeze(0) if emb.dim() == 1 else emb).detach().float(),)


def embedding(family: str, name: str = "tok", n: int = 3) -> Embedding:
    g = torch.Generator().manual_seed(len(name))
    return Embedding(name, tuple(torch.randn(n, w, generator=g) for w in FAMILIES[family]), step=12,
                     sd_checkpoint="0123456789", sd_checkpoint_name="base")


def assert_a1111_loads(path: Path, vectors: tuple[torch.Tensor, ...], trigger: str) -> None:
    if path.suffix != ".png":
        a1111_safe_check(path)
    got_trigger, got = a1111_read(path)
    assert got_trigger == trigger
    assert len(got) == len(vectors) and all(torch.equal(a, b) for a, b in zip(got, vectors))


# ---- the oracle refuses what A1111 refuses -----------------------------------------------------

def test_the_restated_rule_refuses_a_plain_torch_save_and_a_foreign_global(tmp_path):
    torch.save({"string_to_param": {"*": torch.zeros(1, 4)}}, tmp_path / "plain.pt")
    with pytest.raises(AssertionError, match="bad file inside .*format_version"):
        a1111_safe_check(tmp_path / "plain.pt")
    pickle_zip.save({"when": __import__("datetime").date(2024, 1, 1)}, tmp_path / "foreign.pt")
    with pytest.raises(pickle.UnpicklingError, match="datetime/date"):
        a1111_safe_check(tmp_path / "foreign.pt")


# ---- every pickle we write ---------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_pt_png_and_optim_pass_a1111_with_the_same_vectors(tmp_path, family):
    emb = embedding(family)
    pt = save_embedding(emb, tmp_path / "tok.pt")
    assert_a1111_loads(pt, emb.vectors, "tok")
    png = save_png_embedding(emb, tmp_path / "tok-12.png")
    # SD1/SD2 PNGs trigger on their stored name; SDXL ones hold tensors only (A1111 needs that) and
    # so trigger on the file stem, which our snapshots make NAME-STEP.
    assert_a1111_loads(png, emb.vectors, "tok" if family != "sdxl" else "tok-12")
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(3, 8)}},
             "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0], "foreach": None}]}
    optim = save_optim(pt, emb.vectors, state)
    a1111_safe_check(optim)
    assert torch.equal(load_optim(pt, emb.vectors)["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    # torch's weights-only loader (also memory-mapped: storages stay 64-byte aligned) reads them.
    for path in (pt, optim):
        assert torch.load(path, weights_only=True, mmap=True) is not None
    again = load_embedding(pt)
    assert again.step == 12 and again.sd_checkpoint == "0123456789" and again.sd_checkpoint_name == "base"


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_diffusers_bin_passes_a1111(tmp_path, family):
    for n in (1, 3):
        emb = embedding(family, n=n)
        path = save_embedding(emb, tmp_path / f"b{n}" / "learned_embeds.bin", "diffusers")
        assert_a1111_loads(path, emb.vectors, "learned_embeds")
        raw = torch.load(path, weights_only=True)["tok"]
        assert raw.shape == ((FAMILIES[family][0],) if n == 1 else (3, FAMILIES[family][0]))


def test_sdxl_pt_holds_tensors_only_and_keeps_its_metadata_beside_them(tmp_path):
    emb = embedding("sdxl")
    path = save_embedding(emb, tmp_path / "tok.pt")
    assert set(torch.load(path, weights_only=True)) == {"clip_l", "clip_g"}
    loaded = load_embedding(path)
    assert (loaded.step, loaded.sd_checkpoint, loaded.sd_checkpoint_name) == (12, "0123456789", "base")


def test_older_sdxl_pt_with_metadata_in_the_dict_still_reads(tmp_path):
    emb = embedding("sdxl")
    torch.save({"clip_l": emb.vectors[0], "clip_g": emb.vectors[1], "name": "tok", "step": 9,
                "sd_checkpoint": None, "sd_checkpoint_name": None}, tmp_path / "old.pt")
    old = load_embedding(tmp_path / "old.pt")
    assert old.step == 9 and all(torch.equal(a, b) for a, b in zip(old.vectors, emb.vectors))


def test_dreamartist_pair_passes_a1111(tiny_models, tmp_path):
    pos, neg = api.create_dreamartist_pair(tiny_models["sd1"], "tok", "cat", 2, "*", 3, tmp_path / "emb")
    for path, trigger in ((pos, "tok"), (neg, "tok-neg")):
        assert_a1111_loads(path, load_embedding(path).vectors, trigger)


def test_training_outputs_and_snapshots_pass_a1111_with_distinct_png_triggers(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    pos, _ = api.create_dreamartist_pair(c, "tok", "cat", 1, "*", 2, tmp_path / "emb")
    cfg = TrainConfig(embedding=str(pos), data=str(dataset), steps=4, width=64, height=64, save_every=2,
                      preview_every=2, preview_steps=1, png_embeddings=True, log_dir=str(tmp_path / "runs"),
                      lr="0.01", template="subject_filewords", output=str(tmp_path / "out" / "tok.pt"),
                      method="dreamartist", precision="fp32", gradient_checkpointing=False,
                      dreamartist=DreamArtistConfig(), plot=False)
    train(cfg, components=c, progress=False)
    run = tmp_path / "runs" / "tok"
    pickles = sorted((run / "embeddings").glob("*.pt")) + sorted((tmp_path / "out").glob("*.pt"))
    assert {p.name for p in pickles} >= {"tok-2.pt", "tok-4.pt", "tok-neg-2.pt", "tok-neg-4.pt", "tok.pt",
                                         "tok-neg.pt"}
    for path in pickles:
        assert_a1111_loads(path, load_embedding(path).vectors, path.stem)
    # Snapshot PNGs store NAME-STEP, so a folder of them gives distinct triggers in A1111 (and here).
    pngs = sorted((run / "image_embeddings").glob("*.png"))
    for path in pngs:
        assert_a1111_loads(path, load_embedding(path).vectors, path.stem)
    found = scan_embeddings(run / "image_embeddings")
    assert set(found.embeddings) == {"tok-2", "tok-4", "tok-neg-2", "tok-neg-4"} and not found.duplicates
    assert load_embedding(tmp_path / "out" / "tok.pt").name == "tok"
    assert torch.load(tmp_path / "out" / "tok.pt", weights_only=True)["name"] == "tok"  # final keeps NAME
