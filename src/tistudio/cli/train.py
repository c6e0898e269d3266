"""`tistudio train --model M --embedding FILE --data DIR [--config run.toml] [flags]`

The flags are made from the config's fields (config/options.py): one argparse group per config
group, each flag's help and default from its field. Options given on the command line override the
TOML file; options not given keep its values or the defaults. With --resume the run's saved
config.toml is used, and only the options that may change on resume (config.RESUMABLE) may differ
from it."""
from __future__ import annotations

import os
import signal
import sys

from ..config import (GROUPS, RESUMABLE, Option, TrainConfig, all_options, default_text, from_dict, grouped,
                      load_toml, merge, method_defaults, nested, option_name)
from ..errors import TIStudioError

INTERRUPTED = 130  # 128 + SIGINT, what main() returns for an aborted run too
ARG_TYPES = {"str": str, "int": int, "float": float}


def _help(opt: Option) -> str:
    """The field's help with its choices and default, as argparse prints it (% is its format sign)."""
    notes = [" | ".join(opt.choices)] if opt.choices else []
    negative = opt.flag.startswith("--no-")
    if default_text(opt) and (opt.kind != "bool" or negative):  # a plain switch is off until given
        notes.append(f"default: {default_text(opt)}")
    if negative:
        notes.append("this flag turns it off")
    return (opt.help + (f" ({'; '.join(notes)})" if notes else "")).replace("%", "%%")


def _add(group, opt: Option) -> None:
    if opt.kind == "tables":  # [[concept]], [[embeddings]]: from repeated --data, --reg-data, --embedding
        return
    if opt.key == "embedding":  # repeatable: files after the first are more embeddings of the run
        group.add_argument(opt.flag, dest=opt.dest, action="append", default=None, metavar="FILE", help=_help(opt))
        return
    if opt.key == "data":  # repeatable: folders after the first become concepts
        group.add_argument(opt.flag, dest=opt.dest, action="append", default=None, metavar="DIR", help=_help(opt))
        group.add_argument("--reg-data", action="append", default=None, metavar="DIR",
                           help="folder of regularization images (repeatable): drawn as often as the training "
                           "images, their loss x --prior-loss-weight")
    elif opt.kind == "bool":  # a --no-X flag stores False, any other True
        group.add_argument(opt.flag, dest=opt.dest, action="store_const", const=not opt.flag.startswith("--no-"),
                           default=None, help=_help(opt))
        if opt.optional and not opt.flag.startswith("--no-"):  # None decides elsewhere: both answers are flags
            group.add_argument("--no-" + opt.flag[2:], dest=opt.dest, action="store_const", const=False,
                               help=f"turn {opt.flag} off")
    elif opt.kind == "list":  # repeatable; argparse names a bad value with the choices
        group.add_argument(opt.flag, dest=opt.dest, action="append", default=None, choices=opt.choices or None,
                           help=_help(opt))
    else:  # choices are checked by the config, whose one-line error gives the fix
        group.add_argument(opt.flag, dest=opt.dest, type=ARG_TYPES[opt.kind], default=None, help=_help(opt),
                           metavar=opt.flag[2:].upper().replace("-", "_"))


