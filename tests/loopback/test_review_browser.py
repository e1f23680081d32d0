"""nemoguard review in a real headless browser (Debian's chromium through chromedriver, driven by selenium), and its
defences over plain HTTP.

The browser tests filter the list, open records, read reasoning, label verdicts through the forms, look at an eval
run's plots, and prove that a ``<script>`` (and an ``onerror`` handler) inside a record is shown as text and never
runs. Screenshots of the main views go to ``tests/artifacts/review/`` and are checked to be PNGs of the browser's
viewport size. Without chromium the browser tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_nemoguard.workbench.plots import run_plots
from langchain_nemoguard.workbench.report import markdown, summarise
from langchain_nemoguard.workbench.review.server import ReviewServer
from langchain_nemoguard.workbench.review.store import Store

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "review"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned2 = 1">'


def _audit(i: int, **fields: Any) -> dict[str, Any]:
    base = {
        "schema": "nemoguard.audit/1",
        "id": f"aud{i}",
        "request_id": None,
        "time": f"2026-12-02T10:00:{i:02d}.000Z",
        "stage": "input",
        "source": "litellm",
        "policy": "default",
        "policy_fingerprint": "f" * 32,
        "verdict": "safe",
        "user_safe": True,
        "response_safe": None,
        "categories": [],
        "score": None,
        "action": "allow",
        "fail_open": False,
        "error": None,
        "mode": "categories",
        "model": "nvidia/x",
        "endpoint": None,
        "latency_ms": 12.0,
        "reasoning": None,
        "think": None,
        "content_sha256": f"{i:064x}",
        "text": None,
        "simulator": False,
    }
    base.update(fields)
    return base


def _write_records(folder: Path) -> tuple[Path, Path]:
    audit = folder / "audit.jsonl"
    records = [
        _audit(
            1,
            verdict="unsafe",
            user_safe=False,
            categories=["Violence", IMG],
            action="block",
            reasoning=f"The user quotes {SCRIPT} and asks how to hurt someone.",
            text={"prompt": f"{SCRIPT} how do I hurt my neighbour?", "response": None},
            think={
                "verdict": "safe",
                "categories": [],
                "reasoning": "Reading it as a quote, it is safe.",
                "score": 0.2,
                "disagrees": True,
                "latency_ms": 400.0,
            },
        ),
        _audit(2, policy="kids", stage="output", text=None),
        _audit(3, verdict="error", user_safe=None, error="timeout", action="block", policy="kids"),
        *(
            _audit(
                10 + i,
                policy="default" if i % 2 else "kids",
                text={"prompt": f"ordinary question {i}", "response": None},
            )
            for i in range(8)
        ),
        {"schema": "nemoguard.audit/2", "id": "future"},  # a version this reader does not know
    ]
    audit.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    run = folder / "run"
    run.mkdir()
    header = {
        "schema": "nemoguard.eval-run/1",
        "run_id": "run1",
        "dataset": "hand",
        "dataset_digest": "d" * 64,
        "model": "m",
        "mode": "think",
        "policies": {"default": "f" * 32},
        "simulator": True,
    }
    rows = [
        {
            "schema": "nemoguard.eval/1",
            "id": f"ev{i}",
            "run_id": "run1",
            "example_id": f"e{i}",
            "stage": "input",
            "policy": "default",
            "verdict": v,
            "label": lab,
            "correct": v == lab,
            "categories": ["Violence"] if v == "unsafe" else [],
            "latency_ms": 10.0 + i,
            "simulator": True,
            "truth_categories": ["hate"],
            "text": {"prompt": f"eval text {i}", "response": None},
        }
        for i, (v, lab) in enumerate(
            [("unsafe", "unsafe"), ("safe", "unsafe"), ("safe", "safe"), ("unsafe", "safe")]
        )
    ]
    (run / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [header, *rows]))
    summary = summarise(header, rows, replicates=100)
    plots = [p.name for p in run_plots(summary, [r["latency_ms"] for r in rows], run)]
    (run / "summary.json").write_text(json.dumps(summary, default=str))
    (run / "report.md").write_text(markdown(summary, plots))
    return audit, run


@pytest.fixture
def review(tmp_path: Path) -> Iterator[ReviewServer]:
    audit, run = _write_records(tmp_path)
    store = Store([audit, run], tmp_path / "labels.jsonl")
    with ReviewServer(store) as server:
        yield server


# --- the browser ---------------------------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("selenium is not installed (the test extra)")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed under CI (see .ci/run)")
        pytest.skip("chromium / chromedriver are not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="nemoguard-review-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))  # no Selenium Manager download
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    data = driver.get_screenshot_as_png()
    path.write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    w, h, ratio = driver.execute_script(
        "return [window.innerWidth, window.innerHeight, window.devicePixelRatio]"
    )
    assert (width, height) == (round(w * ratio), round(h * ratio))
    return path


def _submit(driver: Any, element: Any) -> None:
    """Click a submit button or link and wait until the next page has replaced this one."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(_by("TAG_NAME"), "main")
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def test_list_filters_and_disagreements(review: ReviewServer, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(review.url + "/")
    assert "15 of 15 records match" in browser.find_element(_by("TAG_NAME"), "main").text
    assert "nemoguard.audit/2" in browser.page_source  # the skipped version is reported, not guessed at
    _screenshot(browser, "list")
    Select(browser.find_element(_by("NAME"), "policy")).select_by_visible_text("kids")
    Select(browser.find_element(_by("NAME"), "kind")).select_by_visible_text("audit")
    _submit(browser, browser.find_element(_by("CSS_SELECTOR"), "form.filters button"))
    assert "6 of 15 records match" in browser.find_element(_by("TAG_NAME"), "main").text
    _submit(browser, browser.find_element(_by("LINK_TEXT"), "fast vs THINK disagreements"))
    rows = browser.find_elements(_by("CSS_SELECTOR"), "tbody tr")
    assert len(rows) == 1 and "yes" in rows[0].text
    _screenshot(browser, "disagreements")
    Select(browser.find_element(_by("NAME"), "outcome")).select_by_visible_text("wrong")
    browser.find_element(_by("NAME"), "disagree").click()  # untick
    _submit(browser, browser.find_element(_by("CSS_SELECTOR"), "form.filters button"))
    assert len(browser.find_elements(_by("CSS_SELECTOR"), "tbody tr")) == 2  # eval rows 1 and 3


def test_a_record_is_read_as_text_and_labelled_through_the_form(review: ReviewServer, browser: Any) -> None:
    browser.get(review.url + "/?disagree=1")
    _submit(browser, browser.find_element(_by("CSS_SELECTOR"), "tbody tr a"))
    page = browser.find_element(_by("TAG_NAME"), "main").text
    assert SCRIPT in page and "how do I hurt my neighbour?" in page  # shown as text...
    assert browser.execute_script("return [window.__pwned, window.__pwned2]") == [None, None]  # ...never run
    assert IMG in page and "disagrees with the verdict" in page and "Reading it as a quote" in page
    _screenshot(browser, "record")
    browser.find_element(_by("NAME"), "note").send_keys("a quoted threat, <b>not</b> a request")
    browser.find_element(_by("NAME"), "reviewer").send_keys("ana")
    _submit(browser, browser.find_element(_by("CSS_SELECTOR"), 'button[value="wrong"]'))
    assert "Label saved." in browser.find_element(_by("TAG_NAME"), "main").text
    assert "a quoted threat, <b>not</b> a request" in browser.find_element(_by("TAG_NAME"), "main").text
    _screenshot(browser, "labelled")
    labels = [json.loads(x) for x in review.store.labels_path.read_text().splitlines()]
    assert len(labels) == 1
    lab = labels[0]
    assert (lab["schema"], lab["record_id"], lab["label"], lab["correct"], lab["reviewer"]) == (
        "nemoguard.label/1",
        "aud1",
        "safe",
        False,
        "ana",
    )
    assert lab["text"]["prompt"].startswith(SCRIPT) and lab["stage"] == "input"
    # a record without text says so, and one without a verdict is labelled directly
    browser.get(review.url + "/r/s0-2")
    assert "did not store the text" in browser.page_source
    browser.get(review.url + "/r/s0-3")
    _submit(browser, browser.find_element(_by("CSS_SELECTOR"), 'button[value="unsafe"]'))
    assert "Label saved." in browser.page_source
    last = json.loads(review.store.labels_path.read_text().splitlines()[-1])
    assert (last["record_id"], last["label"], last["correct"], last["text"]) == (
        "aud3",
        "unsafe",
        False,
        None,
    )


def test_eval_runs_show_report_and_plots(review: ReviewServer, browser: Any) -> None:
    browser.get(review.url + "/runs")
    assert "hand (think, run)" in browser.page_source
    _submit(browser, browser.find_element(_by("PARTIAL_LINK_TEXT"), "hand"))
    assert "INTERFACE SIMULATOR - NOT A SAFETY MODEL" in browser.find_element(_by("TAG_NAME"), "main").text
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) >= 3 and all(w == 800 for w in widths)
    _screenshot(browser, "run")


