"""`tistudio toy {concepts, render, train-base, score}`: the toy world from the command line."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("toy", help="the toy world: held-out concepts, datasets, the toy base model",
                       description="A known world of coloured shapes, for measuring what an embedding "
                       "learns without downloading a real model.")
    toy = p.add_subparsers(dest="toy_command", metavar="TOY_COMMAND", required=True)

    c = toy.add_parser("concepts", help="list the held-out concepts (drawn by the toy model, never named)")
    c.set_defaults(func=run_concepts)

    r = toy.add_parser("render", help="write a dataset folder of one concept (PNG + .txt captions)")
    r.add_argument("--concept", required=True, help="'COLOUR SHAPE [on BACKGROUND]', e.g. 'teal star'")
    r.add_argument("--n", type=int, default=10, help="number of images (default 10)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=run_render)

    t = toy.add_parser("train-base", help="train the toy base model from scratch (about an hour on 2 shared cores)")
    t.add_argument("--out", help="output diffusers folder (default: the shipped toy-model folder)")
    t.add_argument("--steps", type=int, help="UNet + text encoder steps (default 5000)")
    t.add_argument("--vae-steps", type=int, help="VAE steps (default 600)")
    t.add_argument("--pool", type=int, help="scenes rendered and encoded once (default 20000)")
    t.add_argument("--eval-every", type=int, help="score caption accuracy every N steps (default 500)")
    t.add_argument("--init-from", help="a saved toy model folder to keep training instead of starting "
                   "from scratch (its VAE is kept)")
    t.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    t.add_argument("--seed", type=int, help="default 0")
    t.add_argument("--threads", type=int, help="torch CPU threads (default 1: on shared cores more threads spin and run slower)")
    t.set_defaults(func=run_train_base)

    s = toy.add_parser("score", help="caption accuracy of a toy model: colour/shape of drawn images")
    s.add_argument("--model", help="diffusers folder (default: the shipped toy model)")
    s.add_argument("--n", type=int, default=128, help="images to draw (default 128)")
    s.add_argument("--cfg", type=float, default=5.0, help="guidance scale (default 5)")
    s.add_argument("--sampler-steps", type=int, default=20, help="DDIM steps (default 20)")
    s.add_argument("--baselines", action="store_true",
                   help="also: how often each held-out concept's init word alone draws it")
    s.set_defaults(func=run_score)


def run_concepts(args) -> int:
    from ..toy.concepts import held_out_concepts
    from ..toy.scenes import COLOURS, SHAPES

    print("held-out concepts (init word in brackets):")
    for concept in held_out_concepts():
        print(f"  {concept.spec:<18} [{concept.init_word}]")
    print(f"any 'COLOUR SHAPE' is a valid --concept: colours {', '.join(COLOURS)}; "
          f"shapes {', '.join(SHAPES)}")
    return 0


def run_render(args) -> int:
    from ..errors import TIStudioError
    from ..toy.concepts import parse_concept
    from ..toy.dataset import render_concept

    if args.n < 1 or not 16 <= args.size <= 512:
        raise TIStudioError("--n must be at least 1 and --size between 16 and 512")
    concept = parse_concept(args.concept)
    paths = render_concept(concept, args.n, args.out, args.size, args.seed)
    print(f"wrote {len(paths)} images of {concept.spec!r} with captions to {args.out}")
    return 0


def run_train_base(args) -> int:
    from dataclasses import replace

    from ..toy import MODEL_ASSET
    from ..toy.base import BaseRecipe, train_base

    given = {"steps": args.steps, "vae_steps": args.vae_steps, "pool": args.pool,
             "eval_every": args.eval_every, "seed": args.seed, "threads": args.threads,
             "init_from": args.init_from, "lr": args.lr}
    recipe = replace(BaseRecipe(), **{k: v for k, v in given.items() if v is not None})
    report = train_base(recipe, args.out or MODEL_ASSET, log=lambda m: print(m, flush=True))
    final = report["final"] or {}
    print(f"caption accuracy: colour {final.get('colour', 0):.1%}, shape {final.get('shape', 0):.1%}")
    return 0


def run_score(args) -> int:
    from ..models.load import load_model
    from ..toy import default_model_path
    from ..toy.concepts import held_out_concepts
    from ..toy.evaluate import caption_accuracy, init_word_rate

    c = load_model(str(args.model or default_model_path()))
    options = dict(sampler_steps=args.sampler_steps, guidance=args.cfg)
    acc = caption_accuracy(c, args.n, **options)
    print(f"caption accuracy over {args.n} images: colour {acc['colour']:.1%}, "
          f"shape {acc['shape']:.1%}, both {acc['both']:.1%}")
    if args.baselines:
        for concept in held_out_concepts():
            rate = init_word_rate(c, concept, args.n, **options)
            print(f"init word {concept.init_word!r} alone draws {concept.spec!r}: {rate:.1%}")
    return 0
