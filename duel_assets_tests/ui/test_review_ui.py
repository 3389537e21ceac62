"""The review page in a real headless browser (Debian's Chromium through Playwright, as `make test-ui`
runs it): the demo's partitions labelled with the keyboard and calibrated, and the hostile fixture.

The duel page's screenshot is written to docs/images/review_duel.png (the README shows it), so it
follows the page as it changes.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.settings import Paths
from duel_assets.lib.warehouse import Warehouse
from duel_assets_tests.conftest import REPO
from duel_assets_tests.review_fixture import HOSTILE_MARK, write_partition
from duel_assets_tests.review_server import BIN, ReviewServer

ROOT = REPO
SCREENSHOT = ROOT / "docs" / "images" / "review_duel.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUEL_", "DAGSTER_")) and not k.endswith(
        ("_BASE_URL", "_API_KEY"))}
    env.update(DUEL_PROGRESS="0", **extra)
    return env


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (`make test-ui` installs Debian's chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review_demo")
    env = _clean_env(DUEL_HOME=str(tmp))
    out = subprocess.run([str(BIN / "duel-assets"), "demo"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with ReviewServer(env, "--demo", "--reviewer", "browser-test", log=tmp / "review.log") as srv:
        yield {"srv": srv, "tmp": tmp, "env": env, "labels": tmp / "demo" / "review" / "labels" / "browser-test.jsonl"}


def _watch(page) -> dict:
    seen: dict = {"dialogs": [], "errors": []}
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def test_demo_partitions_disagreements_a_duel_and_five_keyboard_labels_then_calibrate(demo, browser):
    srv = demo["srv"]
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    seen = _watch(page)
    page.goto(srv.url + "/")
    assert page.locator("#partitions tbody tr").count() == 2  # the demo's two prompt files
    page.locator("a.partition", has_text="demo_24_001").click()
    page.locator("nav.filters a[data-filter=disagree]").click()
    page.wait_for_url("**filter=disagree**")
    rows = page.locator("#turns tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):  # every row shown is a disagreement
        assert "split panel" in rows.nth(i).inner_text() or "flips with the order" in rows.nth(i).inner_text()
    rows.first.locator("a.turn").click()
    page.wait_for_url("**/duel?t=**")
    for side in ("A", "B"):
        answer = page.locator(f"#answer-{side}")
        assert answer.is_visible() and answer.locator("pre.text").first.inner_text().strip()
    diff = page.locator("#diff")
    assert diff.is_visible() and diff.locator(".d-add").count() >= 1 and diff.locator(".d-del").count() >= 1
    judgements = page.locator("#judges tr.judgement")
    judges = {judgements.nth(i).locator("td").first.inner_text() for i in range(judgements.count())}
    assert judges == {"standin-judge-1", "standin-judge-2"}  # a split panel: both judges were asked
    for i in range(judgements.count()):
        row = judgements.nth(i)
        assert row.is_visible() and row.locator("td.score").count() == 5  # every metric's scores, A · B
        assert all("·" in t for t in row.locator("td.score").all_inner_texts())
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True, clip={"x": 0, "y": 0, "width": 1500, "height": 1500})
    assert SCREENSHOT.stat().st_size > 20_000

    labelled = []
    for n, keys in enumerate((["a"], ["b"], ["2", "a"], ["b"], ["a"])):
        turn = page.locator("#label input[name=t]").input_value()
        labelled.append(turn)
        with page.expect_navigation():
            for k in keys:
                page.keyboard.press(k)
        if n < 4:
            assert "Label recorded" in page.locator("p.notice").inner_text()
    lines = demo["labels"].read_text().splitlines()
    assert len(lines) == 5
    recs = [json.loads(x) for x in lines]
    assert [r["turn_id"] for r in recs] == labelled and len(set(labelled)) == 5
    assert [r["label"] for r in recs] == ["A", "B", "A", "B", "A"] and recs[2]["metric_labels"] == {"grounding": "A"}
    assert all(r["reviewer"] == "browser-test" and set(r["positions"].values()) == {"king", "challenger"} for r in recs)
    assert not seen["dialogs"] and not seen["errors"], seen

    # the labels file as it is, to calibrate: the demo's judges (the stand-in) on the 5 pairs
    with StandinServer() as standin:
        env = {**demo["env"], "DUEL_HOME": str(demo["tmp"] / "demo"), "DUEL_CONFIG": str(
            ROOT / "duel_assets" / "data" / "demo_chain.toml"), "DAGSTER_HOME": str(demo["tmp"] / "demo" / "dagster_home"),
            "DUEL_WAREHOUSE": str(demo["tmp"] / "demo" / "warehouse.duckdb"),
            "DUEL_CALL_CACHE": str(demo["tmp"] / "demo" / "cache" / "llm_calls.sqlite"),
            "LLM_BASE_URL": standin.base_url, "LLM_API_KEY": "review-test-key"}
        out = subprocess.run([str(BIN / "duel-assets"), "calibrate", str(demo["labels"]), "--json"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["pairs"] == 5 and summary["skipped"] == 0 and summary["accuracy"] is not None
    assert summary["labels"] == {"A": 3, "B": 2} and summary["kinds"] == {"review": 5}
    print(f"\ncalibrate on the browser's 5 labels: accuracy {summary['accuracy']} over {summary['pairs']} pairs")


def test_the_hostile_fixture_renders_inert_and_the_page_stays_usable(browser, tmp_path):
    home = tmp_path / "home"
    write_partition(Warehouse(home / "warehouse.duckdb"), Paths(home), "hostile", 6, hostile=True)
    env = _clean_env(DUEL_HOME=str(home))
    with ReviewServer(env, "--reviewer", "hostile-test", log=tmp_path / "review.log") as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        seen = _watch(page)
        for path in ("/", "/p/hostile", "/p/hostile/duel?t=t000", "/p/hostile/duel?t=t001"):
            resp = page.goto(srv.url + path)
            assert resp.status == 200, path
            csp = resp.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            page.wait_for_load_state("load")
            if "duel" in path:
                assert page.get_by_text(HOSTILE_MARK).first.is_visible()  # the escaped text, shown as text
                page.keyboard.press("h")  # the history opens
                assert page.locator("#history").evaluate("d => d.open")
            if path.endswith("t000"):  # the 1 MB single-line observation: folded, and it opens
                fold = page.locator("#history details.fold").first
                fold.locator("summary").click()
                assert fold.evaluate("d => d.open") and fold.locator("pre").inner_text().startswith("AAAA")
        # still usable: a label by keyboard moves on to the next turn
        page.goto(srv.url + "/p/hostile/duel?t=t001")
        with page.expect_navigation():
            page.keyboard.press("t")
        assert "/duel?t=" in page.url and "Label recorded" in page.locator("p.notice").inner_text()
    assert not seen["dialogs"], seen["dialogs"]
    assert not seen["errors"], seen["errors"]
    lines = (home / "review" / "labels" / "hostile-test.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["label"] == "tie"
