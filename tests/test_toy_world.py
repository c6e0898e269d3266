"""The toy world's generator, concept specs and held-out rule (no model needed)."""
import numpy as np
import pytest

from tistudio.errors import TIStudioError
from tistudio.toy.concepts import (HELD_OUT, Concept, base_training_caption, base_training_scene,
                                   held_out_concepts, parse_concept)
from tistudio.toy.scenes import BACKGROUNDS, COLOURS, SHAPES, random_scene, render


def test_same_seed_same_pixels_and_caption():
    a = random_scene(np.random.default_rng(7))
    b = random_scene(np.random.default_rng(7))
    assert a == b
    assert np.array_equal(np.asarray(render(a, 32)), np.asarray(render(b, 32)))
    c = random_scene(np.random.default_rng(8))
    assert c != a


def test_render_draws_the_named_colour_on_the_named_background():
    scene = random_scene(np.random.default_rng(0), shape="square", colour="teal", background="white")
    px = np.asarray(render(scene, 48))
    assert px.shape == (48, 48, 3)
    assert tuple(px[0, 0]) == BACKGROUNDS["white"]
    assert tuple(px[24, 24]) == COLOURS["teal"]       # the centre is inside the square
    assert scene.caption("a photo of a {}") == "a photo of a teal square"
    assert scene.caption("{}", with_colour=False, with_background=True) == "square on a white background"


@pytest.mark.parametrize("spec,expected", [
    ("teal star", Concept("teal", "star")),
    ("Star, TEAL", Concept("teal", "star")),
    ("pink triangle on white", Concept("pink", "triangle", "white")),
    ("red circle on a black background", Concept("red", "circle", "black")),
])
def test_parse_concept(spec, expected):
    assert parse_concept(spec) == expected


@pytest.mark.parametrize("spec,needle", [
    ("teal", "COLOUR SHAPE"), ("teal hexagon", "COLOUR SHAPE"), ("red blue star", "COLOUR SHAPE"),
    ("teal star on green", "background must be one of"),
])
def test_bad_concept_specs_are_one_line_errors(spec, needle):
    with pytest.raises(TIStudioError) as err:
        parse_concept(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_held_out_concepts_cover_every_shape_with_distinct_colours():
    concepts = held_out_concepts()
    assert sorted(c.shape for c in concepts) == sorted(SHAPES)
    assert len({c.colour for c in concepts}) == len(concepts)
    assert all(c.held_out and c.init_word == c.shape for c in concepts)
    assert not parse_concept("red star").held_out


def test_base_captions_never_name_a_held_out_pairing_but_show_it():
    rng = np.random.default_rng(0)
    shown = {pair: 0 for pair in HELD_OUT}
    bare = {colour: 0 for colour in COLOURS}   # star images captioned without a colour
    for _ in range(6000):
        scene = base_training_scene(rng)
        caption = base_training_caption(scene, rng)
        for colour, shape in HELD_OUT:
            assert f"{colour} {shape}" not in caption
        if (scene.colour, scene.shape) in shown:
            shown[(scene.colour, scene.shape)] += 1
        if scene.shape == "star" and caption and scene.colour not in caption:
            bare[scene.colour] += 1
    assert all(n > 0 for n in shown.values())
    # Under a bare "star" caption the held-out colour is no more common than any other colour, so the
    # init word alone draws a teal star about 1 time in 8.
    share = bare["teal"] / sum(bare.values())
    assert 0.05 < share < 0.2
