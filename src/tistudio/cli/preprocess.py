"""`tistudio preprocess SRC DST`: crop, flip, split and caption a folder of images."""
from __future__ import annotations

import argparse
import os
import sys

BLIP_ENV = "TISTUDIO_BLIP_MODEL"
TAGGER_ENV = "TISTUDIO_TAGGER_MODEL"
CONFIGURED = "<configured>"  # bare --blip / --tagger: take the path configured in the environment


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess", help="crop, flip, split and caption images into a training folder",
        description="Writes {index:05}-{sub}-{stem}.png, a .txt caption and, for transparent images, a "
                    "<name>_att.png loss-weight map into DST. SRC is never modified.",
        epilog=f"Captioner models are local only: --blip FOLDER, --tagger MODEL.onnx (tag list beside it "
               f"or --tags). A bare --blip/--tagger uses ${BLIP_ENV} / ${TAGGER_ENV}; put it after SRC DST "
               "or write --blip=PATH.")
    p.add_argument("src", metavar="SRC", help="folder of source images (read only)")
    p.add_argument("dst", metavar="DST", help="output folder, outside SRC")
    g = p.add_argument_group("size and crop")
    g.add_argument("--width", type=int, default=512)
    g.add_argument("--height", type=int, default=512)
    g.add_argument("--keep-size", action="store_true", help="no crop or resize (trimmed to a multiple of 8)")
    g.add_argument("--flip", action="store_true", help="also write a mirrored copy of every output")
    g.add_argument("--split", action="store_true", help="cut oversized images into overlapping tiles")
    g.add_argument("--split-threshold", type=float, default=0.5,
                   help="split when the image is more than 1+T times longer than the target shape")
    g.add_argument("--split-overlap", type=float, default=0.2, help="least overlap of neighbouring tiles")
    g.add_argument("--focal-crop", action="store_true", help="place the crop on faces, detail and edges")
    g.add_argument("--focal-face-weight", type=float, default=0.9)
    g.add_argument("--focal-entropy-weight", type=float, default=0.15)
    g.add_argument("--focal-edges-weight", type=float, default=0.5)
    g.add_argument("--focal-debug", action="store_true", help="write DST/focal_debug/*.png showing the evidence")
    g.add_argument("--auto-size", action="store_true", help="choose each image's size to fit its aspect")
    g.add_argument("--auto-min-dim", type=int, default=384)
    g.add_argument("--auto-max-dim", type=int, default=768)
    g.add_argument("--auto-min-area", type=int, default=64 * 64)
    g.add_argument("--auto-max-area", type=int, default=640 * 640)
    g.add_argument("--auto-objective", choices=["maximize-area", "minimize-error"], default="maximize-area")
    g.add_argument("--auto-threshold", type=float, default=0.1, help="largest aspect error accepted")
    g.add_argument("--auto-step", type=int, default=64, help="candidate sizes are multiples of this")
    g.add_argument("--alpha", choices=["weight", "flatten"], default="weight",
                   help="transparency: write an _att.png loss-weight map (default) or only flatten")
    g.add_argument("--background", default="#ffffff", help="colour under transparent pixels")
    g.add_argument("--max-pixels", type=int, default=100_000_000, help="skip images larger than this")
    c = p.add_argument_group("captions")
    c.add_argument("--blip", nargs="?", const=CONFIGURED, metavar="FOLDER", help="caption with BLIP")
    c.add_argument("--blip-beams", type=int, default=1)
    c.add_argument("--blip-min-length", type=int, default=5)
    c.add_argument("--blip-max-length", type=int, default=40)
    c.add_argument("--tagger", nargs="?", const=CONFIGURED, metavar="MODEL",
                   help="tag with a WD14/DeepDanbooru ONNX model (file or folder)")
    c.add_argument("--tags", metavar="FILE", help="the tagger's tag list (selected_tags.csv or tags.txt)")
    c.add_argument("--tagger-kind", choices=["auto", "wd14", "deepdanbooru"], default="auto")
    c.add_argument("--tag-threshold", type=float, default=0.75)
    c.add_argument("--sort-alphabetically", action="store_true", help="tags A-Z instead of best first")
    c.add_argument("--underscores", action="store_true", help="keep underscores in tags (default: spaces)")
    c.add_argument("--no-escape", action="store_true", help="leave ( ) [ ] unescaped")
    c.add_argument("--filter-tags", default="", help="comma-separated tags never written")
    c.add_argument("--include-scores", action="store_true", help="write tags as (tag:0.987)")
    c.add_argument("--existing-captions", choices=["ignore", "copy", "prepend", "append"], default="copy",
                   help="what to do with SRC/<stem>.txt: copy (default, as A1111: kept, captioners fill "
                   "only images without one), prepend/append to the captioners' text, or ignore")
    c.add_argument("--caption-encoding", default="utf-8", metavar="ENC",
                   help="encoding of SRC's .txt captions, e.g. cp1252 or shift_jis (default utf-8); "
                   "DST's captions are always written as UTF-8")
    c.add_argument("--caption-in-filename", action="store_true",
                   help="put the caption in the file name instead of a .txt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _model_path(value: str | None, env: str, flag: str):
    from pathlib import Path

    from ..errors import TIStudioError

    if value is None:
        return None
    if value == CONFIGURED:
        value = os.environ.get(env)
        if not value:
            raise TIStudioError(f"{flag}: no path given and ${env} is not set; write {flag}=PATH")
    return Path(value).expanduser()


def _colour(text: str) -> tuple[int, int, int]:
    from ..errors import TIStudioError

    hex_part = text.lstrip("#")
    if len(hex_part) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in hex_part):
        raise TIStudioError(f"--background {text}: use a colour like #ffffff")
    return tuple(int(hex_part[i:i + 2], 16) for i in (0, 2, 4))


