"""`tistudio inspect FILE [--model M]`: what an embedding holds and, with a model, how it relates
to the model's vocabulary."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="show an embedding's name, shape, step, base model and vector norms (or a hypernetwork's structure)",
        description="Describe an embedding file of any layout. With --model also compare its norms with "
                    "the vocabulary's and list the nearest vocabulary tokens of each vector.")
    p.add_argument("file", metavar="FILE", help="embedding file or diffusers folder")
    p.add_argument("--model", default=None, help="diffusers folder or single-file checkpoint (optional)")
    p.add_argument("--top", type=int, default=5, help="nearest tokens listed per vector (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..embedding.formats.describe import describe, report
    from ..embedding.formats.registry import read_embedding
    from ..errors import TIStudioError
    from ..hypernetwork import format as hn_format

    if args.top < 1:
        raise TIStudioError(f"--top {args.top}: give at least 1")
    hypernetwork = hn_format.sniff(args.file)
    if hypernetwork is not None:  # structure and which clients load it (docs/hypernetworks.md)
        print(json.dumps(hn_format.summary(hypernetwork), indent=2) if args.json else hn_format.describe(hypernetwork))
        return 0
    loaded = read_embedding(args.file)
    components = None
    if args.model:
        from ..models.load import load_model

        components = load_model(args.model)
    info = describe(loaded, components, args.top)
    print(json.dumps(info, indent=2) if args.json else report(info))
    return 0
