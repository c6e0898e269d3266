"""Booru taggers: tiny WD14-style and DeepDanbooru ONNX models exported here from torch modules whose
scores are set by hand (the guide's example list), so every tagger option has an exact expected caption."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxscript")
torch = pytest.importorskip("torch")

from tistudio.errors import TIStudioError  # noqa: E402
from tistudio.preprocess.caption.tagger import OnnxTagger  # noqa: E402
from tistudio.preprocess.options import TaggerOptions  # noqa: E402

# name, score (the guide's example, plus a kaomoji, a tag with brackets and an image-driven tag)
SCORES = [("1girl", 0.9999), ("blush", 0.986), ("long_hair", 0.981), ("solo", 0.980),
          ("japanese_clothes", 0.918), ("^_^", 0.9), ("hat_(object)", 0.85), ("bangs", 0.798),
          ("wide_sleeves", 0.795), ("blunt_bangs", 0.731), ("long_sleeves", 0.637), ("monochrome", 0.628)]
RATINGS = [("general", 0.99), ("sensitive", 0.95), ("questionable", 0.01), ("explicit", 0.01)]
RED = "red_theme"  # score 1/(1+e^-10) on a pure red image, 1/(1+e^10) on a blue one


class TinyTagger(torch.nn.Module):
    """Fixed scores per tag, except RED which follows the mean of the red input channel."""

    def __init__(self, scores, red_index, red_channel, scale):
        super().__init__()
        logits = torch.tensor([math.log(s / (1 - s)) for s in scores])
        logits[red_index] = 0.0
        gain = torch.zeros(len(scores))
        gain[red_index] = 20.0
        self.register_buffer("logits", logits)
        self.register_buffer("gain", gain)
        self.red_channel, self.scale = red_channel, scale

    def forward(self, x):  # x: [N, H, W, 3]
        red = x[..., self.red_channel].mean(dim=(1, 2)) / self.scale  # [N] in 0..1
        return torch.sigmoid(self.logits[None] + self.gain[None] * (red[:, None] - 0.5))


def export(module, path, side=32):
    # The batch axis is dynamic, so the example batch must be 2 (a batch of 1 gets specialised).
    torch.onnx.export(module.eval(), (torch.rand(2, side, side, 3),), str(path), input_names=["input"],
                      output_names=["scores"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


@pytest.fixture(scope="module")
def wd14(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wd14")
    rows = [(n, s, "9") for n, s in RATINGS] + [(n, s, "0") for n, s in SCORES] + [(RED, 0.5, "0")]
    lines = ["tag_id,name,category,count"] + [f"{i},{n},{c},100" for i, (n, _, c) in enumerate(rows)]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    # WD14 input: BGR 0..255, so red is channel 2.
    export(TinyTagger([s for _, s, _ in rows], len(rows) - 1, red_channel=2, scale=255.0), folder / "model.onnx")
    return folder


@pytest.fixture(scope="module")
def deepdanbooru(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddb")
    rows = SCORES + [("rating:safe", 0.912), (RED, 0.5)]
    (folder / "tags.txt").write_text("\n".join(n for n, _ in rows) + "\n")
    # DeepDanbooru input: RGB 0..1, so red is channel 0.
    export(TinyTagger([s for _, s in rows], len(rows) - 1, red_channel=0, scale=1.0), folder / "ddb.onnx")
    return folder


RED_IMAGE = Image.new("RGB", (40, 40), (255, 0, 0))
BLUE_IMAGE = Image.new("RGB", (40, 40), (0, 0, 255))
DEFAULT = ("blush, long hair, solo, japanese clothes, ^_^, hat \\(object\\), bangs, wide sleeves")


def test_wd14_defaults_follow_the_guide(wd14):
    tagger = OnnxTagger(wd14, None, TaggerOptions())
    assert tagger.side == 32 and tagger.kind == "wd14"
    # Threshold 0.75 keeps down to wide_sleeves (0.795); ratings are dropped; best first; spaces;
    # brackets escaped; the kaomoji keeps its underscore.
    assert tagger(BLUE_IMAGE) == "1girl, " + DEFAULT
    assert tagger(RED_IMAGE) == f"red theme, 1girl, {DEFAULT}"  # BGR handled: red scores ~1


def test_deepdanbooru_defaults_and_rating_dropped(deepdanbooru):
    tagger = OnnxTagger(deepdanbooru / "ddb.onnx", None, TaggerOptions())
    assert tagger.kind == "deepdanbooru"
    assert tagger(BLUE_IMAGE) == "1girl, " + DEFAULT  # rating:safe (0.912) never appears
    assert tagger(RED_IMAGE).startswith("red theme, 1girl, ")  # RGB 0..1 handled


@pytest.mark.parametrize("options,expected", [
    (TaggerOptions(threshold=0.9), "1girl, blush, long hair, solo, japanese clothes, ^_^"),
    (TaggerOptions(threshold=0.9, sort_alphabetically=True), "1girl, ^_^, blush, japanese clothes, long hair, solo"),
    (TaggerOptions(threshold=0.84, use_spaces=False), "1girl, blush, long_hair, solo, japanese_clothes, ^_^, "
                                                      "hat_\\(object\\)"),
    (TaggerOptions(threshold=0.84, escape_brackets=False), "1girl, blush, long hair, solo, japanese clothes, ^_^, "
                                                           "hat (object)"),
    (TaggerOptions(threshold=0.9, filter_tags=("long hair", "SOLO", "1girl")), "blush, japanese clothes, ^_^"),
    (TaggerOptions(threshold=0.95, include_scores=True), "(1girl:1.000), (blush:0.986), (long hair:0.981), "
                                                         "(solo:0.980)"),
    (TaggerOptions(threshold=0.6), "1girl, " + DEFAULT + ", blunt bangs, long sleeves, monochrome"),
])
def test_each_tagger_option(wd14, options, expected):
    assert OnnxTagger(wd14, None, options)(BLUE_IMAGE) == expected


def test_separate_tag_list_and_kind_override(wd14, tmp_path):
    (tmp_path / "model.onnx").write_bytes((wd14 / "model.onnx").read_bytes())
    with pytest.raises(TIStudioError, match="no tag list .* pass --tags FILE"):
        OnnxTagger(tmp_path / "model.onnx", None, TaggerOptions())
    tagger = OnnxTagger(tmp_path / "model.onnx", wd14 / "selected_tags.csv", TaggerOptions(kind="wd14"))
    assert tagger(BLUE_IMAGE) == "1girl, " + DEFAULT


def test_tagger_errors_are_one_line(wd14, deepdanbooru, tmp_path):
    cases = [
        (tmp_path / "missing.onnx", None, "--tagger .*missing.onnx: file not found"),
        (deepdanbooru / "tags.txt", None, "not an .onnx file"),
        (wd14, deepdanbooru / "tags.txt", "tags but the model scores"),
    ]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.onnx").write_text("nonsense")
    (tmp_path / "broken" / "tags.txt").write_text("a\nb\n")
    cases.append((tmp_path / "broken", None, "onnxruntime cannot load it"))
    for model, tags, message in cases:
        with pytest.raises(TIStudioError, match=message) as info:
            OnnxTagger(model, tags, TaggerOptions())
        assert "\n" not in str(info.value)


def test_batch_axis_really_dynamic(wd14):
    tagger = OnnxTagger(wd14, None, TaggerOptions())
    batch = np.concatenate([tagger._input(RED_IMAGE), tagger._input(BLUE_IMAGE), tagger._input(RED_IMAGE)])
    out = tagger.session.run(None, {tagger.input_name: batch})[0]
    assert out.shape == (3, len(SCORES) + len(RATINGS) + 1)
    assert out[0, -1] > 0.99 and out[1, -1] < 0.01


def test_cli_tags_into_sidecars_with_configured_model(cli, wd14, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    RED_IMAGE.save(src / "red.png")
    (src / "red.txt").write_text("my tag")
    env = {"TISTUDIO_TAGGER_MODEL": wd14}  # "configured once"
    res = cli("preprocess", src, tmp_path / "out", "--width", "32", "--height", "32", "--tag-threshold", "0.97",
              "--filter-tags", "solo", "--existing-captions", "append", "--no-progress", "--tagger", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "00000-0-red.txt").read_text() == "red theme, 1girl, blush, long hair, my tag"
