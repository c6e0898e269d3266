"""Datasets as concepts without a model: the draws of an epoch (repeats, reg fill), per-record
weights, caption sources and templates, [[concept]] tables in TOML and the CLI's --data/--reg-data."""
import tomllib
from collections import Counter

import pytest

from tistudio.config import ConceptConfig, TrainConfig, dump_toml, from_dict, load_toml
from tistudio.data.batches import batch_at
from tistudio.data.concepts import load_concepts
from tistudio.errors import TIStudioError
from shapes_dataset import write_shapes_dataset


def _load(cfg, **kw):
    return load_concepts(cfg, width=64, height=64, factor=8, **kw)


def _cfg(**kw):
    return TrainConfig(embedding="e.pt", **kw)


@pytest.fixture
def folders(tmp_path):
    """a: 4 training images, b: 2 training images, reg: 3 regularization images."""
    return {name: write_shapes_dataset(tmp_path / name, n=n, seed=i)
            for i, (name, n) in enumerate((("a", 4), ("b", 2), ("reg", 3)))}


def test_a_single_folder_is_the_record_list_itself(folders):
    concepts, records, held, skipped = _load(_cfg(data=str(folders["a"])))
    assert concepts.draws == (0, 1, 2, 3) and len(concepts) == 4 == len(records)
    assert concepts.sample_weights([0, 1, 2]) is None and concepts.describe() is None
    assert concepts.lines_of([0, 3]) == [None, None] and held == [] and skipped == []


def test_repeats_lengthen_the_epoch_and_each_image_is_drawn_that_often(folders):
    cfg = _cfg(data=str(folders["a"]), concept=(ConceptConfig(path=str(folders["b"]), repeats=3),))
    concepts, records, _, _ = _load(cfg)
    assert len(records) == 6 and len(concepts) == 4 + 2 * 3
    assert Counter(concepts.draws) == {0: 1, 1: 1, 2: 1, 3: 1, 4: 3, 5: 3}
    # Over 5 epochs of steps (2 epochs' items per... batch 2): every draw of each epoch is seen once.
    seen = Counter(r for step in range(25)
                   for m in batch_at(step, n_items=len(concepts), batch_size=2, grad_accum=1, seed=4).micro_batches
                   for r in concepts.records_of(m))
    assert seen == {0: 5, 1: 5, 2: 5, 3: 5, 4: 15, 5: 15}
    assert batch_at(4, n_items=len(concepts), batch_size=2, grad_accum=1, seed=4).epoch == 0
    assert batch_at(5, n_items=len(concepts), batch_size=2, grad_accum=1, seed=4).epoch == 1  # 10 draws / 2
    assert "b: 2 images x3 = 6 draws" in concepts.describe().replace(str(folders["b"]), "b")


def test_reg_images_fill_as_many_draws_as_the_training_images(folders):
    cfg = _cfg(data=str(folders["a"]), prior_loss_weight=0.25,
               concept=(ConceptConfig(path=str(folders["reg"]), is_reg=True, loss_weight=2.0),))
    concepts, records, _, _ = _load(cfg)
    assert len(concepts) == 8  # 4 training draws + 4 reg draws, cycling through the 3 reg images
    assert concepts.draws == (0, 1, 2, 3, 4, 5, 6, 4) and concepts.unused_reg == 0
    assert concepts.weights == (1.0,) * 4 + (0.5,) * 3  # loss_weight 2 x prior 0.25
    assert concepts.sample_weights([0, 5]).tolist() == [1.0, 0.5]
    # a batch mixes training and reg images: batches are drawn from the one shuffled epoch
    mixed = [concepts.records_of(m) for s in range(4)
             for m in batch_at(s, n_items=8, batch_size=2, grad_accum=1, seed=0).micro_batches]
    assert any(min(m) < 4 <= max(m) for m in mixed)


def test_more_reg_images_than_draws_are_named_unused(folders, tmp_path):
    big = write_shapes_dataset(tmp_path / "bigreg", n=6, seed=9)
    warnings = []
    cfg = _cfg(data=str(folders["b"]), concept=(ConceptConfig(path=str(big), is_reg=True),))
    concepts, _, _, _ = _load(cfg, warn=warnings.append)
    assert concepts.draws == (0, 1, 2, 3) and concepts.unused_reg == 4
    assert warnings == ["4 regularization image(s) are never drawn: an epoch draws as many reg images as training "
                        "images (with repeats); raise the training concepts' repeats or use fewer reg images"]


def test_caption_sources_and_a_concept_template(folders, tmp_path):
    (folders["b"] / "00000-0-a red square.txt").write_text("from the sidecar")
    template = tmp_path / "t.txt"
    template.write_text("art of [name]\n")
    cfg = _cfg(data=str(folders["b"]), concept=(
        ConceptConfig(path=str(folders["b"]), caption_source="filename"),
        ConceptConfig(path=str(folders["b"]), caption_source="fixed", caption="a thing", template=str(template))))
    concepts, records, _, _ = _load(cfg)
    assert [r.caption for r in records] == ["from the sidecar", "a blue square", "a red square", "a blue square",
                                            "a thing", "a thing"]
    assert concepts.lines_of([0, 2, 4]) == [None, None, ("art of [name]",)]
    assert [row["draws_per_epoch"] for row in concepts.table()] == [2, 2, 2]  # one folder, three concepts
    strict = _cfg(data=str(folders["a"]), concept=(ConceptConfig(path=str(folders["b"]), caption_source="sidecar"),))
    with pytest.raises(TIStudioError, match=r"^1 caption file\(s\) missing in .*b: 00001-0-a blue square.txt; "
                                            r"write them or use caption_source = \"auto\"$"):
        _load(strict)


