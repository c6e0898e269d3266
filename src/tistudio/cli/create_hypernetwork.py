"""`tistudio create-hypernetwork NAME --model M [--modules 768,320,640,1280] [--layer-structure "1, 2, 1"]
[--activation linear] [--layer-norm] [--dropout "0, 0, 0"] [--init normal] [--out DIR] [--overwrite]`

A1111's Create hypernetwork, with its defaults; docs/hypernetworks.md."""
from __future__ import annotations


def register(sub) -> None:
    from ..hypernetwork.options import ACTIVATIONS, INITS

    p = sub.add_parser("create-hypernetwork", help="create a new hypernetwork file (A1111 format)",
                       description="Write DIR/NAME.pt: a hypernetwork in AUTOMATIC1111's format, read by "
                       "A1111 and ComfyUI. Train it with `tistudio train --hypernetwork DIR/NAME.pt`.")
    p.add_argument("name", help="the hypernetwork's name; also the file name (<hypernet:NAME:1> in prompts)")
    p.add_argument("--model", required=True, help="diffusers folder or .safetensors/.ckpt checkpoint")
    p.add_argument("--family", choices=["sd1", "sd2", "sdxl"], help="override the detected model family")
    p.add_argument("--modules", default=None, help="context widths to transform, e.g. 768,320,640,1280 "
                   "(default: every width the model's attention layers read; SD1: those four)")
    p.add_argument("--layer-structure", default="1, 2, 1",
                   help="layer width multipliers, first and last 1 (default \"1, 2, 1\")")
    p.add_argument("--activation", default="linear", choices=list(ACTIVATIONS),
                   help="activation after each layer but the last (default linear = none); ComfyUI reads "
                   "only linear, relu, leakyrelu, elu, swish, tanh, sigmoid, softsign, mish")
    p.add_argument("--activate-output", action="store_true", help="also apply the activation after the last layer")
    p.add_argument("--layer-norm", action="store_true", help="a LayerNorm after every layer")
    p.add_argument("--dropout", default=None, help="dropout probability per layer structure entry, first "
                   "and last 0, e.g. \"0, 0.3, 0\" (default: none)")
    p.add_argument("--init", default="normal", choices=list(INITS),
                   help="weight initialisation (default normal: N(0, 0.01); xavier/kaiming are the uniform kinds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    p.add_argument("--out", default="hypernetworks", help="output folder (default hypernetworks/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import api
    from ..embedding.embedding import validate_name
    from ..errors import TIStudioError
    from ..hypernetwork import format as hn_format
    from ..hypernetwork.model import Structure, parse_numbers
    from ..hypernetwork.options import INITS

    # Every check that needs no model first: a bad option must not wait for a multi-GB load.
    target = Path(args.out) / f"{validate_name(args.name)}.pt"
    if target.exists() and not args.overwrite:
        raise TIStudioError(f"{target} already exists; pass --overwrite to replace it or choose another name")
    modules = None
    if args.modules:
        try:
            modules = tuple(int(x) for x in args.modules.split(","))
        except ValueError:
            raise TIStudioError(f"--modules {args.modules!r}: give comma-separated widths, e.g. 768,320,640,1280") from None
    dropout = parse_numbers(args.dropout, "--dropout") if args.dropout else ()
    structure = Structure(layer_structure=parse_numbers(args.layer_structure, "--layer-structure"),
                          activation=args.activation, layer_norm=args.layer_norm,
                          dropout=dropout, weight_init=INITS[args.init],
                          activate_output=args.activate_output)
    c = api.load_model(args.model, family=args.family)
    path = api.create_hypernetwork(c, args.name, modules, structure, args.out, args.overwrite, args.seed)
    print(f"created {path}")
    print(hn_format.describe(hn_format.load(path)))
    return 0
