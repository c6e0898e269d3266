"""`tistudio webui [--host 127.0.0.1] [--port 7860] [--model M] [--root DIR] [--auth USER:PASS | --auth-file F]`"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("webui", help="open the browser interface (create, preprocess, train, generate, runs)",
                       description="A local web page over the same API as the CLI. Every path typed into the "
                       "page must lie under --root. Needs the 'ui' extra: pip install 'tistudio[ui]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                   "only); any other needs --auth or --auth-file")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", help="model to preselect: diffusers folder or .safetensors/.ckpt (may lie outside --root)")
    p.add_argument("--root", default=".", help="folder every path in the page is confined to (default: here)")
    p.add_argument("--auth", metavar="USER:PASS", help="require this login")
    p.add_argument("--auth-file", metavar="FILE", help="file of USER:PASS lines (# comments allowed)")
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util

    from ..errors import TIStudioError
    from ..webui.safety import check_bind, parse_auth

    auth = parse_auth(args.auth, args.auth_file)
    check_bind(args.host, auth)  # before the slow gradio import, so a refusal is instant
    if importlib.util.find_spec("gradio") is None:
        raise TIStudioError("webui: gradio is not installed; run pip install 'tistudio[ui]'")
    if args.model:
        from pathlib import Path

        if not Path(args.model).expanduser().exists():
            raise TIStudioError(f"--model {args.model}: no such file or folder")
    from ..webui.app import make_context, serve

    ctx = make_context(args.root, args.model)
    print(f"TI Studio web UI on http://{args.host}:{args.port} (root {ctx.guard.root}); Ctrl-C to stop", flush=True)
    serve(ctx, args.host, args.port, auth)
    return 0