def build_options(args: argparse.Namespace):
    from pathlib import Path

    from ..preprocess import (AutoSizeOptions, BlipOptions, CaptionOptions, FocalOptions,
                              PreprocessOptions, TaggerOptions)

    caption = CaptionOptions(
        blip=_model_path(args.blip, BLIP_ENV, "--blip"),
        tagger=_model_path(args.tagger, TAGGER_ENV, "--tagger"),
        tags=Path(args.tags) if args.tags else None,
        blip_options=BlipOptions(args.blip_beams, args.blip_min_length, args.blip_max_length),
        tagger_options=TaggerOptions(
            threshold=args.tag_threshold, sort_alphabetically=args.sort_alphabetically,
            use_spaces=not args.underscores, escape_brackets=not args.no_escape,
            filter_tags=tuple(t.strip() for t in args.filter_tags.split(",") if t.strip()),
            include_scores=args.include_scores, kind=args.tagger_kind),
        existing=args.existing_captions, encoding=args.caption_encoding, in_filename=args.caption_in_filename)
    focal = FocalOptions(args.focal_face_weight, args.focal_entropy_weight, args.focal_edges_weight,
                         args.focal_debug) if args.focal_crop else None
    auto = AutoSizeOptions(args.auto_min_dim, args.auto_max_dim, args.auto_min_area, args.auto_max_area,
                           args.auto_objective, args.auto_threshold, args.auto_step) if args.auto_size else None
    return PreprocessOptions(
        width=args.width, height=args.height, keep_size=args.keep_size, flip=args.flip, split=args.split,
        split_threshold=args.split_threshold, split_overlap=args.split_overlap, focal=focal, auto_size=auto,
        alpha=args.alpha, background=_colour(args.background), max_pixels=args.max_pixels, caption=caption)


def run(args: argparse.Namespace) -> int:
    from ..preprocess import preprocess

    report = preprocess(args.src, args.dst, build_options(args), progress=not args.no_progress)
    print(report.summary())
    if report.skipped:
        print(f"warning: {len(report.skipped)} files skipped (listed above)", file=sys.stderr)
    return 0
