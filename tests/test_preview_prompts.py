"""--preview-prompts: the prompt file's lines and options, its errors (with line numbers), the grid's
layout and size, and a training run that writes one grid per preview."""
import pytest
from PIL import Image

from tistudio import api
from tistudio.errors import TIStudioError
from tistudio.generate.sample import GenerateOptions
from tistudio.train.preview_prompts import (PreviewPrompt, grid, load_preview_prompts, options_for, parse_prompts,
                                            preview_grid)
from tistudio.train.run import train

from run_config import quick_config

FILE = """# previews for the cat embedding
a photo of [name] --n blurry, lowres --w 96 --h 64 --s 3 --l 5.5 --d 7

[name] on a beach
   # an indented comment
art by [name] --d 2
"""


def test_lines_options_comments_and_blank_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(FILE)
    prompts = load_preview_prompts(str(path))
    assert prompts == (
        PreviewPrompt("a photo of [name]", 2, negative="blurry, lowres", width=96, height=64, steps=3, cfg=5.5, seed=7),
        PreviewPrompt("[name] on a beach", 4),
        PreviewPrompt("art by [name]", 6, seed=2))
    assert load_preview_prompts("") == ()


def test_a_line_fills_in_only_what_it_gives():
    base = GenerateOptions(prompt="x", negative_prompt="run negative", steps=20, cfg=7.0, seed=1234, width=64,
                           height=64, sampler="ddim")
    first, second, _ = parse_prompts(FILE, "f")
    o = options_for(first, base, "cat")
    assert (o.prompt, o.negative_prompt, o.width, o.height, o.steps, o.cfg, o.seed, o.sampler) == \
        ("a photo of cat", "blurry, lowres", 96, 64, 3, 5.5, 7, "ddim")
    o = options_for(second, base, "cat")
    assert (o.prompt, o.negative_prompt, o.width, o.height, o.steps, o.cfg, o.seed) == \
        ("cat on a beach", "run negative", 64, 64, 20, 7.0, 1234)
    # DreamArtist's negative embedding leads a line's own negative prompt too
    assert options_for(first, base, "cat", "cat-neg").negative_prompt == "cat-neg, blurry, lowres"


@pytest.mark.parametrize("text, message", [
    ("ok\n\na cat --q 3\n", r"^P line 3: unknown option --q; use --n --w --h --s --l --d$"),
    ("a cat --w 100\n", r"^P line 1: --w 100 must be a positive multiple of 8$"),
    ("a cat --s many\n", r"^P line 1: --s 'many' is not a number of steps; e.g. --s 20$"),
    ("# c\na cat --d\n", r"^P line 2: --d '' is not a seed; e.g. --d 1$"),
    ("a cat --l 3 --l 4\n", r"^P line 1: --l is given twice; keep one$"),
    ("--n blurry\n", r"^P line 1: no prompt before the options"),
    ("a cat --s 0\n", r"^P line 1: --s must be at least 1 and --d 0 or more$"),
    ("# only a comment\n\n", r"^P has no prompts \(blank lines and # comments are skipped\)"),
])
def test_errors_name_the_line(text, message):
    with pytest.raises(TIStudioError, match=message):
        parse_prompts(text, "P")


def test_a_double_dash_inside_a_word_is_prompt_text():
    (p,) = parse_prompts("a cat--like dog --n x--y\n", "P")
    assert (p.prompt, p.negative) == ("a cat--like dog", "x--y")


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(TIStudioError, match=r"--preview-prompts .*nope.txt: file not found; pass a text file"):
        load_preview_prompts(str(tmp_path / "nope.txt"))


def test_grid_is_near_square_with_cells_as_large_as_the_largest_image():
    sizes = [(64, 64), (96, 64), (64, 32), (32, 32), (64, 64)]
    images = []
    for k, size in enumerate(sizes):
        image = Image.new("RGB", size, (40 * k, 255, 0))
        image.info["parameters"] = f"cell {k}"
        images.append(image)
    out = grid(images)
    assert out.size == (3 * 96, 2 * 64)  # 5 cells: 3 columns, 2 rows of 96 x 64
    assert out.getpixel((96 + 48, 32)) == (40, 255, 0)   # cell 1 fills its cell
    assert out.getpixel((2 * 96 + 8, 32)) == (0, 0, 0)  # cell 2 (64 wide) is centred: black margin
    assert out.getpixel((2 * 96 + 48, 32)) == (80, 255, 0)
    assert out.info["parameters"] == "cell 0\n\ncell 1\n\ncell 2\n\ncell 3\n\ncell 4"
    assert grid(images[:1]).size == (64, 64)


def test_preview_grid_renders_one_cell_per_prompt():
    seen = []

    def render(options):
        seen.append(options)
        return Image.new("RGB", (options.width, options.height))

    base = GenerateOptions(prompt="x", width=64, height=64)
    out = preview_grid(parse_prompts(FILE, "f"), base, "cat", render)
    assert [o.prompt for o in seen] == ["a photo of cat", "cat on a beach", "art by cat"]
    assert out.size == (2 * 96, 2 * 64)


def test_training_writes_a_grid_per_preview(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    path = api.create_embedding(c, "tok", "cat", 1, tmp_path / "emb")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a [name] --w 64 --h 32 --s 1\n[name] again --s 1 --d 3\n")
    train(quick_config(path, dataset, tmp_path, steps=2, save_every=0, preview_every=2,
                       preview_prompts=str(prompts)), components=c, progress=False)
    run = tmp_path / "runs" / "tok"
    with Image.open(run / "previews" / "tok-2.png") as image:
        assert image.size == (2 * 64, 64)
        assert "a tok" in image.info["parameters"] and "tok again" in image.info["parameters"]
    assert not (run / "images" / "tok-2.png").exists()  # the grid replaces the single preview
