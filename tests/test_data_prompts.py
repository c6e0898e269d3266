"""Prompt rendering: substitution, tag dropout and shuffle determinism, a template line per sample."""
import random

import pytest

from tistudio.data.prompts import PromptSampler, fill, process_tags, render
from tistudio.data.templates import load_template, plain_counterpart
from tistudio.errors import TIStudioError

CAPTION = " red hat ,blue sky,, smiling , 1girl,"
TAGS = ["red hat", "blue sky", "smiling", "1girl"]


def test_substitution_without_randomness_keeps_tags_in_order():
    rng = random.Random(0)
    out = render("a photo of [name], [filewords]", "zed", CAPTION, rng)
    assert out == "a photo of zed, red hat, blue sky, smiling, 1girl"
    assert rng.random() == random.Random(0).random()  # no draws were spent


def test_every_placeholder_is_replaced_and_caption_may_name_the_embedding():
    out = render("[name] and [name]: [filewords]", "zed", "portrait of [name]", random.Random(0))
    assert out == "zed and zed: portrait of zed"


@pytest.mark.parametrize("line, expected", [
    ("a photo of [name], [filewords]", "a photo of zed"),
    ("[filewords], art by [name]", "art by zed"),
    ("an artwork of [filewords] in the style of [name]", "an artwork of in the style of zed"),
])
def test_empty_filewords_leave_no_dangling_comma(line, expected):
    assert fill(line, "zed", "") == expected
    assert render(line, "zed", "a, b", random.Random(0), tag_dropout=1.0) == expected


def test_dropout_is_deterministic_for_a_seed_and_keeps_about_1_minus_p():
    caption = ", ".join(f"t{i}" for i in range(4000))
    a = process_tags(caption, random.Random(7), tag_dropout=0.3)
    assert a == process_tags(caption, random.Random(7), tag_dropout=0.3)
    assert a != process_tags(caption, random.Random(8), tag_dropout=0.3)
    kept = a.split(", ")
    assert abs(len(kept) / 4000 - 0.7) < 0.03
    assert kept == sorted(kept, key=lambda t: int(t[1:]))  # dropout alone keeps the order
    assert process_tags(caption, random.Random(7), tag_dropout=0.0) == caption


def test_shuffle_permutes_tags_deterministically():
    outs = {process_tags(CAPTION, random.Random(s), shuffle_tags=True) for s in range(30)}
    assert len(outs) > 5
    for out in outs:
        assert sorted(out.split(", ")) == sorted(TAGS)
    assert process_tags(CAPTION, random.Random(3), shuffle_tags=True) == \
        process_tags(CAPTION, random.Random(3), shuffle_tags=True)


def test_bad_dropout_is_refused():
    with pytest.raises(TIStudioError, match="--tag-dropout"):
        process_tags("a", random.Random(0), tag_dropout=1.5)


def test_sampler_draws_a_line_per_sample_even_without_shuffle_or_dropout():
    lines = load_template("subject_filewords")
    sampler = PromptSampler(lines, 1)
    prompts = [sampler.sample("zed", "red hat", position) for position in range(60)]
    assert len({p.line_index for p in prompts}) > 8  # A1111 defect 3: one line per image forever
    for p in prompts:
        assert p.text == fill(lines[p.line_index], "zed", "red hat") and p.filewords == "red hat"
    again = PromptSampler(lines, 1).batch("zed", ["red hat"] * 60, 0)
    assert again == prompts


def test_a_prompt_depends_only_on_seed_and_stream_position():
    """Batch 4, four micro-batches of 1, or a fresh sampler after a resume: the same prompts."""
    def sampler(seed=5):
        return PromptSampler(load_template("style_filewords"), seed, shuffle_tags=True, tag_dropout=0.2)

    whole = sampler().batch("zed", [CAPTION] * 8, 0)
    pieces = [p for first in range(0, 8, 2) for p in sampler().batch("zed", [CAPTION] * 2, first)]
    assert pieces == whole
    assert sampler().batch("zed", [CAPTION] * 5, 3) == whole[3:]   # resumed at position 3
    assert len({p.text for p in whole}) > 1
    assert sampler(6).batch("zed", [CAPTION] * 8, 0) != whole


def test_dreamartist_negative_uses_the_same_line_of_the_plain_template():
    sampler = PromptSampler(load_template("style_filewords"), 2, shuffle_tags=True)
    plain = plain_counterpart("style_filewords")
    p = sampler.sample("zed", CAPTION, 0)
    negative = fill(plain[p.line_index], "zed-neg", p.filewords)
    assert negative == plain[p.line_index].replace("[name]", "zed-neg")
    assert "zed" in p.text and all(tag in p.text for tag in TAGS)
