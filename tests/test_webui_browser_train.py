"""The Train tab in a real browser (Debian's chromium through Playwright, headless, loopback only), at
1400x900 as a laptop shows it: the live output beside the form and in view after Train; DreamArtist's
group appearing with its method and its options reaching the run; Resume after a page reload loading
the run's stored config and continuing it exactly. Fields are found by their element ids
(train-KEY), which follow the config's field names, not their labels."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from test_webui_browser import (ARTIFACTS, WAIT_MS, free_port, open_tab, train_box,
                                wait_until)

# Marked slow too (each test trains through the page): `make test` skips it, `.ci/run` runs `-m browser`.
pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def server(tiny_models, tiny_model_dirs, tmp_path_factory):
    from tistudio import api
    from shapes_dataset import write_shapes_dataset
    from tistudio.webui.app import make_context, serve

    root = tmp_path_factory.mktemp("webui-train-root")
    write_shapes_dataset(root / "data", n=4)
    c = tiny_models["sd1"]
    api.create_embedding(c, "tok", "cat", 2, root / "embeddings")
    api.create_dreamartist_pair(c, "da", "cat", 1, "*", 2, root / "embeddings")
    ctx = make_context(root, str(tiny_model_dirs["sd1"]))
    app, url = serve(ctx, "127.0.0.1", free_port(), block=False)
    yield url, root
    app.close()


def new_page(browser, url):
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    return page


def fill(page, **values) -> None:
    for key, value in values.items():
        train_box(page, key.replace("__", ".")).fill(str(value))


def choose(page, key: str, option: str) -> None:
    train_box(page, key).click()
    page.get_by_role("option", name=option, exact=True).click()


def shot(page, name: str) -> None:
    ARTIFACTS.joinpath("webui").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui" / f"{name}.png"))


def status(page) -> str:
    return page.locator("#train-status").inner_text()


def finished(page, name: str, step: int) -> bool:
    """Whether the status line says run `name` completed at `step`: a new page shows the server's last
    job, so a bare "completed | step 3/" could be the previous test's run (its config not yet written)."""
    return bool(re.search(rf"{name} \(run \d+[^)]*\): completed \| step {step}/", status(page)))


def in_view(page, selector: str) -> tuple[float, float]:
    """The element's top and bottom, in viewport pixels."""
    b = page.locator(selector).bounding_box()
    return b["y"], b["y"] + b["height"]


def assert_live_output_in_view(page) -> None:
    """The status line and the chart's top are in view without scrolling (the 1400x900 rule)."""
    status_top, status_bottom = in_view(page, "#train-status")
    chart_top, _ = in_view(page, "#loss-chart")
    assert 0 <= status_top and status_bottom <= VIEWPORT["height"] and chart_top < VIEWPORT["height"] - 100


def test_live_output_beside_the_form_and_dreamartist_trains(server, browser):
    url, root = server
    page = new_page(browser, url)
    open_tab(page, "Train")
    da_group = page.locator("#train-section-dreamartist")
    assert not da_group.is_visible()  # method ti: DreamArtist's settings are not in the way
    # "schedule" opens at first (set on every run), the other groups are closed.
    assert page.locator("#train-steps").is_visible() and not page.locator("#train-width").is_visible()
    choose(page, "method", "dreamartist")
    da_group.wait_for(state="visible")
    fill(page, embedding="embeddings/da.pt", data="data", steps=3, width=64, height=64, save_every=0,
         preview_every=2, preview_steps=2, dreamartist__cfg="2.5", dreamartist__neg_lr_weight="0.5")
    page.locator("#train-dreamartist-reconstruction input").check()
    page.locator("#train-button").click()
    page.locator("#train-action").get_by_text("Started run").wait_for()
    assert_live_output_in_view(page)  # and the live output sits beside the form:
    form_left = page.locator("#train-form").bounding_box()
    live_left = page.locator("#train-live").bounding_box()
    assert live_left["x"] >= form_left["x"] + form_left["width"] - 1  # side by side, not stacked
    wait_until(page, lambda: finished(page, "da", 3), "the DreamArtist run to finish")
    wait_until(page, lambda: page.locator("#loss-chart .mark-line path").count() > 0, "the loss line")
    assert "moving average" in page.locator("#loss-chart").text_content()  # the legend names the series
    assert page.locator("#latest-preview img").count() == 1
    shot(page, "train-1400x900-dreamartist")
    page.screenshot(path=str(ARTIFACTS / "webui" / "train-dreamartist-full.png"), full_page=True)
    train_box(page, "embedding").fill("")
    page.locator("#train-button").click()
    page.get_by_text("Embedding file: empty").first.wait_for()  # the error pop-up...
    assert "Started run" not in page.locator("#train-action").inner_text()  # ...and no stale success beside it
    config = (root / "runs" / "da" / "config.toml").read_text()
    assert 'method = "dreamartist"' in config
    assert re.search(r'\[dreamartist\][^\[]*cfg = "2.5"', config, re.S), config
    assert "neg_lr_weight = 0.5" in config and "reconstruction = true" in config
    from tistudio.embedding.formats import load_embedding
    assert load_embedding(root / "embeddings" / "da.pt").step == 3
    assert load_embedding(root / "embeddings" / "da-neg.pt").step == 3
    page.close()


