"""`tistudio check DATASET`: the dataset doctor. Exit 0 when the dataset is usable (even with
warnings), 1 when it is not (no usable image)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="report what in a training folder will hurt an embedding",
        description="Counts, sizes, aspect ratios, small images, exact/near duplicates, flipped copies, "
                    "missing/orphan captions, the embedding name inside captions, and the guide's advice.")
    p.add_argument("dataset", metavar="DATASET", help="folder of training images and .txt captions")
    p.add_argument("--width", type=int, default=512, help="training width")
    p.add_argument("--height", type=int, default=512, help="training height")
    p.add_argument("--no-buckets", dest="buckets", action="store_const", const=False, default=None,
                   help="as train --no-buckets: every image at --width x --height")
    p.add_argument("--buckets", dest="buckets", action="store_const", const=True,
                   help="as train --buckets (default: buckets when the aspect ratios differ)")
    p.add_argument("--bucket-step", type=int, default=64, help="as train --bucket-step (default 64)")
    p.add_argument("--name", help="embedding name: warn when captions contain it")
    p.add_argument("--subject", choices=["character", "style"], default="character")
    p.add_argument("--near-distance", type=int, default=6,
                   help="perceptual-hash bits (of 64) within which two images count as near duplicates")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text
    from ..preprocess import check_dataset

    report = check_dataset(args.dataset, width=args.width, height=args.height, name=args.name,
                           subject=args.subject, near_distance=args.near_distance, buckets=args.buckets,
                           bucket_step=args.bucket_step)
    print(report.to_json() if args.json else report.table())
    if args.report:
        write_text(args.report, report.to_json() + "\n")
    return 0 if report.usable else 1
