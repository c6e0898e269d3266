"""BLIP captions from a tiny random BLIP built from config here and saved as a local folder."""
from __future__ import annotations

import json

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from tistudio.errors import TIStudioError  # noqa: E402
from tistudio.preprocess import CaptionOptions, PreprocessOptions, preprocess  # noqa: E402
from tistudio.preprocess.caption.blip import BlipCaptioner  # noqa: E402
from tistudio.preprocess.options import BlipOptions  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "red", "cat", "dog",
         "blue", "square", "on", "the", "table"]


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder = tmp_path_factory.mktemp("blip")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer.from_pretrained(str(folder), bos_token="[DEC]")
    text = dict(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, sep_token_id=3,
                pad_token_id=0, eos_token_id=3)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=16)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(str(folder))
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(str(folder))
    return folder


def reference_caption(folder, image, opts: BlipOptions) -> str:
    """What transformers itself says for the same folder and settings."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(str(folder))
    model = BlipForConditionalGeneration.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        ids = model.generate(**processor(images=image, return_tensors="pt"), num_beams=opts.num_beams,
                             min_length=opts.min_length, max_length=opts.max_length, do_sample=False)
    return processor.decode(ids[0], skip_special_tokens=True).strip()


def test_blip_caption_matches_transformers(blip_folder):
    image = Image.new("RGB", (40, 30), (200, 20, 20))
    for opts in (BlipOptions(min_length=3, max_length=8), BlipOptions(num_beams=2, min_length=6, max_length=10)):
        caption = BlipCaptioner(blip_folder, opts)(image)
        assert caption == reference_caption(blip_folder, image, opts)
        words = caption.split()
        assert words and set(words) <= set(WORDS[6:])  # real vocabulary words, no special tokens
        assert len(words) <= opts.max_length


def test_blip_captions_land_in_sidecars(blip_folder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (48, 32), (10, 120, 240)).save(src / "pic.png")
    (src / "pic.txt").write_text("my own words")
    opts = PreprocessOptions(width=32, height=32, caption=CaptionOptions(
        blip=blip_folder, blip_options=BlipOptions(min_length=3, max_length=8), existing="prepend"))
    preprocess(src, tmp_path / "out", opts, progress=False)
    caption = BlipCaptioner(blip_folder, BlipOptions(min_length=3, max_length=8))(
        Image.open(tmp_path / "out" / "00000-0-pic.png"))
    assert (tmp_path / "out" / "00000-0-pic.txt").read_text() == f"my own words, {caption}"


def test_blip_path_errors(blip_folder, tmp_path):
    with pytest.raises(TIStudioError, match="--blip .*nope: folder not found; give a local BLIP"):
        BlipCaptioner(tmp_path / "nope", BlipOptions())
    (tmp_path / "empty").mkdir()
    with pytest.raises(TIStudioError, match="no config.json"):
        BlipCaptioner(tmp_path / "empty", BlipOptions())
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(TIStudioError, match="model_type='clip', not 'blip'"):
        BlipCaptioner(tmp_path / "clip", BlipOptions())
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((blip_folder / "config.json").read_text())
    with pytest.raises(TIStudioError, match="cannot load it") as info:
        BlipCaptioner(tmp_path / "noweights", BlipOptions())
    assert "\n" not in str(info.value)