def register(sub) -> None:
    p = sub.add_parser("train", help="train an embedding (or a hypernetwork) on a folder of images",
                       description="Train a Textual Inversion embedding, a DreamArtist pair or (--hypernetwork) "
                       "an A1111 hypernetwork into the run folder LOG_DIR/NAME (NAME-2 … when that folder "
                       "is another file's run). --steps is the step to reach, counted from the file's "
                       "stored step. Ctrl-C saves and stops; --resume RUN_DIR continues exactly where it "
                       "stopped. Every option is also a key of a --config TOML file (docs/options.md).")
    for name, opts in grouped().items():
        group = p.add_argument_group(GROUPS[name])
        for opt in opts:
            _add(group, opt)
    p.add_argument("--config", help="TOML file with any of these options (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run in its folder (LOG_DIR/NAME) with the "
                   "options of its config.toml; only these may change: "
                   + " ".join(sorted(option_name(f) for f in RESUMABLE)))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def overrides_from(args) -> dict:
    """The options given on the command line, as a config dict (nested sections as tables)."""
    values = {o.key: getattr(args, o.dest) for o in all_options()
              if o.kind != "tables" and getattr(args, o.dest, None) is not None}
    folders = values.pop("data", [])
    files = values.pop("embedding", [])
    given = nested({k: tuple(dict.fromkeys(v)) if isinstance(v, list) else v for k, v in values.items()})
    if folders:
        given["data"] = folders[0]
    given.update(embedding_overrides(files))
    # More folders become [[concept]] tables, replacing the --config file's (flags override the file).
    extra = [{"path": d} for d in folders[1:]] + [{"path": d, "is_reg": True} for d in args.reg_data or []]
    if extra:
        given["concept"] = extra
    if given.get("hypernetwork"):
        given.setdefault("method", "hypernetwork")
    return given


def embedding_overrides(files: list[str]) -> dict:
    """Repeated --embedding FILE: the first is `embedding`; more files become [[embeddings]] tables,
    replacing the --config file's."""
    given = {"embedding": files[0]} if files else {}
    if files[1:]:
        given["embeddings"] = [{"path": f} for f in files[1:]]
    return given


def fresh_config(config: str | None, given: dict) -> TrainConfig:
    """The --config file (if any) with the command line's options on top, as a new run has it."""
    base = load_toml(config) if config else {}
    return from_dict(TrainConfig, method_defaults(merge(base, given)), config or "command line")


def build_config(args) -> TrainConfig:
    from ..train.session import config_for_resume, show  # loads torch: `tistudio --help` stays instant

    given = overrides_from(args)
    if args.resume:
        if args.config:
            raise TIStudioError(f"--config {args.config} with --resume: a resumed run keeps its own "
                                f"{args.resume}/config.toml; drop --config (flags may still change "
                                "what --resume allows)")
        cfg, changed = config_for_resume(args.resume, given, label=option_name)
        for name, old, new in changed:
            print(f"info: --resume: {option_name(name)} {show(new)} (was {show(old)})", flush=True)
        return cfg
    return fresh_config(args.config, given)


def run(args) -> int:
    from ..train.distributed import launch, launched

    cfg = build_config(args)
    if cfg.num_processes > 1 and not launched():
        return launch(_own_argv(), cfg.num_processes)
    from ..api import train
    from ..events import Message, StopToken

    main_process = int(os.environ.get("RANK", "0")) == 0
    stop = StopToken()

    def on_signal(signum, frame):  # first Ctrl-C: save and stop after this step; second: abort
        if stop.stopped:
            raise KeyboardInterrupt
        print("\nstopping after this step and saving (Ctrl-C again to abort)...", flush=True)
        stop.stop()

    def on_event(event):
        if isinstance(event, Message):
            print(f"{event.level}: {event.text}", flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    result = train(cfg, callback=on_event, stop=stop, progress=not args.quiet and main_process,
                   resume=args.resume)
    if not main_process:
        return 0
    print(f"{result.reason} at step {result.step}, last loss {result.last_loss:.4f}")
    for path in result.outputs:
        print(f"saved {path}")
    print(f"run folder: {result.run_dir}")
    # One Ctrl-C (or SIGTERM) saves and stops, a second aborts: both are interruptions, so both exit
    # 130 as shells expect of Ctrl-C; a script tells "saved" from "aborted" by the files, not the status.
    return INTERRUPTED if result.reason == "interrupted" else 0


def _own_argv() -> list[str]:
    """This command line, for the processes launch() starts (they see WORLD_SIZE and join)."""
    argv = sys.argv[1:]
    if "train" not in argv:
        raise TIStudioError("--num-processes works from the command line (`tistudio train ...`); from "
                            "Python, start the processes with accelerate launch or torchrun")
    return argv
