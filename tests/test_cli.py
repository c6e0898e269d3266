"""The CLI as a user runs it, in process (the `cli` fixture): real files, one-line errors.
test_cli_smoke.py runs each command once in its own process."""
import torch

from tistudio.embedding.formats import load_embedding


def test_resume_from_run_folder_and_toml_config(cli, tiny_model_dirs, dataset, tmp_path):
    model = tiny_model_dirs["sd1"]
    assert cli("create", "tok", "--model", model, "--out", tmp_path).returncode == 0
    toml = tmp_path / "run.toml"
    toml.write_text(f'embedding = "{tmp_path / "tok.pt"}"\ndata = "{dataset}"\nsteps = 2\nwidth = 64\n'
                    f'height = 64\nsave_every = 0\npreview_every = 0\nlog_dir = "{tmp_path / "runs"}"\n'
                    f'lr = "0.01"\n[model]\nmodel = "{model}"\n')
    r = cli("train", "--config", toml, "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("train", "--resume", tmp_path / "runs" / "tok", "--steps", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stdout and "completed at step 4" in r.stdout
    emb = load_embedding(tmp_path / "tok.pt")
    assert emb.step == 4 and torch.isfinite(emb.vectors[0]).all()


def test_errors_are_one_line(cli, tiny_model_dirs, tmp_path):
    model = tiny_model_dirs["sd1"]
    cli("create", "tok", "--model", model, "--out", tmp_path)
    cases = [
        (["train", "--model", model, "--embedding", tmp_path / "tok.pt", "--data", tmp_path / "nope"], "nope"),
        (["train", "--model", tmp_path / "no-model", "--embedding", tmp_path / "tok.pt", "--data", tmp_path],
         "no-model"),
        (["train", "--model", model, "--embedding", tmp_path / "tok.pt", "--data", tmp_path, "--width", "100"],
         "--width 100"),
        (["generate", "--model", model, "--prompt", "x", "--sampler", "ddim", "--width", "30"], "--width 30"),
        (["train", "--config", tmp_path / "missing.toml"], "missing.toml"),
    ]
    for args, fragment in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr and err[-1].startswith("error: ") and fragment in err[-1], r.stderr
        assert len(err) == 1, r.stderr
