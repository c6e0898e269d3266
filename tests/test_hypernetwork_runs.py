"""Hypernetwork runs on the run-folder machinery (runs/): names from RunFolder, one run per file
(identity and NAME-2), --steps as a target, the damaged-state way on, the web UI's folder; and
generate's never-overwrite names and prompt notes with <hypernet:...> tags in the prompt."""
from __future__ import annotations

from pathlib import Path

import pytest

from tistudio import api
from tistudio.cli.main import main
from tistudio.config import ModelConfig, TrainConfig
from tistudio.errors import TIStudioError
from tistudio.events import Message
from tistudio.generate.sample import GenerateOptions
from tistudio.hypernetwork import format as hn_format
from tistudio.hypernetwork.model import Structure
from tistudio.runs.folder import RunFolder, best_beside, final_hypernetwork
from tistudio.runs.identity import folder_for
from tistudio.train.run import train

from run_config import steps_in, tree

NO_MODEL = "/nonexistent/model"  # a run that gets as far as loading the model fails on this


def config(hn, data, root, **kw) -> TrainConfig:
    base = dict(method="hypernetwork", hypernetwork=str(hn), data=str(data), steps=2, width=64, height=64,
                save_every=2, preview_every=0, log_dir=str(root / "runs"), lr="0.001", template="hypernetwork",
                plot=False)
    return TrainConfig(**{**base, **kw})


def make(c, folder: Path, seed: int = 0) -> Path:
    return api.create_hypernetwork(c, "hn", structure=Structure(), out_dir=folder, seed=seed)


def test_hypernetwork_names_come_from_the_run_folder(tmp_path):
    run = RunFolder(tmp_path / "runs" / "v1.5", "v1.5")
    assert run.hypernetwork_snapshot(500) == run.root / "hypernetworks" / "v1.5-500.pt"
    assert run.hypernetwork_best() == run.root / "hypernetworks" / "v1.5-best.pt"
    assert str(final_hypernetwork(None, "hns/v1.5.pt")) == "hns/v1.5.pt"  # trained in place, as A1111 does
    assert str(final_hypernetwork("out/x.pt", "hns/v1.5.pt")) == "out/x.pt"
    assert str(best_beside(final_hypernetwork(None, "hns/v1.5.pt"), "a1111-pt")) == "hns/v1.5-best.pt"
    for step in (2, 4, 6):
        run.hypernetworks.mkdir(parents=True, exist_ok=True)
        (run.hypernetworks / f"v1.5-{step}.pt").write_bytes(b"x")
    (run.hypernetworks / "v1.5-best.pt").write_bytes(b"x")
    assert [s for s, _ in run.hypernetwork_snapshots()] == [6, 4, 2]
    assert sorted(p.name for p in run.prune_snapshots(1)) == ["v1.5-2.pt", "v1.5-4.pt"]
    assert sorted(p.name for p in run.hypernetworks.iterdir()) == ["v1.5-6.pt", "v1.5-best.pt"]


def test_output_must_be_a_pt_file():
    with pytest.raises(TIStudioError, match=r"--output out/hn.safetensors: a hypernetwork is saved in "
                                            r"A1111's format only; end the path in \.pt"):
        TrainConfig(method="hypernetwork", hypernetwork="hn.pt", data="d", output="out/hn.safetensors")


