"""Training speed through the web UI against the CLI, the same run both ways, in one invocation:
`tistudio train` in a fresh process, then `tistudio webui` in a fresh process driven by Debian's
chromium (Playwright, headless), once with the Train tab open and polling as a user watches a run
("ui-open"), once with the page closed right after the click ("ui-closed").

    .venv/bin/python bench/webui_speed.py                  # 200 and 1000 toy steps, ~3 minutes on 2 cores
    .venv/bin/python bench/webui_speed.py --steps 200 --repeat 3

Each run trains a fresh copy of the same embedding on the shipped toy model at 32 px with the same
options and seed, timed by the run's own clock (summary.json `seconds`: the training loop; model
loading and latent caching excluded). CPU seconds count everything each face spends on the run: the
whole CLI process (start-up included) against the UI server and its training process from the click
to the end (polling included), and apart, the browser's. On a machine shared with other jobs the wall
times swing with their load, CPU seconds much less, so both are reported, with the load average. The
final losses must be equal (the UI trains the same run, not a cheaper one). The faces alternate (CLI,
UI open, UI closed, CLI, ...) so load from other jobs hits them alike. Prints a table (UI/CLI ratios
of the best time of each) and writes bench/results/webui-speed-*.json."""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
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


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run_cli(root: Path, model: str, embedding: Path, steps: int) -> dict:
    log_dir = root / "runs-cli"
    argv = [sys.executable, "-m", "tistudio", "train", "--model", model, "--embedding", str(embedding),
            "--data", str(root / "data"), "--log-dir", str(log_dir), "--quiet"]
    for key, value in _options(steps).items():
        argv += [f"--{key.replace('_', '-')}", value]
    load, t, cpu = _load(), time.perf_counter(), _children_cpu()
    subprocess.run(argv, check=True, env=_env(), stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    s = _summary(log_dir / embedding.stem)
    return {"face": "cli", "steps": steps, "seconds": s["seconds"], "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1), "browser_cpu_seconds": None, "final_loss": s["final_loss"],
            "load": [load, _load()]}


def _children_cpu() -> float:
    """CPU seconds of the finished children (the whole CLI process: start-up and model loading too)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has ended
        return None


def _ticks(fields: list[str]) -> int:
    """A process's CPU clock ticks so far, from its _stat(): all its threads (utime, stime), and its
    children that have ended and were waited for (cutime, cstime)."""
    return sum(int(f) for f in fields[11:15])


def _process_cpu(pid: int) -> float:
    """CPU seconds of a running process so far (Linux /proc), its waited-for children's included
    (the web UI's training process)."""
    return _ticks(_stat(pid)) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> set[int]:
    """The live processes below `pid`."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _training(pid: int) -> set[int]:
    """The web UI's training processes not yet waited for (multiprocessing's spawned children, and
    any that ended; not its resource tracker, which lives as long as the server)."""
    def training(child: int) -> bool:
        try:
            return b"--multiprocessing-fork" in Path(f"/proc/{child}/cmdline").read_bytes() or \
                (_stat(child) or ["Z"])[0] == "Z"
        except OSError:
            return False
    return {child for child in _children(pid) if training(child)}


def _browser_cpu(exclude: int) -> float:
    """CPU seconds of this process's live descendants but the web UI server and its own: the
    Playwright driver and chromium, with the processes they have waited for (a closed page's)."""
    skip = {exclude} | _children(exclude)
    return sum(_ticks(fields) for pid in _children(os.getpid()) - skip
               if (fields := _stat(pid))) / os.sysconf("SC_CLK_TCK")


def _finished_summary(run_dir: Path, server: subprocess.Popen, seconds: float = 900) -> None:
    """Wait for the run's final summary.json and for its training process to end (the server has
    then waited for it, so its CPU counts in the server's; the page's "completed" also waits for it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        path = run_dir / "summary.json"
        try:
            done = path.is_file() and json.loads(path.read_text(encoding="utf-8"))["reason"] != "running"
        except (OSError, ValueError):  # being replaced
            done = False
        if done and not _training(server.pid):  # (a walk of /proc: only once the run is done)
            return
        if server.poll() is not None:
            raise RuntimeError(server.stderr.read().decode(errors="replace"))
        time.sleep(0.5)
    raise TimeoutError(f"{run_dir}: no final summary.json after {seconds} s")


def run_ui(root: Path, model: str, embedding: Path, steps: int, watch: bool) -> dict:
    """`watch`: the page stays open, polling, until the run completes; else it closes after the click."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tistudio", "webui", "--root", str(root), "--model", model,
                               "--port", str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log_dir = f"runs-{'open' if watch else 'closed'}"
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
            fields = {"embedding": str(embedding.relative_to(root)), "data": "data", "log_dir": log_dir,
                      **_options(steps)}
            groups = {spec.key: spec.section for spec in train_fields()}
            for key, value in fields.items():
                field = page.locator(f"#train-{key.replace('.', '-')}")
                if not field.is_visible():  # its group is closed: open it (the title toggles it)
                    page.locator(f"#train-section-{groups[key]} > button.label-wrap").click()
                box = field.locator("input, textarea").first
                box.fill(value)
                box.press("Tab")
            load, t = _load(), time.perf_counter()
            cpu, browser_cpu = _process_cpu(server.pid), _browser_cpu(server.pid)
            page.locator("#train-button").click()
            page.locator("#train-action").get_by_text("Started run").wait_for()
            if watch:
                page.locator("#train-status").get_by_text("completed").wait_for(timeout=900_000)
            else:
                page.close()
                _finished_summary(root / log_dir / embedding.stem, server)
            wall, cpu = time.perf_counter() - t, _process_cpu(server.pid) - cpu
            browser_cpu = _browser_cpu(server.pid) - browser_cpu
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    s = _summary(root / log_dir / embedding.stem)
    return {"face": "ui-open" if watch else "ui-closed", "steps": steps, "seconds": s["seconds"],
            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "browser_cpu_seconds": round(browser_cpu, 1), "final_loss": s["final_loss"], "load": [load, _load()]}


FACES = {"cli": run_cli, "ui-open": lambda *a: run_ui(*a, watch=True), "ui-closed": lambda *a: run_ui(*a, watch=False)}


def ratios(rows: list[dict]) -> dict:
    """{steps: {face: best UI time / best CLI time}} and the same of the median CPU seconds."""
    out: dict = {}
    for steps in sorted({r["steps"] for r in rows}):
        of = {face: [r for r in rows if r["steps"] == steps and r["face"] == face] for face in FACES}
        cli_time = min(r["seconds"] for r in of["cli"])
        cli_cpu = statistics.median(r["cpu_seconds"] for r in of["cli"])
        out[steps] = {face: {"time": round(min(r["seconds"] for r in runs) / cli_time, 2),
                             "cpu": round(statistics.median(r["cpu_seconds"] for r in runs) / cli_cpu, 2)}
                      for face, runs in of.items() if face != "cli" and runs}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three faces per step count (default 1)")
    ap.add_argument("--faces", nargs="+", choices=list(FACES), default=list(FACES))
    args = ap.parse_args(argv)
    if "cli" not in args.faces:
        ap.error("--faces: the CLI is the reference, keep it")
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
            for steps in args.steps:
                for face in args.faces:
                    emb = root / "embeddings" / f"tok{i}-{steps}-{face}.pt"  # a fresh copy: training writes it
                    emb.parent.mkdir(exist_ok=True)
                    shutil.copy(base, emb)
                    rows.append(FACES[face](root, model, emb, steps))
                    print(f"{face}: {rows[-1]}", flush=True)
    print(f"\n{'face':10} {'steps':>5} {'train s':>8} {'wall s':>7} {'CPU s':>6} {'browser CPU s (/10 s)':>21} "
          f"{'final loss':>11} {'load':>11}")
    for r in rows:
        # Per 10 s of wall too: the page's cost while it is open, whatever the run's length.
        browser = "-" if r["browser_cpu_seconds"] is None else \
            f"{r['browser_cpu_seconds']:.1f} ({10 * r['browser_cpu_seconds'] / max(r['wall_seconds'], 0.1):.1f})"
        print(f"{r['face']:10} {r['steps']:5} {r['seconds']:8.1f} {r['wall_seconds']:7.1f} {r['cpu_seconds']:6.1f} "
              f"{browser:>21} {r['final_loss']:11.6f} {r['load'][0]:5.2f}-{r['load'][1]:<5.2f}")
    found = ratios(rows)
    for steps, faces in found.items():
        for face, ratio in faces.items():
            print(f"{face} / cli over {steps} steps: {ratio['time']:.2f}x training time (best of each), "
                  f"{ratio['cpu']:.2f}x CPU seconds (median)")
    same = {steps: len({round(r["final_loss"], 6) for r in rows if r["steps"] == steps}) == 1 for steps in args.steps}
    if not all(same.values()):
        print("warning: the final losses differ between the faces", file=sys.stderr)
    path = save("webui-speed", {"machine": machine(), "steps": args.steps, "runs": rows, "ratios": found,
                                "same_loss": all(same.values())})
    print(f"saved {path}")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
