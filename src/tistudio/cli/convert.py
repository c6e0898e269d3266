"""`tistudio convert IN OUT`: any readable embedding layout to any writable one, vectors bit-identical."""
from __future__ import annotations

from ..config import EMBEDDING_FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert an embedding between formats",
        description="Read any embedding layout (A1111 .pt/PNG/WebP, .safetensors, .bin, diffusers folder) "
                    "and write it in another. Vectors are copied bit for bit. OUT may be IN: the file is "
                    "rewritten in place in the layout every client loads (a repair; see inspect --compat).")
    p.add_argument("src", metavar="IN", help="embedding file or diffusers folder")
    p.add_argument("dest", metavar="OUT", help="output file (or folder for --to diffusers)")
    p.add_argument("--to", choices=EMBEDDING_FORMATS, default=None,
                   help="output format (default: from OUT's extension: .pt, .png, .safetensors, .bin, folder)")
    p.add_argument("--name", default=None,
                   help="embedding name to store (default: the input's trigger name)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..embedding.formats.registry import convert

    loaded, out = convert(args.src, args.dest, args.to, args.name)
    emb = loaded.embedding
    print(f"{args.src} -> {out}: {emb.n_vectors} vectors x {'+'.join(map(str, emb.widths))}, "
          f"step {emb.step}, name {args.name or emb.name!r}")
    return 0
