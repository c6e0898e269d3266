"""`tistudio check DATASET`: the dataset doctor. Exit 0 when the dataset is usable (even with
warnings), 1 when it is not (no usable image).

`tistudio check --config RUN.toml` or `check [DATASET] --embedding FILE [--embedding FILE ...]
--model M`: the training run that config and these options describe (as `train` reads them), per
embedding and per concept (train/preflight.py); exit 1 when `train` would refuse it."""
from __future__ import annotations

import argparse

from ..errors import TIStudioError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="report what in a training folder (or a whole run's config) will hurt an embedding",
        description="Counts, sizes, aspect ratios, small images, exact/near duplicates, flipped copies, "
                    "missing/orphan captions, the embedding name inside captions, and the guide's advice. "
                    "With --config or --embedding: the run as `train` would start it, each embedding "
                    "(file, family, width against the model's, trigger, vectors, which programs load it), "
                    "the refusals train makes before loading, and every concept's folder.")
    p.add_argument("dataset", metavar="DATASET", nargs="?", help="folder of training images and .txt captions "
                   "(with --config/--embedding: the run's --data)")
    p.add_argument("--config", metavar="FILE", help="check the run of this train --config TOML file")
    p.add_argument("--embedding", action="append", metavar="FILE",
                   help="check a run training this embedding (repeatable: several embeddings, as in train)")
    p.add_argument("--model", help="with --config/--embedding: the run's --model")
    p.add_argument("--width", type=int, default=None, help="training width (default 512, or the run's)")
    p.add_argument("--height", type=int, default=None, help="training height (default 512, or the run's)")
    p.add_argument("--no-buckets", dest="buckets", action="store_const", const=False, default=None,
                   help="as train --no-buckets: every image at --width x --height")
    p.add_argument("--buckets", dest="buckets", action="store_const", const=True,
                   help="as train --buckets (default: buckets when the aspect ratios differ)")
    p.add_argument("--bucket-step", type=int, default=None, help="as train --bucket-step (default 64)")
    p.add_argument("--name", help="embedding name: warn when captions contain it (a run's are its embeddings')")
    p.add_argument("--subject", choices=["character", "style"], default="character")
    p.add_argument("--near-distance", type=int, default=6,
                   help="perceptual-hash bits (of 64) within which two images count as near duplicates")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text

    report = _run_check(args) if args.config or args.embedding else _dataset_check(args)
    print(report.to_json() if args.json else report.table())
    if args.report:
        write_text(args.report, report.to_json() + "\n")
    return 0 if report.usable else 1


def _dataset_check(args: argparse.Namespace):
    from ..preprocess import check_dataset

    if not args.dataset:
        raise TIStudioError("check: give DATASET (a folder of training images), or --config RUN.toml / "
                            "--embedding FILE to check a whole run")
    if args.model:
        raise TIStudioError(f"--model {args.model}: a model is checked with a run; add --embedding FILE or --config")
    return check_dataset(args.dataset, width=args.width or 512, height=args.height or 512, name=args.name,
                         subject=args.subject, near_distance=args.near_distance, buckets=args.buckets,
                         bucket_step=args.bucket_step or 64)


def _run_check(args: argparse.Namespace):
    from .. import api
    from .train import embedding_overrides, fresh_config

    if args.name:
        raise TIStudioError(f"--name {args.name}: a run's names are its embeddings' own triggers; drop --name")
    given = embedding_overrides(args.embedding or [])
    flags = {"data": args.dataset, "width": args.width, "height": args.height, "buckets": args.buckets,
             "bucket_step": args.bucket_step}
    given.update({k: v for k, v in flags.items() if v is not None})
    if args.model:
        given["model"] = {"model": args.model}
    cfg = fresh_config(args.config, given)  # train's own reading: a config it refuses is refused here
    return api.check_run(cfg, args.config or "command line", args.near_distance, args.subject)
