"""Hypernetwork files: the layout A1111 documents (restated here by hand, not through our writer),
old keys, A1111's defaults for missing keys, ComfyUI's loader (restated), the .optim side file,
and one-line errors for bad structures."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from tistudio.cli.main import main
from tistudio.errors import TIStudioError
from tistudio.hypernetwork import format as hn_format
from tistudio.hypernetwork.model import Structure, create
from tistudio.hypernetwork.options import COMFY_ACTIVATIONS

W = 16  # a context width; real ones are 768/1024 (text) and 320/640/1280 (image features)


def _lin(out_f, in_f, gen):
    return torch.randn(out_f, in_f, generator=gen) * 0.1, torch.randn(out_f, generator=gen) * 0.1


def documented_file(path, gen_seed=0):
    """A file built key by key from the documented layout: layer structure 1, 2, 1 with relu, layer
    norm and dropout 0, 0.3, 0 gives the Sequential Linear(0) ReLU(1) LayerNorm(2) Dropout(3)
    Linear(4) LayerNorm(5): weights at positions 0, 2, 4, 5."""
    gen = torch.Generator().manual_seed(gen_seed)
    pair = []
    for _ in range(2):
        w0, b0 = _lin(2 * W, W, gen)
        w4, b4 = _lin(W, 2 * W, gen)
        pair.append(OrderedDict([
            ("linear.0.weight", w0), ("linear.0.bias", b0),
            ("linear.2.weight", 1 + 0.1 * torch.randn(2 * W, generator=gen)), ("linear.2.bias", torch.zeros(2 * W)),
            ("linear.4.weight", w4), ("linear.4.bias", b4),
            ("linear.5.weight", torch.ones(W)), ("linear.5.bias", 0.1 * torch.randn(W, generator=gen)),
        ]))
    data = {W: tuple(pair), "step": 7, "name": "documented", "layer_structure": [1.0, 2.0, 1.0],
            "activation_func": "relu", "is_layer_norm": True, "weight_initialization": "Normal",
            "sd_checkpoint": "0123456789", "sd_checkpoint_name": "base", "activate_output": False,
            "use_dropout": True, "dropout_structure": [0.0, 0.3, 0.0], "last_layer_dropout": True,
            "optional_info": None}
    torch.save(data, path)
    return data


def by_hand(sd, x, strength):
    """The documented transform at inference (dropout off): x + mlp(x) * strength."""
    h = F.layer_norm(F.relu(F.linear(x, sd["linear.0.weight"], sd["linear.0.bias"])), (2 * W,),
                     sd["linear.2.weight"], sd["linear.2.bias"])
    h = F.layer_norm(F.linear(h, sd["linear.4.weight"], sd["linear.4.bias"]), (W,),
                     sd["linear.5.weight"], sd["linear.5.bias"])
    return x + h * strength


def comfy_like(sd_file: dict, dim: int, side: int):
    """Our restatement of ComfyUI's HypernetworkLoader: walk the `.weight` keys in file order, a
    Linear each (in/out from the weight's shape), the activation unless on the last Linear (or
    activate_output), a LayerNorm from the next key when is_layer_norm; no dropout at inference.
    Returns None where ComfyUI refuses the file."""
    act = sd_file.get("activation_func", "linear")
    acts = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU,
            "elu": torch.nn.ELU, "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh,
            "sigmoid": torch.nn.Sigmoid, "softsign": torch.nn.Softsign, "mish": torch.nn.Mish}
    if act not in acts:
        return None
    weights = sd_file[dim][side]
    names = [k[:-len(".weight")] for k in weights if k.endswith(".weight")]
    layers, i = [], 0
    while i < len(names):
        w, b = weights[f"{names[i]}.weight"], weights[f"{names[i]}.bias"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.load_state_dict({"weight": w, "bias": b})
        layers.append(lin)
        if act != "linear" and (i != len(names) - 1 or sd_file.get("activate_output", False)):
            layers.append(acts[act]())
        if sd_file.get("is_layer_norm", False):
            i += 1
            ln = torch.nn.LayerNorm(weights[f"{names[i]}.weight"].shape[0])
            ln.load_state_dict({"weight": weights[f"{names[i]}.weight"], "bias": weights[f"{names[i]}.bias"]})
            layers.append(ln)
        i += 1
    return torch.nn.Sequential(*layers)


def test_a_file_written_from_the_documented_format_loads_and_transforms_as_documented(tmp_path):
    data = documented_file(tmp_path / "documented.pt")
    hn = hn_format.load(tmp_path / "documented.pt")
    s = hn.structure
    assert (hn.name, hn.step, hn.widths, hn.sd_checkpoint) == ("documented", 7, (W,), "0123456789")
    assert (s.layer_structure, s.activation, s.layer_norm, s.dropout, s.activate_output) == \
        ((1.0, 2.0, 1.0), "relu", True, (0.0, 0.3, 0.0), False)
    x = torch.randn(3, 5, W, generator=torch.Generator().manual_seed(1))
    hn.train(False)
    for side in (0, 1):
        ours = hn.layers[W][side](x, 0.6)
        assert torch.allclose(ours, by_hand(data[W][side], x, 0.6), atol=1e-6)
    # Dropout sits where the structure says: after the first Linear's activation and norm.
    kinds = [type(m).__name__ for m in hn.layers[W][0].linear]
    assert kinds == ["Linear", "ReLU", "LayerNorm", "Dropout", "Linear", "LayerNorm"]


def test_our_files_have_the_documented_keys_shapes_and_fields(tmp_path):
    hn = create("mine", (W, 32), Structure(layer_structure=(1, 2, 1), activation="relu", layer_norm=True,
                                           dropout=(0, 0.3, 0)))
    path = hn_format.save(hn, tmp_path / "mine.pt")
    data = torch.load(path, weights_only=True)  # ComfyUI's safe_load and A1111's allow-list read it so
    assert [k for k in data if isinstance(k, int)] == [W, 32]
    assert {k for k in data if isinstance(k, str)} == {
        "step", "name", "layer_structure", "activation_func", "is_layer_norm", "weight_initialization",
        "sd_checkpoint", "sd_checkpoint_name", "activate_output", "use_dropout", "dropout_structure",
        "last_layer_dropout", "optional_info"}
    for w in (W, 32):
        assert isinstance(data[w], tuple) and len(data[w]) == 2
        for sd in data[w]:
            assert {k: tuple(v.shape) for k, v in sd.items()} == {
                "linear.0.weight": (2 * w, w), "linear.0.bias": (2 * w,),
                "linear.2.weight": (2 * w,), "linear.2.bias": (2 * w,),
                "linear.4.weight": (w, 2 * w), "linear.4.bias": (w,),
                "linear.5.weight": (w,), "linear.5.bias": (w,)}
            assert all(v.dtype == torch.float32 for v in sd.values())
    assert data["layer_structure"] == [1.0, 2.0, 1.0] and data["dropout_structure"] == [0.0, 0.3, 0.0]
    assert (data["activation_func"], data["is_layer_norm"], data["use_dropout"], data["last_layer_dropout"],
            data["activate_output"], data["weight_initialization"], data["step"], data["name"]) == \
        ("relu", True, True, True, False, "Normal", 0, "mine")


def test_a1111_initialisation_and_defaults(tmp_path):
    hn = create("d", (W,), Structure())  # A1111's defaults: 1, 2, 1, linear, Normal, no norm, no dropout
    k = hn.layers[W][0].linear
    assert [type(m).__name__ for m in k] == ["Linear", "Linear"]
    weights = torch.cat([k[0].weight.flatten(), k[1].weight.flatten()])
    assert abs(weights.std().item() - 0.01) < 0.002 and abs(weights.mean().item()) < 0.002
    assert torch.count_nonzero(k[0].bias) == 0 and torch.count_nonzero(k[1].bias) == 0
    # The same seed gives the same weights; Xavier draws far larger ones than N(0, 0.01).
    again = create("d", (W,), Structure())
    assert all(torch.equal(a, b) for a, b in zip(hn.vectors, again.vectors))
    xavier = create("d", (W,), Structure(weight_init="XavierUniform"))
    assert xavier.layers[W][0].linear[0].weight.abs().max() > 0.1
    data = hn_format.to_dict(hn)
    assert data["dropout_structure"] == [0.0, 0.0, 0.0] and data["use_dropout"] is False


def test_old_linear1_linear2_keys_and_missing_fields_take_a1111s_defaults(tmp_path):
    gen = torch.Generator().manual_seed(3)
    pair = []
    for _ in range(2):
        w1, b1 = _lin(2 * W, W, gen)
        w2, b2 = _lin(W, 2 * W, gen)
        pair.append({"linear1.weight": w1, "linear1.bias": b1, "linear2.weight": w2, "linear2.bias": b2})
    torch.save({W: pair}, tmp_path / "old-style.pt")
    hn = hn_format.load(tmp_path / "old-style.pt")
    assert hn.name == "old-style" and hn.step == 0  # no name key: the file stem, as A1111 does
    assert hn.structure.layer_structure == (1.0, 2.0, 1.0) and hn.structure.activation == "linear"
    assert hn.structure.activate_output is True  # A1111's default for a missing key
    x = torch.randn(2, W)
    expected = x + F.linear(F.linear(x, pair[1]["linear1.weight"], pair[1]["linear1.bias"]),
                            pair[1]["linear2.weight"], pair[1]["linear2.bias"])
    assert torch.allclose(hn.layers[W][1].eval()(x), expected, atol=1e-6)
    # use_dropout without a dropout_structure: 0.3 before the last Linear only with last_layer_dropout,
    # and the Dropout takes position 1, so the second Linear's keys are linear.2.
    shifted = [{k.replace("linear1", "linear.0").replace("linear2", "linear.2"): v for k, v in sd.items()}
               for sd in pair]
    torch.save({W: shifted, "use_dropout": True, "last_layer_dropout": True}, tmp_path / "dropout.pt")
    assert hn_format.load(tmp_path / "dropout.pt").structure.dropout == (0.0, 0.3, 0.0)
    torch.save({W: shifted, "use_dropout": True, "last_layer_dropout": False}, tmp_path / "none.pt")
    with pytest.raises(TIStudioError, match="width 16 does not match its layer structure"):
        hn_format.load(tmp_path / "none.pt")  # no dropout there: linear.2 has no place


@pytest.mark.parametrize("activation, layer_norm, activate_output", [
    ("linear", True, False), ("relu", False, False), ("swish", False, True), ("mish", True, True),
    ("tanh", False, False), ("elu", True, True)])
def test_comfyuis_loader_reads_our_files_to_the_same_transform(tmp_path, activation, layer_norm, activate_output):
    hn = create("c", (W,), Structure(layer_structure=(1, 1.5, 2, 1), activation=activation, layer_norm=layer_norm,
                                     dropout=(0, 0.2, 0.1, 0), activate_output=activate_output), seed=5)
    data = torch.load(hn_format.save(hn, tmp_path / "c.pt"), weights_only=True)
    x = torch.randn(4, W, generator=torch.Generator().manual_seed(2))
    hn.train(False)
    for side in (0, 1):
        comfy = comfy_like(data, W, side).eval()
        assert torch.allclose(x + comfy(x) * 0.7, hn.layers[W][side](x, 0.7), atol=1e-6)
    assert dict((c, v) for c, v, _ in hn_format.compatibility(hn)) == {"A1111": "loads", "ComfyUI": "loads"}


def test_comfyui_puts_the_activation_after_the_last_layer_when_layer_norm_is_on(tmp_path):
    """ComfyUI's loader counts LayerNorm keys when it looks for the last layer: with layer norm, an
    activation and no activate_output it computes another transform. The report says so."""
    hn = create("q", (W,), Structure(activation="relu", layer_norm=True), seed=1)
    data = torch.load(hn_format.save(hn, tmp_path / "q.pt"), weights_only=True)
    comfy = comfy_like(data, W, 0).eval()
    assert [type(m).__name__ for m in comfy] == ["Linear", "ReLU", "LayerNorm", "Linear", "ReLU", "LayerNorm"]
    rows = {c: (v, why) for c, v, why in hn_format.compatibility(hn)}
    assert rows["ComfyUI"][0] == "differs" and "--activate-output" in rows["ComfyUI"][1]


def test_activations_comfyui_lacks_are_reported(tmp_path):
    hn = create("g", (W,), Structure(activation="gelu"))
    data = torch.load(hn_format.save(hn, tmp_path / "g.pt"), weights_only=True)
    assert comfy_like(data, W, 0) is None
    rows = {c: (v, why) for c, v, why in hn_format.compatibility(hn)}
    assert rows["ComfyUI"][0] == "refused" and "'gelu'" in rows["ComfyUI"][1]
    assert rows["A1111"][0] == "loads"
    assert "gelu" not in COMFY_ACTIVATIONS and "mish" in COMFY_ACTIVATIONS


def test_optim_side_file_is_tied_to_the_exact_file(tmp_path):
    hn = create("o", (W,), Structure())
    path = hn_format.save(hn, tmp_path / "o.pt")
    state = {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1, 2, 3, 4, 5, 6, 7]}]}
    side = hn_format.save_optim(path, state)
    data = torch.load(side, weights_only=True)
    import hashlib
    assert data["hash"] == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert data["optimizer_name"] == "AdamW" and hn_format.load_optim(path) == state
    hn.step = 3  # the .pt changes: the side file no longer belongs to it
    hn_format.save(hn, path)
    assert hn_format.load_optim(path) is None


@pytest.mark.parametrize("args, message", [
    (["--layer-structure", "2, 2, 1"], "must start and end with 1"),
    (["--layer-structure", "1, x, 1"], "comma-separated numbers"),
    (["--dropout", "0, 0.3"], "one probability per layer structure entry"),
    (["--dropout", "0, 1.5, 0"], "each 0 <= p < 1"),
    (["--modules", "768,99"], "--modules"),
])
def test_bad_structures_are_one_line_errors(tiny_model_dirs, tmp_path, capsys, args, message):
    rc = main(["create-hypernetwork", "bad", "--model", str(tiny_model_dirs["sd1"]), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not list(tmp_path.glob("*.pt"))


def test_create_cli_writes_a1111_defaults_for_the_models_widths(tiny_model_dirs, tmp_path, capsys):
    from tistudio.hypernetwork.apply import attention_widths
    from tistudio.models.load import load_model

    model = tiny_model_dirs["sd1"]
    assert main(["create-hypernetwork", "mine", "--model", str(model), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    data = torch.load(tmp_path / "mine.pt", weights_only=True)
    widths = attention_widths(load_model(model).unet)
    assert tuple(k for k in data if isinstance(k, int)) == widths
    assert (data["layer_structure"], data["activation_func"], data["weight_initialization"],
            data["is_layer_norm"], data["use_dropout"]) == ([1.0, 2.0, 1.0], "linear", "Normal", False, False)
    assert "ComfyUI: loads" in out
    assert main(["create-hypernetwork", "mine", "--model", str(model), "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_pickle_with_code_is_refused_in_one_line(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({768: Evil()}))
    with pytest.raises(TIStudioError, match="refused"):
        hn_format.load(tmp_path / "evil.pt")


def test_inspect_shows_the_structure_and_each_clients_verdict(tmp_path, capsys):
    import json

    hn_format.save(create("seen", (W,), Structure(activation="gelu")), tmp_path / "seen.pt")
    assert main(["inspect", str(tmp_path / "seen.pt")]) == 0
    out = capsys.readouterr().out
    assert "hypernetwork 'seen'" in out and "activation gelu" in out
    assert "ComfyUI: refused: its loader knows only the activations" in out
    assert main(["inspect", str(tmp_path / "seen.pt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["widths"] == [W] and {r["client"]: r["verdict"] for r in data["compatibility"]} == \
        {"A1111": "loads", "ComfyUI": "refused"}


def test_the_pickle_uses_only_globals_a1111s_restricted_unpickler_allows(tmp_path):
    """A1111's safe unpickler allows, among others, collections.OrderedDict, torch's tensor rebuild
    and its storage classes. Its zip entry-name rule is pickle_zip's, the one writer (both rules:
    tests/test_formats_a1111_safe.py)."""
    import pickletools
    import zipfile

    hn = create("safe", (W,), Structure(activation="relu", layer_norm=True, dropout=(0, 0.3, 0)))
    path = hn_format.save(hn, tmp_path / "safe.pt")
    hn_format.save_optim(path, {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3)}},
                                "param_groups": [{"lr": 1e-5, "params": [0]}]})
    allowed = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
    for file in (path, hn_format.optim_path(path)):
        with zipfile.ZipFile(file) as z:
            pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
        found = {str(arg) for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
        assert found and found <= allowed, found - allowed
