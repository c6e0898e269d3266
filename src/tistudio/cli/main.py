"""`tistudio` command line: argv -> config -> api. No training logic lives here.

Each subcommand is a module in this package with `register(subparsers)`; its parser sets `func`,
called with the parsed namespace. Modules import heavy libraries inside `func`, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import TIStudioError
from ..train.speed import quiet_openmp

COMMANDS = ["create", "create_hypernetwork", "train", "generate", "convert", "inspect", "preprocess", "check", "runs",
            "toy", "bench", "webui"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tistudio", description="Train Textual Inversion and "
                                     "DreamArtist embeddings for Stable Diffusion 1.x, 2.x and XL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # a listed command without its module fails here, never goes missing quietly
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def set_environment() -> None:
    """The libraries' settings every `tistudio` process runs with; they take effect when the
    libraries load, so a process that runs `main` in itself (the tests) calls this first."""
    # Never the network: any hub access becomes an error instead of a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Our own bars show progress; the libraries' per-file loading bars are noise around them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    # Idle OpenMP threads sleep (train/speed.py says why). Here, not in a command: building the
    # parser already loads torch (the runs command reads embedding formats), and libgomp reads the
    # setting once, when it loads. Set later, it was ignored: a toy step under load took 16x longer.
    quiet_openmp()


def main(argv: list[str] | None = None) -> int:
    set_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except TIStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    return int(result or 0)


def _reader_gone() -> int:
    """The reader of our output went away (`tistudio inspect FILE | head -1`): stop quietly, as cat
    does. stdout is pointed at /dev/null so the interpreter's final flush cannot fail again; the
    status is the shell's for a process ended by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
