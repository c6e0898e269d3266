"""The pickers in a real browser (Debian's chromium via Playwright, headless, loopback only): pick a
model, an embedding and a dataset from their dropdowns, refresh after a new file appears, see
Generate list the embedding and put its trigger into the prompt, then upload a unicode-named image
with its caption and check the colour picker shows its colour. Screenshots go to
test-artifacts/webui/pickers-*.png."""
from __future__ import annotations

import shutil

import pytest
from PIL import Image

# Marked as tests/test_webui_browser.py is: slow and browser (`make test` skips it).
pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

from test_webui_browser import (WAIT_MS, field, free_port, open_tab,  # noqa: E402
                                shot, show_example_prompts, wait_until)


@pytest.fixture(scope="module")
def server(tiny_models, tiny_model_dirs, tmp_path_factory):
    """A root holding the model (no --model given: it must be picked), an embedding and a dataset."""
    from tistudio import api
    from tistudio.webui.app import make_context, serve

    root = tmp_path_factory.mktemp("pickers-root")
    shutil.copytree(tiny_model_dirs["sd1"], root / "models" / "tiny-sd1")
    api.create_embedding(tiny_models["sd1"], "tok", "square", 2, root / "embeddings")
    (root / "dataset").mkdir()
    for name, rgb in [("red", (220, 30, 30)), ("blue", (30, 30, 220))]:
        Image.new("RGB", (64, 64), rgb).save(root / "dataset" / f"{name}.png")
        (root / "dataset" / f"{name}.txt").write_text(f"a {name} square")
    app, url = serve(make_context(root), "127.0.0.1", free_port(), block=False)
    yield url, root
    app.close()


def pick(page, box_id: str, text: str) -> None:
    """Open the dropdown `box_id` and click the entry whose label contains `text`."""
    box = page.locator(f"#{box_id} input")
    box.click()
    page.locator(f"#{box_id} ul[role=listbox] li", has_text=text).first.click()
    box.blur()  # a focused box does not open again on the next click


def options(page, box_id: str) -> list[str]:
    """The labels a dropdown offers (without the ✓ of the chosen one)."""
    box = page.locator(f"#{box_id} input")
    box.click()
    items = page.locator(f"#{box_id} ul[role=listbox] li")  # this box's list, not one still closing
    items.first.wait_for()
    found = items.all_inner_texts()
    box.blur()
    return [o.removeprefix("✓").strip() for o in found]


def test_pick_model_embedding_and_dataset_then_generate_lists_the_embedding(server, browser, tmp_path,
                                                                             tiny_models):
    from tistudio import api

    url, root = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)

    assert options(page, "model-path") == ["models/tiny-sd1 · sd1 · epsilon · diffusers folder"]
    pick(page, "model-path", "models/tiny-sd1")

    tab = open_tab(page, "Train")
    assert options(page, "train-embedding") == ["embeddings/tok.pt · tok · sd1 (tiny test model) · 2 vectors · step 0"]
    pick(page, "train-embedding", "embeddings/tok.pt")
    wait_until(page, lambda: "loads in: A1111 ✓ tok" in tab.locator("#train-embedding").inner_text(),
               "the embedding's compat line")
    pick(page, "train-data", "dataset · 2 images")
    prompts = show_example_prompts(tab)
    wait_until(page, lambda: "a red square" in prompts.input_value() and "tok" in prompts.input_value(),
               "example prompts from the picked embedding and dataset")

    # A file that appears after the page loaded shows up on refresh.
    api.create_embedding(tiny_models["sd1"], "later", "circle", 1, root / "embeddings")
    assert not any("later" in o for o in options(page, "train-embedding"))
    page.locator("#train-embedding-refresh").click()
    wait_until(page, lambda: any("embeddings/later.pt" in o for o in options(page, "train-embedding")),
               "the refreshed embedding list")
    shot(page, "pickers-1-train")

    tab = open_tab(page, "Generate")
    table = tab.locator("#gen-embeddings")
    wait_until(page, lambda: "tok" in table.inner_text(), "the embeddings table")
    assert "embeddings/tok.pt" in table.inner_text() and "later" not in table.inner_text()
    page.locator("#gen-embeddings-refresh").click()
    wait_until(page, lambda: "later" in table.inner_text(), "the refreshed embeddings table")
    field(tab, "Prompt").fill("a photo of")
    table.get_by_text("tok", exact=True).first.click()
    wait_until(page, lambda: tab.locator("#gen-prompt textarea").input_value() == "a photo of tok",
               "the trigger inserted into the prompt")
    field(tab, "Sampling steps").fill("2")
    field(tab, "Width (0 = the model's)").fill("64")
    field(tab, "Height (0 = the model's)").fill("64")
    page.locator("#generate-button").click()
    page.locator("#gen-gallery img").first.wait_for()
    info = tab.locator("#gen-info textarea").input_value()
    assert "a photo of tok" in info and "tok" in info.split("\n\n", 1)[-1]  # the note of embeddings used
    shot(page, "pickers-2-generate")

    tab = open_tab(page, "Preprocess images")
    swatch = tab.get_by_role("button", name="Background under transparency")
    assert swatch.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 255, 255)"
    assert "#ffffff" in page.locator("#pre-background").inner_text()
    upload = tmp_path / "up"
    upload.mkdir()
    Image.new("RGB", (40, 40), (10, 200, 10)).save(upload / "緑の四角.png")
    (upload / "緑の四角.txt").write_text("a green square", encoding="utf-8")
    (upload / "alone.txt").write_text("no picture")
    tab.locator("#uploads input[type=file]").set_input_files([str(p) for p in sorted(upload.iterdir())])
    tab.get_by_role("button", name="Save uploads to the source folder").click()
    page.locator("#upload-status").get_by_text("Saved 1 image(s) and 1 caption(s)").wait_for()
    assert "alone.txt: no image named alone beside it" in page.locator("#upload-status").inner_text()
    assert sorted(p.name for p in (root / "raw").iterdir()) == ["緑の四角.png", "緑の四角.txt"]
    assert (root / "raw" / "緑の四角.txt").read_text(encoding="utf-8") == "a green square"
    shot(page, "pickers-3-preprocess")
    page.close()
