"""`tistudio check --config RUN.toml` / `check DATASET --embedding A --embedding B --model M`
(train/preflight.py): the run as train would start it, listed per embedding, with train's own
refusals as findings, all at once, and each concept's folder through the dataset doctor."""
import json
from dataclasses import replace

import pytest

from tistudio import api
from tistudio.config import TrainConfig
from tistudio.embedding.formats import load_embedding, save_embedding
from tistudio.errors import TIStudioError
from shapes_dataset import write_shapes_dataset


@pytest.fixture
def run(tiny_models, tiny_model_dirs, tmp_path):
    """An SD1 run of `cat` (--data a) and `dog` (its own concept b, half the rate, stopped at 3)."""
    c = tiny_models["sd1"]
    a = write_shapes_dataset(tmp_path / "a", n=2, seed=1)
    b = write_shapes_dataset(tmp_path / "b", n=2, seed=2)
    cat = api.create_embedding(c, "cat", "cat", 1, tmp_path / "emb")
    dog = api.create_embedding(c, "dog", "dog", 2, tmp_path / "emb")
    toml = tmp_path / "run.toml"
    toml.write_text(f"""model = {{ model = "{tiny_model_dirs['sd1']}" }}
embedding = "{cat}"
data = "{a}"
steps = 5
width = 64
height = 64
log_dir = "{tmp_path / 'runs'}"
output = "{tmp_path / 'out' / 'cat.pt'}"

[[embeddings]]
path = "{dog}"
lr_scale = 0.5
stop_step = 3

[[concept]]
path = "{b}"
embedding = "dog"
""")
    return {"toml": toml, "cat": cat, "dog": dog, "a": a, "b": b, "model": tiny_model_dirs["sd1"]}