def test_resume_after_a_reload_continues_exactly(server, browser, tiny_model_dirs, tmp_path):
    from tistudio import api
    from tistudio.config import TrainConfig, dump_toml, from_dict, load_toml
    from tistudio.embedding.formats import load_embedding

    url, root = server
    start = tmp_path / "tok-start.pt"
    start.write_bytes((root / "embeddings" / "tok.pt").read_bytes())
    page = new_page(browser, url)
    open_tab(page, "Train")
    fill(page, embedding="embeddings/tok.pt", data="data", steps=3, width=64, height=64, save_every=1,
         preview_every=0, lr="0.02:2, 0.01")
    choose(page, "template", "subject")
    page.locator("#train-button").click()
    wait_until(page, lambda: finished(page, "tok", 3), "the first 3 steps")
    run = root / "runs" / "tok"
    first = load_toml(run / "config.toml")

    page.reload()  # a new page: the form is back to its defaults
    open_tab(page, "Train")
    assert train_box(page, "lr").input_value() == "0.005"
    page.locator("#train-run-refresh").click()
    choose(page, "run", "tok (step 3)")
    wait_until(page, lambda: train_box(page, "lr").input_value() == "0.02:2, 0.01", "the run's stored settings")
    assert train_box(page, "template").input_value() == "subject"
    # resume may not change them
    assert train_box(page, "lr").is_disabled() and train_box(page, "embedding").is_disabled()
    assert train_box(page, "steps").is_enabled()
    train_box(page, "steps").fill("6")
    page.locator("#resume-button").click()
    page.locator("#train-action").get_by_text("Resumed").wait_for()
    assert "Max steps 6 (was 3)" in page.locator("#train-action").inner_text()
    assert_live_output_in_view(page)  # also with the run's note above the form
    wait_until(page, lambda: finished(page, "tok", 6), "the resumed run")
    shot(page, "train-resumed")
    page.close()

    resumed = (run / "config.toml").read_text()
    assert resumed == dump_toml(from_dict(TrainConfig, {**first, "steps": 6}))  # nothing else rewritten
    assert [int(r["step"]) for r in csv.DictReader(open(run / "loss.csv"))] == list(range(1, 7))
    vectors = load_embedding(root / "embeddings" / "tok.pt").vectors

    # The same 6 steps uninterrupted, from the same start file, through the API.
    cfg = from_dict(TrainConfig, load_toml(run / "config.toml"))
    again = tmp_path / "again"
    emb = again / "embeddings" / "tok.pt"
    emb.parent.mkdir(parents=True)
    emb.write_bytes(start.read_bytes())
    from dataclasses import replace
    api.train(replace(cfg, embedding=str(emb), log_dir=str(again / "runs")), progress=False)
    straight = load_embedding(emb).vectors
    assert len(vectors) == len(straight) and all(torch.equal(a, b) for a, b in zip(vectors, straight))
    assert Path(again / "runs" / "tok" / "config.toml").read_text() == resumed.replace(
        str(root / "embeddings"), str(again / "embeddings")).replace(str(root / "runs"), str(again / "runs"))
