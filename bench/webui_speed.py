"""Training speed through the web UI against the CLI, the same run both ways, in one invocation:
`tistudio train` in a fresh process, then `tistudio webui` in a fresh process driven by Debian's
chromium (Playwright, headless) with the Train tab open and polling, as a user watches a run.

    .venv/bin/python bench/webui_speed.py                 # 200 toy steps each, about a minute on 2 cores
    .venv/bin/python bench/webui_speed.py --steps 100 --repeat 2

Both train a fresh copy of the same embedding on the shipped toy model at 32 px with the same options
and seed; each is timed by the run's own clock (summary.json `seconds`: the training loop, model
loading and latent caching excluded) and, for the UI, also from the Train click to the page showing
"completed". CPU seconds: the whole CLI process (start-up included) against the UI server's while
its run trains (polling included): on a machine shared with other jobs the wall times swing with
their load, CPU seconds much less. The final losses must be equal (the UI trains the same run, not a cheaper one). The
runs alternate (CLI, UI, CLI, ...) so load from other jobs on a shared machine hits both alike.
Prints a table and writes bench/results/webui-speed-*.json."""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import machine, save

from tistudio.webui.forms import train_fields

CHROMIUM = os.environ.get("TISTUDIO_CHROMIUM", "/usr/bin/chromium")
SRC = Path(__file__).resolve().parents[1] / "src"


def _env() -> dict:
    # The checkout's sources first, in the children too.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _options(steps: int) -> dict[str, str]:
    """The run's options, by config field (the page's basic fields; the rest keep their defaults)."""
    return {"steps": str(steps), "width": "32", "height": "32", "save_every": "0", "preview_every": "0",
            "lr": "0.005"}


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def run_cli(root: Path, model: str, embedding: Path, steps: int) -> dict:
    log_dir = root / "runs-cli"
    argv = [sys.executable, "-m", "tistudio", "train", "--model", model, "--embedding", str(embedding),
            "--data", str(root / "data"), "--log-dir", str(log_dir), "--quiet"]
    for key, value in _options(steps).items():
        argv += [f"--{key.replace('_', '-')}", value]
    t, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(argv, check=True, env=_env(), stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    s = _summary(log_dir / embedding.stem)
    return {"face": "cli", "seconds": s["seconds"], "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "final_loss": s["final_loss"]}


def _children_cpu() -> float:
    """CPU seconds of the finished children (the whole CLI process: start-up and model loading too)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds of a running process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ui(root: Path, model: str, embedding: Path, steps: int) -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tistudio", "webui", "--root", str(root), "--model", model,
                               "--port", str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(120_000)
            for _ in range(600):  # the server imports gradio and torch first
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    if server.poll() is not None:
                        raise RuntimeError(server.stderr.read().decode(errors="replace")) from None
                    time.sleep(0.5)
            page.get_by_role("tab", name="Train").click()
            fields = {"embedding": str(embedding.relative_to(root)), "data": "data", "log_dir": "runs-ui",
                      **_options(steps)}
            groups = {spec.key: spec.section for spec in train_fields()}
            for key, value in fields.items():
                field = page.locator(f"#train-{key.replace('.', '-')}")
                if not field.is_visible():  # its group is closed: open it (the title toggles it)
                    page.locator(f"#train-section-{groups[key]} > button.label-wrap").click()
                box = field.locator("input, textarea").first
                box.fill(value)
                box.press("Tab")
            t, cpu = time.perf_counter(), _process_cpu(server.pid)
            page.locator("#train-button").click()
            page.locator("#train-status").get_by_text("completed").wait_for(timeout=600_000)
            wall, cpu = time.perf_counter() - t, _process_cpu(server.pid) - cpu
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    s = _summary(root / "runs-ui" / embedding.stem)
    return {"face": "ui", "seconds": s["seconds"], "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "final_loss": s["final_loss"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (default 1)")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} missing: apt-get install chromium (or set TISTUDIO_CHROMIUM)", file=sys.stderr)
        return 2
    from tistudio import api
    from tistudio.toy import default_model_path
    from tistudio.toy.concepts import parse_concept
    from tistudio.toy.dataset import render_concept

    model = str(default_model_path())
    rows = []
    with tempfile.TemporaryDirectory(prefix="webui-speed-") as tmp:
        root = Path(tmp)
        render_concept(parse_concept("teal star"), 4, root / "data")  # the toy model's own world
        base = api.create_embedding(model, "tok", "square", 1, root / "start")
        for i in range(args.repeat):
            for face, fn in (("cli", run_cli), ("ui", run_ui)):
                emb = root / "embeddings" / f"tok{i}{face}.pt"  # a fresh copy: training writes into it
                emb.parent.mkdir(exist_ok=True)
                shutil.copy(base, emb)
                rows.append(fn(root, model, emb, args.steps))
                print(f"{face}: {rows[-1]}", flush=True)
    cli = [r["seconds"] for r in rows if r["face"] == "cli"]
    ui = [r["seconds"] for r in rows if r["face"] == "ui"]
    ratio = min(ui) / min(cli)
    print(f"\n{'face':6} {'train s':>8} {'wall s':>8} {'CPU s':>7} {'final loss':>11}")
    for r in rows:
        print(f"{r['face']:6} {r['seconds']:8.1f} {r['wall_seconds']:8.1f} {r['cpu_seconds']:7.1f} "
              f"{r['final_loss']:11.6f}")
    print(f"UI / CLI (best of each): {ratio:.2f}x over {args.steps} steps")
    same = len({round(r["final_loss"], 6) for r in rows}) == 1
    if not same:
        print("warning: the final losses differ between the runs", file=sys.stderr)
    path = save("webui-speed", {"machine": machine(), "steps": args.steps, "runs": rows, "ratio": ratio,
                                "same_loss": same})
    print(f"saved {path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
