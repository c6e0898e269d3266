"""`tistudio generate --model M --prompt P [--negative-prompt NP] [--embeddings DIR] ...`"""
from __future__ import annotations

from ..config import FAMILIES, PREDICTIONS, SAMPLERS


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate images with embeddings in the prompt",
                       description="txt2img; every embedding under --embeddings can be used by its "
                       "file name in the prompt or the negative prompt.")
    p.add_argument("--model", required=True, help="diffusers folder or .safetensors/.ckpt checkpoint")
    p.add_argument("--family", choices=FAMILIES)
    p.add_argument("--prediction", choices=PREDICTIONS)
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--embeddings", help="folder of embeddings (scanned recursively)")
    p.add_argument("--hypernetworks", help="folder of hypernetwork .pt files, applied by <hypernet:NAME:STRENGTH> "
                   "in the prompt (several chain in prompt order)")
    p.add_argument("--sampler", default="euler_a", choices=SAMPLERS)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0, help="classifier-free guidance scale (default 7)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (-1: random); image i uses seed+i")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--n", type=int, default=1, help="number of images")
    p.add_argument("--batch-size", type=int, default=4, help="images drawn together in one pipeline call "
                   "(default 4; lower it if memory runs out); each image keeps its own seed, so the images "
                   "are the same whatever the batch")
    p.add_argument("--clip-skip", type=int, default=1)
    p.add_argument("--out", default="outputs", help="output folder (default outputs/); images are named "
                   "NNNNN-SEED.png, numbered on from the files already there, never overwritten")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api
    from ..generate.files import check_out_dir
    from ..generate.sample import GenerateOptions
    from ..hypernetwork.apply import parse_tags, tagged_files

    options = GenerateOptions(prompt=args.prompt, negative_prompt=args.negative_prompt, sampler=args.sampler,
                              steps=args.steps, cfg=args.cfg, seed=args.seed, width=args.width,
                              height=args.height, n=args.n, batch_size=args.batch_size)
    tagged_files(args.hypernetworks, parse_tags(args.prompt)[1])  # a missing one: refused before anything is made
    check_out_dir(args.out)  # before loading a multi-GB model
    c = api.load_model(args.model, family=args.family, prediction=args.prediction)
    for path in api.generate(c, options, args.embeddings, args.out, args.clip_skip, say=print,
                             hypernetworks_dir=args.hypernetworks):
        print(f"wrote {path}")
    return 0