def test_greyscale_copies_stay_with_their_concept(folders):
    cfg = _cfg(data=str(folders["b"]), grayscale_copies=True, concept=(ConceptConfig(path=str(folders["a"]),
                                                                                     loss_weight=3.0),))
    concepts, records, _, _ = _load(cfg)
    assert [r.grayscale for r in records] == [False, False, True, True] + [False] * 4 + [True] * 4
    assert concepts.weights == (1.0,) * 4 + (3.0,) * 8 and concepts.draws == tuple(range(12))


def test_val_split_holds_out_from_each_training_concept_only(folders):
    cfg = _cfg(data=str(folders["a"]), val_split=0.25, val_every=5,
               concept=(ConceptConfig(path=str(folders["reg"]), is_reg=True),))
    from tistudio.train.validation import split_images

    concepts, records, held, _ = _load(cfg, split=lambda images: split_images(cfg, images))
    assert len(held) == 1 and held[0].parent == folders["a"]
    assert len(records) == 3 + 3 and len(concepts) == 6


def test_concept_tables_round_trip_through_toml(folders):
    cfg = _cfg(data=str(folders["a"]), prior_loss_weight=0.5, keep_tokens=1, caption_prefix="p", caption_dropout=0.1,
               concept=(ConceptConfig(path=str(folders["b"]), repeats=2, loss_weight=0.5, template="subject"),
                        ConceptConfig(path=str(folders["reg"]), is_reg=True, caption_source="fixed", caption="x")))
    text = dump_toml(cfg)
    assert text.count("[[concept]]") == 2
    assert from_dict(TrainConfig, tomllib.loads(text)) == cfg


@pytest.mark.parametrize("toml, message", [
    ('[[concept]]\npath = "d"\nrepets = 2\n', r"run.toml \[\[concept\]\] #1: unknown option 'repets'; known: "),
    ('[[concept]]\npath = "d"\n[[concept]]\npath = "e"\nrepeats = "two"\n',
     r"run.toml \[\[concept\]\] #2: repeats = \"two\" is not a whole number; e.g. repeats = 1"),
    ('[[concept]]\npath = "d"\nrepeats = 0\n', r"\[\[concept\]\] d: repeats = 0: must be at least 1"),
    ('[[concept]]\nrepeats = 2\n', r"\[\[concept\]\]: path is required"),
    ('[[concept]]\npath = "d"\ncaption = "x"\n', r"\[\[concept\]\] d: caption_source = \"fixed\" goes with caption"),
    ('[[concept]]\npath = "d"\ncaption_source = "txt"\n', r"caption_source = 'txt': use auto\|sidecar\|filename\|fixed"),
    ('[[concept]]\npath = "d"\nis_reg = true\n', r"every concept is is_reg; add --data"),
    ('concept = "d"\n', r"run.toml: concept must be tables: \[\[concept\]\] with path"),
    ('method = "dreamartist"\n[[concept]]\npath = "d"\ntemplate = "style"\n',
     r"\[\[concept\]\] template: DreamArtist pairs its prompts with the run's --template"),
])
def test_bad_concept_tables_name_the_key_and_the_table(tmp_path, toml, message):
    path = tmp_path / "run.toml"
    path.write_text(toml)
    with pytest.raises(TIStudioError, match=message):
        from_dict(TrainConfig, load_toml(path), "run.toml")


def test_cli_data_repeats_and_reg_data_become_concepts(tmp_path):
    from tistudio.cli.main import build_parser
    from tistudio.cli.train import build_config

    toml = tmp_path / "run.toml"
    toml.write_text('data = "file"\n[[concept]]\npath = "from-file"\nrepeats = 4\n')
    parse = build_parser().parse_args
    one = build_config(parse(["train", "--config", str(toml), "--data", "x"]))
    assert one.data == "x" and one.concept == (ConceptConfig(path="from-file", repeats=4),)
    many = build_config(parse(["train", "--config", str(toml), "--data", "x", "--data", "y", "--reg-data", "r",
                               "--prior-loss-weight", "0.5", "--keep-tokens", "2", "--caption-dropout", "0.1"]))
    assert many.data == "x"
    assert many.concept == (ConceptConfig(path="y"), ConceptConfig(path="r", is_reg=True))
    assert (many.prior_loss_weight, many.keep_tokens, many.caption_dropout) == (0.5, 2, 0.1)
    plain = build_config(parse(["train", "--data", "x"]))
    assert plain.data == "x" and plain.concept == ()


def test_no_data_at_all_is_one_line():
    with pytest.raises(TIStudioError, match=r"^--data is required: a folder of training images"):
        _load(_cfg())
