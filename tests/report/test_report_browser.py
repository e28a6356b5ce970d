"""The report of the committed corpus, opened in headless Chromium (Debian: chromium).

Checks that the charts really render (SVG elements laid out with a non-zero size, the
expected ids and titles), that the page logs no console errors and makes no network request,
and saves a screenshot: tmp_path always; docs/img/report.png as well when
MSEWATCH_UPDATE_SCREENSHOT=1 (the README's picture).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from msewatch.report import build_report, write_report

from .conftest import CORPUS, corpus_pcaps

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "report.png"

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (Debian packages chromium and chromium-driver)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI package playwright is not installed")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, mse_flow) -> Path:
    pcap, flow = mse_flow
    # the MSE flow's pcap first: it keeps seed 0, so the flow keeps the uid the fixture saw
    pcaps = [pcap] + [p for p in corpus_pcaps() if p != pcap]
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(str(out), build_report(pcaps, labels=str(CORPUS / "labels.csv"), hosts=str(CORPUS / "hosts.csv"),
                                        flows=[flow["uid"]], top=20, top_hosts=6))
    return out


@pytest.fixture(scope="module")
def page_run(report_file):
    """Load the report once; collect console messages, page errors and requests."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console, errors, requests = [], [], []
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report_file.as_uri(), wait_until="load")
            yield page, console, errors, requests
        finally:
            browser.close()


def test_page_loads_without_console_errors_or_network_requests(page_run, report_file):
    page, console, errors, requests = page_run
    assert page.title() == "msewatch report"
    assert errors == []
    assert [m for m in console if m[0] in ("error", "warning")] == []
    assert requests == [report_file.as_uri()]  # only the file itself: nothing fetched


def test_every_chart_is_laid_out_with_a_nonzero_size(page_run):
    page, *_ = page_run
    boxes = page.eval_on_selector_all(
        "svg.chart",
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [e.id, e.getAttribute('class'), r.width, r.height, e.querySelector('title')?.textContent || ''] })",
    )
    kinds = {c.split()[-1] for _, c, *_ in boxes}
    assert {"chart-hist", "chart-bursts", "chart-popcount", "chart-score", "chart-host"} <= kinds
    for id_, cls, w, h, title in boxes:
        assert w > 50 and h > 50, (id_, w, h)
        assert title, id_
    assert page.locator("#summary-probability").count() == 1


def test_mse_flow_card_shows_the_spec_bands_and_in_range_bursts(page_run, mse_flow):
    page, *_ = page_run
    _, flow = mse_flow
    card = page.locator(f"#flows section.flow[data-uid='{flow['uid']}']")
    assert card.count() == 1
    bursts = card.locator("svg.chart-bursts")
    assert bursts.locator("rect.spec-band").count() == 4
    band = bursts.locator("rect.spec-band").first.bounding_box()
    assert band and band["width"] > 0 and band["height"] > 0
    assert bursts.locator("rect.bar.burst").count() >= 2
    assert "Direction bursts and first payload sizes" in bursts.locator("title").first.text_content()
    assert card.locator("svg.chart-popcount rect.popcount-band").count() == 1
    assert card.locator("svg.chart-score line.threshold").count() == 2
    assert card.locator("ul.reasons li").count() == len(flow["reasons"])


def test_host_timeline_and_comparison_render(page_run):
    page, *_ = page_run
    host = page.locator("section.host svg.chart-host").first
    box = host.bounding_box()
    assert box and box["width"] > 300
    assert host.locator("rect.event").count() > 0  # discovery / encrypted markers
    assert page.locator("div.comparison section.flow").count() == 2


def test_screenshot(page_run, tmp_path):
    page, *_ = page_run
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MSEWATCH_UPDATE_SCREENSHOT") == "1":
        # the README picture: one MSE flow card and one host timeline, nothing else
        page.add_style_tag(content=(
            "#summary, #truth, #flow-index, #flows > p, #compare, #all-flows, #legend, nav, "
            "#hosts > p, #hosts-rest { display: none !important } "
            "section.flow ~ section.flow, section.host ~ section.host { display: none !important }"))
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG), full_page=True)
