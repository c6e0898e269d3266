"""`tistudio create NAME --model M [--init-text T] [--vectors N] [--overwrite] [--out DIR]`

`--method dreamartist` creates the pair NAME and NAME-neg (`--neg-vectors`, `--neg-init-text`)."""
from __future__ import annotations

from ..embedding.names import NAME_RULE


def register(sub) -> None:
    p = sub.add_parser("create", help="create a new embedding file from an init text",
                       description="Create DIR/NAME.pt whose vectors copy the init text's token embeddings.")
    p.add_argument("name", help=f"the trigger word, also the file name without extension ({NAME_RULE})")
    p.add_argument("--model", required=True, help="diffusers folder or .safetensors/.ckpt checkpoint")
    p.add_argument("--family", choices=["sd1", "sd2", "sdxl"], help="override the detected model family")
    p.add_argument("--init-text", default="*", help="words to start from, e.g. '1girl' or 'painting' "
                   "(default '*'; empty gives zero vectors)")
    p.add_argument("--init", choices=["words", "cross", "zeros", "random"], default="words",
                   help="words: copy the init text's token embeddings (default, A1111); cross: the text "
                   "encoder's output for them (Cross Initialization, docs/recipe.md); zeros; random "
                   "directions at the vocabulary's median norm")
    p.add_argument("--vectors", type=int, default=None,
                   help="vectors per token, 1-75 (default 1; 3 with --method dreamartist)")
    p.add_argument("--method", choices=["ti", "dreamartist"], default="ti",
                   help="dreamartist: also create NAME-neg, the negative embedding")
    p.add_argument("--neg-vectors", type=int, default=6, help="dreamartist: negative vectors (default 6)")
    p.add_argument("--neg-init-text", default="*", help="dreamartist: the negative's init text (default '*')")
    p.add_argument("--out", default="embeddings", help="output folder (default embeddings/)")
    p.add_argument("--format", default="a1111-pt", dest="fmt", choices=["a1111-pt", "safetensors"],
                   help="file format (default a1111-pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import api
    from ..embedding.create import check_vectors, free_paths
    from ..embedding.names import validate_name
    from ..embedding.usage import vocabulary_warning, vocabulary_word

    validate_name(args.name)  # the cheap checks before loading a multi-GB model
    check_vectors(args.vectors if args.vectors is not None else 1)
    if args.method == "dreamartist":
        check_vectors(args.neg_vectors, "--neg-vectors")
    names = [args.name] + ([f"{args.name}-neg"] if args.method == "dreamartist" else [])
    free_paths(args.out, names, args.fmt, args.overwrite)  # before loading a multi-GB model
    c = api.load_model(args.model, family=args.family)
    if vocabulary_word(c.tokenizer, args.name):
        print(f"warning: {vocabulary_warning(args.name)}")
    if args.method == "dreamartist":
        vectors = 3 if args.vectors is None else args.vectors
        pos, neg = api.create_dreamartist_pair(c, args.name, args.init_text, vectors, args.neg_init_text,
                                               args.neg_vectors, args.out, args.overwrite, args.fmt, args.init)
        print(f"created {pos} ({vectors} vector(s)) and {neg} ({args.neg_vectors} vector(s)), {c.family.name}")
        return 0
    args.vectors = 1 if args.vectors is None else args.vectors
    path = api.create_embedding(c, args.name, args.init_text, args.vectors, args.out, args.overwrite, args.fmt,
                                args.init)
    print(f"created {path} ({args.vectors} vector(s), {c.family.name}, init text {args.init_text!r})")
    return 0
