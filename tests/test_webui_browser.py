"""The web UI in a real browser (Debian's chromium driven by Playwright, headless, loopback only):
create an embedding, preprocess three uploaded images, train, watch the loss chart and previews,
interrupt, resume to the end, generate. Screenshots of every tab go to test-artifacts/webui/."""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Marked slow too (about a minute): `make test` skips it, `.ci/run` runs `-m browser` after `make test`.
pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

CHROMIUM = os.environ.get("TISTUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("TISTUDIO_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
# Seconds per step added by the test, so the run is still going when we interrupt: the run trains in
# a process of its own and keeps this pace while a loaded machine slows the page and the server down.
STEP_PAUSE = 0.8
WAIT_MS = 60_000   # a contended CI machine may be slow; waits end as soon as the page is ready

if not Path(CHROMIUM).is_file():
    pytest.skip(f"{CHROMIUM} missing (apt-get install chromium; .ci/run does it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def paced_train(cfg, callback=None, **kwargs):
    """api.train with a pause after every step (via the public callback), nothing else changed. The
    job registry runs it in its training process (it imports this module there)."""
    from tistudio import api
    from tistudio.events import Progress

    def on_event(event):
        callback(event)
        if isinstance(event, Progress):
            time.sleep(STEP_PAUSE)
    return api.train(cfg, callback=on_event, **kwargs)


@pytest.fixture(scope="module")
def server(tiny_model_dirs, tmp_path_factory):
    from tistudio.webui.app import make_context, serve
    from tistudio.webui.jobs import JobRegistry

    root = tmp_path_factory.mktemp("webui-root")
    ctx = make_context(root, str(tiny_model_dirs["sd1"]), JobRegistry(train=paced_train))
    app, url = serve(ctx, "127.0.0.1", free_port(), block=False)
    yield url, root
    app.close()


def uploads(folder: Path) -> list[str]:
    """Three 80x96 pictures (a coloured square on noise) plus a text file posing as an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name, rgb in [("red", (220, 30, 30)), ("blue", (30, 30, 220)), ("green", (30, 200, 30))]:
        arr = (rng.random((96, 80, 3)) * 60).astype(np.uint8)
        arr[24:72, 20:60] = rgb
        paths.append(folder / f"a {name} square.png")
        Image.fromarray(arr).save(paths[-1])
    fake = folder / "notes.png"
    fake.write_text("not an image")
    return [str(p) for p in (*paths, fake)]


def fill_train_form(tab) -> None:
    """The run's settings, typed the same way before Train and again before Resume."""
    for key, value in [("embedding", "embeddings/tok.pt"), ("data", "dataset"), ("steps", "10"), ("width", "64"),
                       ("height", "64"), ("save_every", "2"), ("preview_every", "2"), ("lr", "0.01"),
                       ("preview_steps", "2")]:
        train_box(tab, key).fill(value)


def train_box(where, key: str):
    """The input of the Train tab's config field `key` ("steps", "dreamartist.cfg"), found by its element id
    (train-KEY, after the config's field name); its group (#train-section-GROUP) is opened first if closed.
    `where` is the page or the Train tab. Every browser test finds the Train form's fields this way; "run"
    (the "Continue a run" picker, not a config field) sits above the groups."""
    from tistudio.webui.forms import train_fields

    section = next((s.section for s in train_fields() if s.key == key), None)
    field = where.locator(f"#train-{key.replace('.', '-')}")
    if section and not field.is_visible():
        open_group(where, f"train-section-{section}")
        field.wait_for(state="visible")
    return field.locator("input, textarea").first


def open_group(where, elem_id: str) -> None:
    """Open the closed accordion `elem_id` (clicking its title toggles it: call it only when closed)."""
    where.locator(f"#{elem_id} > button.label-wrap").click()


def show_example_prompts(tab):
    """Open the Train tab's "Example prompts" group, click its button and return the box's locator."""
    button = tab.get_by_role("button", name="Show example prompts")
    if not button.is_visible():
        open_group(tab, "train-example-prompts")
    button.click()
    return tab.locator("#train-prompts textarea")


def shot(page, name: str) -> None:
    ARTIFACTS.joinpath("webui").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui" / f"{name}.png"), full_page=True)


def field(tab, label: str):
    """The input whose label starts with `label` (a field's help text is part of its label)."""
    return tab.get_by_label(re.compile(r"^\s*" + re.escape(label)))


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()
    tab = page.locator(f"#tab-{name.split()[0].lower()}")
    tab.wait_for(state="visible")
    return tab


def status_step(page) -> int:
    match = re.search(r"step (\d+)/10", page.locator("#train-status").inner_text())
    return int(match.group(1)) if match else 0


def wait_until(page, predicate, what: str, timeout_s: float = WAIT_MS / 1000):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return
        page.wait_for_timeout(200)
    shot(page, "timeout")
    status = page.locator("#train-status")
    raise AssertionError(f"timed out waiting for {what}; training status: "
                         f"{status.inner_text() if status.count() else 'not shown'}")


def test_create_preprocess_train_interrupt_resume_generate(server, browser, tmp_path):
    url, root = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)

    tab = open_tab(page, "Create embedding")
    field(tab, "Name (the trigger word, also the file name)").fill("tok")
    field(tab, "Initialization text").fill("square")
    field(tab, "Vectors per token").fill("2")
    tab.get_by_role("button", name="Create embedding").click()
    page.locator("#create-result").get_by_text("Created").wait_for()
    assert (root / "embeddings" / "tok.pt").is_file()
    shot(page, "1-create")

    tab = open_tab(page, "Preprocess images")
    tab.locator("#uploads input[type=file]").set_input_files(uploads(tmp_path / "picked"))
    tab.get_by_role("button", name="Save uploads to the source folder").click()
    page.locator("#upload-status").get_by_text("Saved 3 image(s)").wait_for()
    assert "notes.png: not an image" in page.locator("#upload-status").inner_text()
    field(tab, "Width").fill("64")
    field(tab, "Height").fill("64")
    tab.get_by_role("button", name="Preprocess", exact=True).click()
    wait_until(page, lambda: "3 source files -> 3 images" in tab.locator("#preprocess-report textarea").input_value(),
               "the preprocess report")
    assert sorted(Image.open(p).size for p in (root / "dataset").glob("*.png")) == [(64, 64)] * 3
    tab.get_by_role("button", name="Check dataset").click()
    wait_until(page, lambda: "3 images" in tab.locator("#doctor-report textarea").input_value(), "the doctor report")
    shot(page, "2-preprocess")

    tab = open_tab(page, "Train")
    fill_train_form(tab)
    prompts = show_example_prompts(tab)
    wait_until(page, lambda: "tok" in prompts.input_value(), "example prompts")
    page.locator("#train-button").click()
    page.locator("#train-action").get_by_text("Started run 1").wait_for()
    wait_until(page, lambda: status_step(page) >= 2 and page.locator("#latest-preview img").count() > 0,
               "the first preview")
    first_preview = page.locator("#latest-preview img").get_attribute("src")
    wait_until(page, lambda: status_step(page) >= 4, "step 4")
    wait_until(page, lambda: page.locator("#latest-preview img").get_attribute("src") != first_preview,
               "the preview to update")
    line = page.locator("#loss-chart .mark-line path")
    wait_until(page, lambda: line.count() > 0 and len(line.first.get_attribute("d") or "") > 20, "the loss line")
    assert "training" in page.locator("#loss-chart").text_content()  # the legend
    assert page.locator("#preview-gallery img").count() >= 2
    shot(page, "3-training")
    page.locator("#interrupt-button").click()
    wait_until(page, lambda: "interrupted" in page.locator("#train-status").inner_text(), "the interrupt")
    stopped_at = status_step(page)
    assert 4 <= stopped_at < 10
    shot(page, "4-interrupted")

    page.close()  # the tab goes away; a new page must find the run again
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    tab = open_tab(page, "Train")
    wait_until(page, lambda: f"step {stopped_at}/10" in page.locator("#train-status").inner_text(),
               "the reopened page to show the interrupted run")
    fill_train_form(tab)
    page.locator("#resume-button").click()
    page.locator("#train-action").get_by_text("Resumed").wait_for()
    wait_until(page, lambda: "completed" in page.locator("#train-status").inner_text(), "the resumed run to finish")
    assert status_step(page) == 10
    shot(page, "5-resumed")
    import csv
    rows = list(csv.DictReader(open(root / "runs" / "tok" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    from tistudio.embedding.formats import load_embedding
    assert load_embedding(root / "embeddings" / "tok.pt").step == 10

    tab = open_tab(page, "Generate")
    field(tab, "Prompt").fill("a photo of tok")
    field(tab, "Sampling steps").fill("2")
    field(tab, "Width (0 = the model's)").fill("64")
    field(tab, "Height (0 = the model's)").fill("64")
    page.locator("#generate-button").click()
    page.locator("#gen-gallery img").first.wait_for()
    assert "a photo of tok" in tab.locator("#gen-info textarea").input_value()
    assert len(list((root / "outputs").glob("*.png"))) == 1
    shot(page, "6-generate")

    tab = open_tab(page, "Runs")
    tab.locator("#runs-refresh").click()
    wait_until(page, lambda: "tok" in tab.locator("#runs-table").inner_text(), "the runs table")
    wait_until(page, lambda: "steps = 10" in tab.locator("#run-config").inner_text(), "the run's config")
    tab.get_by_role("button", name="Prepare download").click()
    wait_until(page, lambda: ".pt" in tab.locator("#run-download").inner_text(), "the download link")
    shot(page, "7-runs")

    tab = open_tab(page, "Create embedding")
    field(tab, "Embeddings folder").fill("../outside")
    field(tab, "Name (the trigger word, also the file name)").fill("tok2")
    tab.get_by_role("button", name="Create embedding").click()
    page.get_by_text("outside the web UI root").first.wait_for()
    assert not (root.parent / "outside").exists()
    shot(page, "8-refused-path")
    page.close()
