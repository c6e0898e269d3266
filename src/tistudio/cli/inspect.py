"""`tistudio inspect FILE [--model M] [--compat [--on FAMILY]]`: what an embedding holds; with a model,
how it relates to the model's vocabulary; with --compat, which programs load it and under which trigger."""
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
    p.add_argument("--compat", action="store_true",
                   help="also show whether A1111, Forge, ComfyUI, kohya, InvokeAI and diffusers load it, "
                        "the trigger each uses and the fix")
    p.add_argument("--on", choices=("sd1", "sd2", "sdxl"), default=None,
                   help="with --compat: judge it on a model of this family (default: the file's own)")
    p.set_defaults(func=run)


def compat_table(verdicts) -> str:
    """One row per client: status, trigger, then why and the fix."""
    rows = [("client", "status", "trigger", "why / fix")]
    for v in verdicts:
        rows.append((v.client, v.status, v.trigger or "-", v.note + (f"; fix: {v.fix}" if v.fix else "")))
    wide = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], wide)) + "  " + r[3] for r in rows)


def run(args) -> int:
    import dataclasses
    import json

    from .. import api
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
    verdicts = api.compat(args.file, args.on) if args.compat else None
    if args.json:
        if verdicts is not None:
            info["compat"] = [dataclasses.asdict(v) for v in verdicts]
        print(json.dumps(info, indent=2))
    else:
        print(report(info))
        if verdicts is not None:
            print(f"\nwill it load? (on {args.on or 'its own'} model family)")
            print(compat_table(verdicts))
    return 0
