"""`tistudio bench fidelity --concept SPEC [--method ti|dreamartist] [--steps N] ...`: does an
embedding learn a concept? Measured on the toy model (docs/toy.md)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: concept fidelity on the toy model",
                       description="Measure what training achieves on a model whose world is known.")
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND", required=True)

    f = bench.add_parser(
        "fidelity", help="train an embedding of a toy concept and score its samples with the classifier",
        description="Render ~10 images of a toy-world concept, train an embedding from its init word on "
        "the shipped toy model, draw --samples images from template prompts holding it, and report the "
        "share the classifier reads as the concept, beside the init word alone (the baseline).")
    f.add_argument("--concept", action="append", required=True,
                   help="'COLOUR SHAPE', e.g. 'teal star'; repeat for several, or 'held-out' for all four "
                   "held-out concepts")
    f.add_argument("--method", action="append", choices=["ti", "dreamartist", "hypernetwork"],
                   help="ti (default), dreamartist or hypernetwork; repeat to run several")
    f.add_argument("--steps", type=int, help="training steps (default 1000; hypernetwork 4000)")
    f.add_argument("--lr", help="learning rate or schedule (default '0.1:250, 0.07:500, 0.035:750, 0.01'; "
                   "hypernetwork '0.002:2000, 0.0005')")
    f.add_argument("--vectors", type=int, help="vectors per token (default 1)")
    f.add_argument("--samples", type=int, help="images drawn for each score (default 64)")
    f.add_argument("--images", type=int, help="rendered training images (default 10)")
    f.add_argument("--seed", type=int, help="dataset, training and sampling seed (default 0)")
    f.add_argument("--threads", type=int, help="torch CPU threads (default 1: faster on shared cores)")
    f.add_argument("--out", default="outputs/fidelity",
                   help="output folder; one subfolder per concept and method (default outputs/fidelity)")
    f.set_defaults(func=run_fidelity)


def run_fidelity(args) -> int:
    from pathlib import Path

    from ..toy.concepts import held_out_concepts, parse_concept
    from ..toy.fidelity import for_method, format_table, run_fidelity as run_one, with_overrides, write_json

    concepts = []
    for spec in args.concept:
        concepts += held_out_concepts() if spec.strip().lower() == "held-out" else [parse_concept(spec)]
    given = dict(steps=args.steps, lr=args.lr, vectors=args.vectors, samples=args.samples,
                 images=args.images, seed=args.seed, threads=args.threads)
    runs = [(concept, with_overrides(for_method(method), **given))
            for concept in concepts for method in (args.method or ["ti"])]  # settings checked up front
    out = Path(args.out)
    results = []
    for concept, settings in runs:
        folder = out / f"{concept.spec.replace(' ', '-')}-{settings.method}"
        print(f"== {concept.spec} ({settings.method}) -> {folder}", flush=True)
        results.append(run_one(concept, settings, folder, progress=True, log=lambda m: print(m, flush=True)))
    path = write_json(results, out / "fidelity.json")
    print()
    print(format_table(results))
    print(f"\nJSON: {path}")
    return 0