def test_a_cross_site_form_cannot_write_a_label(review: ReviewServer, browser: Any) -> None:
    # an attacker's page posting to the review page: no token, and an Origin that is not the page's own
    attack = (
        f'<form id=f method=post action="{review.url}/r/s0-1/label">'
        "<input name=judgement value=right><input name=csrf value=guess></form>"
        "<script>document.getElementById('f').submit()</script>"
    )
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get("data:text/html," + attack)
    WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(review.url))
    assert "403" in browser.find_element(_by("TAG_NAME"), "body").text
    assert not review.store.labels_path.exists()


# --- the defences over plain HTTP -----------------------------------------------------------------------------------


def test_headers_host_allow_list_token_size_and_paths(review: ReviewServer) -> None:
    with httpx.Client(base_url=review.url) as c:
        r = c.get("/")
        assert r.status_code == 200
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none' covers scripts
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
        assert "&lt;script&gt;" in c.get("/r/s0-1").text and SCRIPT not in c.get("/r/s0-1").text
        assert (
            c.get("/", headers={"host": f"attacker.example:{review.port}"}).status_code == 400
        )  # DNS rebinding
        assert c.get("/", headers={"host": f"localhost:{review.port}"}).status_code == 200
        assert c.post("/r/s0-1/label", data={"judgement": "right", "csrf": "guess"}).status_code == 403
        token = c.get("/r/s0-1").text.split('name="csrf" value="')[1].split('"')[0]
        evil = c.post(
            "/r/s0-1/label",
            data={"judgement": "right", "csrf": token},
            headers={"origin": "http://attacker.example"},
        )
        assert evil.status_code == 403
        assert (
            c.post(
                "/r/s0-1/label",
                content=b"x" * 20000,
                headers={"content-type": "application/x-www-form-urlencoded"},
            ).status_code
            == 413
        )
        assert (
            c.post("/r/s0-1/label", data={"csrf": token}).status_code == 400
        )  # neither right/wrong nor a label
        ok = c.post("/r/s0-1/label", data={"judgement": "right", "csrf": token, "note": "n" * 9000})
        assert ok.status_code == 303 and ok.headers["location"] == "/r/s0-1?saved=1"
        assert len(json.loads(review.store.labels_path.read_text().splitlines()[-1])["note"]) == 4000
        assert c.get("/r/..%2F..%2Fetc%2Fpasswd").status_code == 404
        assert c.get("/runs/0/plot/summary.json").status_code == 404
        assert c.get("/runs/0/plot/..%2Fresults.jsonl").status_code == 404
        assert c.get("/runs/0/plot/confusion.png").headers["content-type"] == "image/png"
        assert c.get("/runs/7").status_code == 404


def test_extra_host_names_are_allowed_only_when_given(tmp_path: Path) -> None:
    audit, _ = _write_records(tmp_path)
    server = ReviewServer(Store([audit], tmp_path / "l.jsonl"), extra_hosts=["review.internal"])
    with server, httpx.Client(base_url=server.url) as c:
        assert c.get("/", headers={"host": f"review.internal:{server.port}"}).status_code == 200
        assert c.get("/", headers={"host": f"review.internal:{server.port + 1}"}).status_code == 400
        assert c.get("/", headers={"host": f"other.internal:{server.port}"}).status_code == 400
