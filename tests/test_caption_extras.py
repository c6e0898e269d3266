"""Caption extras: --keep-tokens with shuffling and dropout, --caption-prefix/--caption-suffix,
--caption-dropout (a keyed coin per sample position), and that the defaults change no draw."""
import random

import pytest

from tistudio.config import TrainConfig
from tistudio.data.prompts import CaptionExtras, PromptSampler, process_tags
from tistudio.errors import TIStudioError

CAPTION = "1girl, solo, red hat, blue sky, smiling, outdoors, tree"
TAGS = CAPTION.split(", ")


def test_keep_tokens_keep_their_place_through_shuffle_and_dropout():
    for seed in range(30):
        out = process_tags(CAPTION, random.Random(seed), shuffle_tags=True, tag_dropout=0.5, keep_tokens=2).split(", ")
        assert out[:2] == ["1girl", "solo"]
        assert set(out[2:]) <= set(TAGS[2:]) and len(out) == len(set(out))
    orders = {tuple(process_tags(CAPTION, random.Random(s), shuffle_tags=True, keep_tokens=2).split(", ")[2:])
              for s in range(30)}
    assert len(orders) > 10  # the rest is still shuffled
    # keep_tokens beyond the tag count keeps everything in order
    assert process_tags(CAPTION, random.Random(0), shuffle_tags=True, keep_tokens=20) == CAPTION


def test_keep_tokens_zero_draws_exactly_as_before():
    a = process_tags(CAPTION, random.Random(5), shuffle_tags=True, tag_dropout=0.3)
    b = process_tags(CAPTION, random.Random(5), shuffle_tags=True, tag_dropout=0.3, keep_tokens=0)
    assert a == b
    plain = PromptSampler(["[name], [filewords]"], seed=3, shuffle_tags=True, tag_dropout=0.2)
    extras = PromptSampler(["[name], [filewords]"], seed=3, shuffle_tags=True, tag_dropout=0.2, extras=CaptionExtras())
    assert [plain.sample("tok", CAPTION, p) for p in range(20)] == [extras.sample("tok", CAPTION, p) for p in range(20)]


def test_prefix_and_suffix_stand_around_the_shuffled_tags():
    sampler = PromptSampler(["a photo of [name], [filewords]"], seed=0, shuffle_tags=True,
                            extras=CaptionExtras(prefix="masterpiece ", suffix="by me"))
    for position in range(10):
        prompt = sampler.sample("tok", "b, c, d", position)
        assert prompt.text.startswith("a photo of tok, masterpiece, ") and prompt.text.endswith(", by me")
        assert sorted(prompt.filewords.split(", ")[1:-1]) == ["b", "c", "d"]
    empty = PromptSampler(["[name], [filewords]"], seed=0, extras=CaptionExtras(prefix="p", suffix="s"))
    assert empty.sample("tok", "", 0).text == "tok, p, s"


def test_caption_dropout_rate_is_p_and_a_pure_function_of_the_position():
    p = 0.3
    sampler = PromptSampler(["[name], [filewords]"], seed=11, extras=CaptionExtras(prefix="pre", dropout=p))
    prompts = [sampler.sample("tok", "red, blue", position) for position in range(4000)]
    dropped = [pr.text == "tok" and pr.filewords == "" for pr in prompts]
    assert abs(sum(dropped) / len(dropped) - p) < 0.03  # 4000 coins: std ≈ 0.007
    again = PromptSampler(["[name], [filewords]"], seed=11, extras=CaptionExtras(prefix="pre", dropout=p))
    assert [again.sample("tok", "red, blue", q) for q in range(3999, -1, -1)] == prompts[::-1]  # order-free
    kept = next(pr for pr, d in zip(prompts, dropped) if not d)
    assert kept.text == "tok, pre, red, blue"
    # the dropout coin is its own draw: the template line and tags of every sample stay as without it
    plain = PromptSampler(["[name], [filewords]", "x [name] [filewords]"], seed=11, shuffle_tags=True)
    drop = PromptSampler(["[name], [filewords]", "x [name] [filewords]"], seed=11, shuffle_tags=True,
                         extras=CaptionExtras(dropout=0.5))
    for q in range(50):
        a, b = plain.sample("tok", "red, blue, green", q), drop.sample("tok", "red, blue, green", q)
        assert a.line_index == b.line_index and b.filewords in ("", a.filewords)
    assert all(CaptionExtras(dropout=1.0).dropped(0, q) for q in range(20))
    assert not any(CaptionExtras(dropout=0.0).dropped(0, q) for q in range(20))


def test_the_per_sample_template_wins_over_the_run_template():
    sampler = PromptSampler(["run [name]"], seed=0)
    out = sampler.batch("tok", ["a", "b"], 0, [None, ("own [name] [filewords]",)])
    assert [p.text for p in out] == ["run tok", "own tok b"]


@pytest.mark.parametrize("change, message", [
    (dict(keep_tokens=-1), "--keep-tokens -1: use 0"),
    (dict(caption_dropout=1.5), r"--caption-dropout 1.5: use 0 <= p <= 1"),
    (dict(prior_loss_weight=-1.0), "--prior-loss-weight -1.0: use 0 or more"),
])
def test_bad_caption_options_name_the_flag(change, message):
    with pytest.raises(TIStudioError, match=message):
        TrainConfig(**change)