def test_one_run_per_hypernetwork_file_and_the_same_file_continues(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    first = make(c, tmp_path / "a")
    r1 = train(config(first, dataset, tmp_path), components=c, progress=False)
    run = tmp_path / "runs" / "hn"
    assert r1.run_dir == str(run) and RunFolder.open(run).name == "hn"
    # The file it wrote (in place: no --output) trained further is the same run, in the same folder.
    r2 = train(config(first, dataset, tmp_path, steps=4), components=c, progress=False)
    assert r2.run_dir == str(run) and steps_in(run) == [1, 2, 3, 4]
    assert hn_format.load(run / "hypernetworks" / "hn-4.pt").step == 4
    before = tree(run)
    other = make(c, tmp_path / "b", seed=1)  # the same name, other weights
    messages = []
    r3 = train(config(other, dataset, tmp_path), components=c, progress=False,
               callback=lambda e: messages.append(e.text) if isinstance(e, Message) else None)
    assert r3.run_dir == str(tmp_path / "runs" / "hn-2") and steps_in(Path(r3.run_dir)) == [1, 2]
    assert tree(run) == before
    assert any("runs/hn is the run of another hypernetwork named hn" in m and "hn-2" in m for m in messages), messages


def test_steps_already_reached_fails_before_loading_and_touches_nothing(tiny_models, dataset, tmp_path, capsys):
    c = tiny_models["sd1"]
    path = make(c, tmp_path / "hns")
    train(config(path, dataset, tmp_path), components=c, progress=False)
    assert hn_format.load(path).step == 2
    before = {**tree(tmp_path / "runs"), **tree(path.parent)}
    code = main(["train", "--quiet", "--model", NO_MODEL, "--hypernetwork", str(path), "--data", str(dataset),
                 "--steps", "2", "--log-dir", str(tmp_path / "runs")])
    assert code == 2 and capsys.readouterr().err == (
        "error: hn is already at step 2 (≥ --steps 2); pass --steps M to train M−2 more "
        "(e.g. --steps 4 for 2 more)\n")
    assert {**tree(tmp_path / "runs"), **tree(path.parent)} == before


def test_damaged_state_names_the_newest_intact_hypernetwork_snapshot(tiny_models, dataset, tmp_path):
    c = tiny_models["sd1"]
    path = make(c, tmp_path / "hns")
    train(config(path, dataset, tmp_path, steps=4), components=c, progress=False)
    run = tmp_path / "runs" / "hn"
    (run / "state.pt").write_bytes(b"not a torch file")
    (run / "hypernetworks" / "hn-4.pt").write_bytes(b"\x00" * 10)
    cfg = config(path, dataset, tmp_path, steps=6, model=ModelConfig(NO_MODEL))
    with pytest.raises(TIStudioError) as err:
        train(cfg, progress=False, resume=str(run))
    assert (f"continue from the newest intact snapshot with --hypernetwork {run / 'hypernetworks' / 'hn-2.pt'} "
            f"(step 2, without --resume), or delete {run / 'state.pt'} to --resume from step 0") in str(err.value)


def test_the_web_ui_finds_the_folder_by_the_stored_name(tiny_models, dataset, tmp_path):
    """A trained hypernetwork saved as final.pt still names its run by its stored name, hn."""
    c = tiny_models["sd1"]
    path = make(c, tmp_path / "hns")
    out = tmp_path / "out" / "final.pt"
    train(config(path, dataset, tmp_path, output=str(out)), components=c, progress=False)
    run = folder_for(tmp_path / "runs", out)
    assert run.name == "hn" and run.root == tmp_path / "runs" / "hn"


def test_generate_keeps_numbered_names_and_notes_with_hypernet_tags(tiny_models, tmp_path):
    c = tiny_models["sd1"]
    make(c, tmp_path / "hns")
    notes = []
    opts = dict(steps=1, width=64, height=64, seed=5)
    for _ in range(2):
        api.generate(c, GenerateOptions(prompt="a red square <hypernet:hn:0.5>", **opts), out_dir=tmp_path / "o",
                     hypernetworks_dir=tmp_path / "hns", say=notes.append)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["00000-5.png", "00001-5.png"]
    # The tag names a hypernetwork, not an embedding: no "matches no embedding" note for it (and with
    # no embeddings and nothing odd there is no note at all).
    assert notes == []


def test_the_train_status_judges_a_hypernetwork_output_and_not_its_optim(tmp_path):
    from tistudio.events import Finished, Progress
    from tistudio.hypernetwork.model import create
    from tistudio.webui.jobs import JobView
    from tistudio.webui.tab_train_output import saved_text

    pt = hn_format.save(create("hn", (32, 16), Structure(activation="gelu")), tmp_path / "hn.pt")
    optim = hn_format.save_optim(pt, {"state": {}, "param_groups": []})
    view = JobView(id=1, name="hn", status="finished", cfg=None, resume=None, points=(),
                   last=Progress(3, 3, 0.1, 0.01, 0, 2, 0.5, 0.0), previews=(), saved=(), messages=(),
                   finished=Finished(3, "completed", (str(pt), str(optim))), error=None, run_dir=str(tmp_path))
    text = saved_text(view)
    assert f"`{pt}` loads in: A1111 ✓ · ComfyUI ✗\n- ComfyUI (refused): its loader knows only" in text
    assert "no embedding found" not in text and f"`{optim}` loads in" not in text