def test_a_run_of_two_embeddings_is_listed_per_embedding(cli, run):
    r = cli("check", "--config", run["toml"], "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["usable"] and report["model_family"] == "sd1"
    rows = [(e["path"], e["name"], e["vectors"], e["widths"], e["family"], e["step"], e["lr_scale"], e["stop_step"],
             e["concepts"]) for e in report["embeddings"]]
    assert rows == [(str(run["cat"]), "cat", 1, [32], "sd1", 0, 1.0, 0, [str(run["a"])]),
                    (str(run["dog"]), "dog", 2, [32], "sd1", 0, 0.5, 3, [str(run["b"])])]
    assert all(e["loads_in"]["A1111"] == "loads" for e in report["embeddings"])
    # Both triggers are English words: train warns, and so does check, per embedding.
    words = [f for f in report["findings"] if f["code"] == "trigger-word"]
    assert [f["files"] for f in words] == [[str(run["cat"])], [str(run["dog"])]]
    assert [d["path"] for d in report["datasets"]] == [str(run["a"]), str(run["b"])]
    assert all(d["usable"] and set(d["trained_at"].values()) == {"64x64"} for d in report["datasets"])
    table = cli("check", "--config", run["toml"]).stdout
    assert table.splitlines()[0] == f"run {run['toml']}: method ti, model {run['model']} (sd1), 2 embedding(s)"
    assert f"  {run['cat']}  cat      1        sd1     0     1         -     {run['a']}" in table
    assert f"  {run['dog']}  dog      2        sd1     0     0.5       3     {run['b']}" in table
    assert table.rstrip().endswith("run: ready to train, 0 run error(s)")


def test_every_refusal_train_would_make_is_reported_at_once_with_trains_words(cli, run, tiny_models, tmp_path):
    """A second `dog` file (whose final file is the first dog's too), an SDXL embedding in the SD1
    run, one stored at another step and a concept naming no embedding of the run: train stops at the first with a one-line error; check
    lists each, the first in train's own words, and exits 1."""
    other = api.create_embedding(tiny_models["sd1"], "dog", "dog", 1, tmp_path / "other")
    xl = api.create_embedding(tiny_models["sdxl"], "xlcat", "cat", 1, tmp_path / "xl")
    later = tmp_path / "later.pt"
    save_embedding(replace(load_embedding(api.create_embedding(tiny_models["sd1"], "later", "cat", 1,
                                                               tmp_path / "l")), step=2), later, "a1111-pt")
    text = run["toml"].read_text().replace('embedding = "dog"', 'embedding = "bird"')
    for path in (other, xl, later):
        text += f'\n[[embeddings]]\npath = "{path}"\n'
    run["toml"].write_text(text)
    r = cli("check", "--config", run["toml"], "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    errors = [(f["code"], f["message"]) for f in report["findings"] if f["level"] == "error"]
    assert [code for code, _ in errors] == ["embedding-width", "embeddings-together", "embeddings-together",
                                             "concept-embedding", "outputs"]
    assert errors[0][1].startswith(f"embedding 'xlcat' ({xl}) has vector width 32+64 but the model's text "
                                   "encoder width is 32")
    assert f"[[embeddings]] {later}: stored at step 2" in errors[2][1]
    assert "embedding = 'bird' is not one of this run's embeddings (cat, dog, dog, xlcat, later)" in errors[3][1]
    assert errors[4][1].endswith(f"two embeddings of this run would both be saved as {tmp_path / 'out' / 'dog.pt'}; "
                                 "choose an --output whose name is no other embedding's")
    assert [e["name"] for e in report["embeddings"]] == ["cat", "dog", "dog", "xlcat", "later"]
    assert report["embeddings"][3]["family"] == "sdxl"
    cfg = api_config(run["toml"])
    with pytest.raises(TIStudioError) as refused:
        api.train(cfg, progress=False)
    assert str(refused.value) == errors[1][1]  # train's first refusal before the model loads, word for word
    assert f"its trigger 'dog' is also {run['dog']}'s" in errors[1][1]


def api_config(toml) -> TrainConfig:
    from tistudio.cli.train import fresh_config

    return fresh_config(str(toml), {})


def test_embeddings_from_the_command_line_and_an_unreadable_one(cli, run, tiny_model_dirs, tmp_path):
    """DATASET and repeated --embedding as train takes them; a file that does not load is an error
    naming it, and the others are still checked."""
    missing = tmp_path / "missing.pt"
    r = cli("check", run["a"], "--embedding", run["cat"], "--embedding", missing, "--embedding", run["dog"],
            "--model", tiny_model_dirs["sd1"], "--width", 64, "--height", 64, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert [(e["path"], e["name"]) for e in report["embeddings"]] == [
        (str(run["cat"]), "cat"), (str(missing), None), (str(run["dog"]), "dog")]
    (bad,) = [f for f in report["findings"] if f["code"] == "embedding-file"]
    assert bad["files"] == [str(missing)] and str(missing) in bad["message"]
    table = cli("check", run["a"], "--embedding", run["cat"], "--embedding", missing, "--model",
                tiny_model_dirs["sd1"]).stdout
    assert f"  {missing}  ?" in table and "REFUSED or UNUSABLE" in table


def test_a_config_train_refuses_outright_is_refused_with_the_same_line(cli, run):
    text = run["toml"].read_text().replace("steps = 5", 'steps = 5\nmethod = "dreamartist"')
    run["toml"].write_text(text)
    r = cli("check", "--config", run["toml"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: [[embeddings]] {run['dog']}: several embeddings train with --method ti only " \
                            "(this run has --method dreamartist); train them in separate runs"
    assert cli("train", "--config", run["toml"]).stderr.strip() == r.stderr.strip()


def test_a_run_without_a_model_and_the_dataset_mode_unchanged(cli, run):
    r = cli("check", run["a"], "--embedding", run["cat"], "--json")
    assert r.returncode == 1
    (f,) = [f for f in json.loads(r.stdout)["findings"] if f["level"] == "error"]
    assert f["code"] == "model" and f["message"].startswith("--model is required")
    plain = cli("check", run["a"], "--width", 64, "--height", 64)
    assert plain.returncode == 0 and plain.stdout.startswith(f"dataset {run['a']}: 2 images")
    assert "--model" in cli("check", run["a"], "--model", "m").stderr


def test_the_models_widths_and_size_from_its_configs_are_what_loading_gives(tiny_models, tiny_model_dirs):
    """check compares embeddings with ModelSource.widths before any weight is read: the same
    numbers the loaded model has (Components.widths, .resolution), for each family."""
    from tistudio.models.load import open_model

    for family, folder in tiny_model_dirs.items():
        source = open_model(folder)
        assert source.widths() == tiny_models[family].widths
        assert source.resolution() == tiny_models[family].resolution
    assert open_model(tiny_model_dirs["sdxl"]).widths() == (32, 64)


def test_nothing_left_to_train_and_a_missing_template_or_folder_are_trains_refusals(cli, run, tiny_models, tmp_path):
    done = tmp_path / "done.pt"
    dog = tmp_path / "at5" / "dog.pt"
    dog.parent.mkdir()
    save_embedding(replace(load_embedding(run["cat"]), name="done", step=5), done, "a1111-pt")
    save_embedding(replace(load_embedding(run["dog"]), step=5), dog, "a1111-pt")
    run["toml"].write_text(run["toml"].read_text().replace(f'embedding = "{run["cat"]}"', f'embedding = "{done}"')
                           .replace(f'path = "{run["dog"]}"', f'path = "{dog}"')
                           .replace(f'data = "{run["a"]}"', f'data = "{tmp_path / "nope"}"\ntemplate = "nofile.txt"')
                           .replace('embedding = "dog"\n', 'embedding = "dog"\ntemplate = "subject"\n'))
    r = cli("check", "--config", run["toml"], "--json")
    assert r.returncode == 1
    errors = {f["code"]: f["message"] for f in json.loads(r.stdout)["findings"] if f["level"] == "error"}
    assert set(errors) == {"steps-left", "template", "concept-folder"}
    assert errors["steps-left"].startswith("done is already at step 5 (≥ --steps 5); pass --steps M")
    assert errors["template"].startswith("--template 'nofile.txt' is neither a shipped template")
    assert errors["concept-folder"] == f"dataset folder {tmp_path / 'nope'} does not exist; pass --data with a " \
                                       "folder of training images"
    assert [d["path"] for d in json.loads(r.stdout)["datasets"]] == [str(run["b"])]  # the other is still checked
