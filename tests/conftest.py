"""Shared fixtures: tiny random models of each family (built once per session, also saved as
diffusers folders for CLI runs), a small dataset of real image files with captions, and `cli`, the
command line run in this process."""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

from tistudio.cli.main import main, set_environment

set_environment()  # as a `tistudio` process has it (offline, no loading bars) before the libraries load

import pytest  # noqa: E402
import torch  # noqa: E402

# Under pytest-xdist (`-n N`) the N workers share the cores.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _process_state():
    """What a command run in this process may change for the whole process (`train` installs
    Ctrl-C/SIGTERM handlers and sets the thread count, `main` sets HF_* variables), put back after
    every test so the next one starts as a fresh `tistudio` process would."""
    env, cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    os.chdir(cwd)
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)


@dataclass(frozen=True)
class CliResult:
    """What a test reads of a `tistudio` run: the names subprocess.CompletedProcess uses."""
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """`cli("train", "--model", dir, ...)` runs `tistudio train ...` in this process through
    tistudio.cli.main.main and returns its exit status and output. argparse's exits become the
    status; `cwd` and `env` hold for that one call, as they would for a subprocess."""
    def run(*args, cwd=None, env=None) -> CliResult:
        capsys.readouterr()  # what the test printed before is not this command's output
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def tiny_models():
    """{family: Components}. Tests must not modify their weights (they are frozen)."""
    from tiny_models import build_tiny

    return {f: build_tiny(f) for f in ("sd1", "sd2", "sdxl")}


@pytest.fixture(scope="session")
def tiny_model_dirs(tiny_models, tmp_path_factory):
    """{family: path of a diffusers folder holding the same weights as tiny_models[family]}."""
    from tistudio.models.diffusers_folder import save_diffusers_folder

    root = tmp_path_factory.mktemp("tiny-models")
    return {f: save_diffusers_folder(c, root / f) for f, c in tiny_models.items()}


@pytest.fixture
def dataset(tmp_path):
    """Four 64-px images of coloured squares, captioned by file name ("00000-0-a red square.png")."""
    from shapes_dataset import write_shapes_dataset

    return write_shapes_dataset(tmp_path / "data", n=4)


@pytest.fixture(scope="session")
def toy_model_dir():
    """The shipped toy model (tistudio.toy): the model for tests that need one that can really learn
    (fast plumbing tests keep the tiny random models)."""
    from tistudio.toy import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def toy_model(toy_model_dir):
    """The toy model's Components. Tests must not modify its weights."""
    from tistudio.models.load import load_model

    return load_model(toy_model_dir)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium for the browser tests (-m browser); playwright is imported here
    because only those tests need it."""
    from playwright import sync_api
    from test_webui_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
