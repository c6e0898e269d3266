"""`tistudio inspect FILE [--model M]`: what an embedding holds and, with a model, how it relates
to the model's vocabulary."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="show an embedding's name, shape, step, base model and vector norms",
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

    if args.top < 1:
        raise TIStudioError(f"--top {args.top}: give at least 1")
    loaded = read_embedding(args.file)
    components = None
    if args.model:
        from ..models.load import load_model

        components = load_model(args.model)
        vocabulary = len(components.tokenizer)
        if args.top > vocabulary:
            raise TIStudioError(f"--top {args.top}: the vocabulary has {vocabulary} tokens; give at most "
                                f"{vocabulary} (e.g. --top 5)")
    info = describe(loaded, components, args.top)
    print(json.dumps(info, indent=2) if args.json else report(info))
    return 0
