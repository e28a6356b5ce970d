"""The report of the committed corpus, opened in headless Chromium (Debian: chromium) at 1400 px.

Checks that the charts really render (SVG elements laid out with a non-zero size, the
expected ids and titles), that no two text labels of a chart overlap, that axes carry
ticks with values, that the page is compact (overview and "how to read" first, flow
details folded per host, the long table folded), that the page logs no console errors
and makes no network request, and saves a screenshot: tmp_path always; docs/img/report.png
as well when MSEWATCH_UPDATE_SCREENSHOT=1 (the README's picture).

Timing: every browser step waits on an event (the page's load event, an element, the
screenshot) with one budget, MSEWATCH_BROWSER_TIMEOUT seconds (default 300): a loaded
2-core CI machine can take a minute to start Chromium and lay out the page, and a wait
that ends early because the machine is busy is a flaky test, not a finding.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from msewatch.report import build_report, write_report

from .conftest import CORPUS, corpus_pcaps

CHROMIUM = "/usr/bin/chromium"
# --disable-quic and no background networking/component updates/sync: this machine has no
# network, and Chromium's attempts to reach one stall its start-up; a fresh profile per run
# (user_data_dir below) keeps state from an earlier run out of it.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = int(float(os.environ.get("MSEWATCH_BROWSER_TIMEOUT", "300")) * 1000)
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "report.png"
WIDTH = 1400

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the report's browser test",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI package playwright is not installed "
                               "(pip install -e '.[test]')")


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
def page_run(report_file, tmp_path_factory):
    """Load the report once; collect console messages, page errors and requests."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True, timeout=TIMEOUT_MS,
            viewport={"width": WIDTH, "height": 1000})
        try:
            context.set_default_timeout(TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            console, errors, requests = [], [], []
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report_file.as_uri(), wait_until="load", timeout=TIMEOUT_MS)
            page.wait_for_function("document.readyState === 'complete'", timeout=TIMEOUT_MS)
            yield page, console, errors, requests
        finally:
            context.close()


_state = {"all_open": False}


def _open_all(page) -> None:
    """Open every <details> (what a reader does to see every chart)."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    _state["all_open"] = True


def _as_shipped(page, report_file) -> None:
    """Back to the page as it opens (folded), if a test opened the folders."""
    if _state["all_open"]:
        page.goto(report_file.as_uri(), wait_until="load", timeout=TIMEOUT_MS)
        _state["all_open"] = False


def test_page_loads_without_console_errors_or_network_requests(page_run, report_file):
    page, console, errors, requests = page_run
    assert page.title() == "msewatch report"
    assert errors == []
    assert [m for m in console if m[0] in ("error", "warning")] == []
    assert requests == [report_file.as_uri()]  # only the file itself: nothing fetched


def test_the_page_is_compact_with_the_overview_and_how_to_read_first(page_run, report_file):
    page, *_ = page_run
    _as_shipped(page, report_file)
    tops = page.evaluate(
        "['summary', 'how-to-read', 'hosts', 'flows', 'flow-details', 'compare', 'all-flows']"
        ".map(id => document.getElementById(id).getBoundingClientRect().top + window.scrollY)")
    assert tops == sorted(tops)
    assert tops[1] < 1500  # "how to read" within the first screenful and a half
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 15000, height  # 81,000 px before: flow details and the long table are folded
    assert page.locator("#all-flows details").count() == 1
    assert page.evaluate("document.querySelector('#all-flows details').open") is False
    heads = page.locator("#flow-table tr").first.text_content()
    assert "time" in heads and "pcap" in heads and "own families" in heads and "context families" in heads


def test_flow_details_are_folded_per_host_and_the_named_flow_is_open(page_run, report_file, mse_flow):
    page, *_ = page_run
    _as_shipped(page, report_file)
    _, flow = mse_flow
    groups = page.locator("#flow-details details.group")
    assert groups.count() >= 3
    opened = page.evaluate("[...document.querySelectorAll('#flow-details details.group')].filter(d => d.open).length")
    assert opened == 1  # the group of the named flow (--flow)
    card = page.locator(f"#flow-details section.flow[data-uid='{flow['uid']}']")
    assert card.count() == 1 and card.is_visible()
    box = card.bounding_box()
    assert box and box["width"] > WIDTH - 110  # cards use the page's width


def test_every_chart_is_laid_out_with_a_nonzero_size(page_run):
    page, *_ = page_run
    _open_all(page)
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


# every <text> of every chart, as laid out: [chart id, text, x0, y0, x1, y1]
_TEXT_BOXES = """els => els.flatMap(svg => [...svg.querySelectorAll('text')].map(t => {
  const r = t.getBoundingClientRect(); return [svg.id, t.textContent, r.left, r.top, r.right, r.bottom]; }))"""


def test_no_two_labels_of_a_chart_overlap(page_run):
    page, *_ = page_run
    _open_all(page)
    by_chart: dict[str, list] = {}
    for cid, text, *box in page.eval_on_selector_all("svg.chart", _TEXT_BOXES):
        if box[2] - box[0] > 0:
            by_chart.setdefault(cid, []).append((text, box))
    clashes = []
    for cid, items in by_chart.items():
        for i, (ta, a) in enumerate(items):
            for tb, b in items[i + 1:]:
                # 1 px of slack: glyph boxes of neighbouring labels may touch
                if a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1:
                    clashes.append((cid, ta, tb))
    assert not clashes, clashes[:10]


def test_axes_carry_ticks_with_values(page_run):
    page, *_ = page_run
    numeric = re.compile(r"^[+−-]?\d+(\.\d+)?[kM s m h]*$|^\+\d")
    for cls, want in (("chart-hist", 14), ("chart-score", 8), ("chart-popcount", 8), ("chart-bursts", 10),
                      ("chart-host", 9)):
        texts = page.eval_on_selector(f"svg.{cls}", "e => [...e.querySelectorAll('text')].map(t => t.textContent)")
        ticks = [t for t in texts if numeric.match(t.strip())]
        assert len(ticks) >= want, (cls, texts)


def test_mse_flow_card_shows_the_spec_bands_and_in_range_bursts(page_run, mse_flow):
    page, *_ = page_run
    _, flow = mse_flow
    card = page.locator(f"#flow-details section.flow[data-uid='{flow['uid']}']")
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
    facts = card.locator("dl.facts").inner_text()
    assert "own families" in facts and "context families" in facts


def test_bands_only_where_they_apply(page_run):
    page, *_ = page_run
    tracker = page.locator("#flow-details section.flow:has(h3 b:text-is('tracker'))")
    assert tracker.count() >= 1
    for i in range(tracker.count()):
        card = tracker.nth(i)
        assert card.locator("svg.chart-bursts rect.spec-band").count() == 0
        assert card.locator("svg.chart-bursts text.no-bands").count() == 1
        assert "MSE bursts" not in card.locator("dl.facts").inner_text()


def test_host_timeline_and_comparison_render(page_run):
    page, *_ = page_run
    host = page.locator("section.host svg.chart-host").first
    box = host.bounding_box()
    assert box and box["width"] > WIDTH - 140
    assert host.locator("rect.event").count() > 0  # discovery / encrypted markers
    assert page.locator("div.comparison section.flow").count() == 2


def test_screenshot(page_run, report_file, tmp_path, mse_flow):
    page, *_ = page_run
    _as_shipped(page, report_file)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True, timeout=TIMEOUT_MS)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MSEWATCH_UPDATE_SCREENSHOT") == "1":
        # the README picture: overview, how to read, one host timeline and the MSE flow card
        _, flow = mse_flow
        page.add_style_tag(content=(
            "#truth, #flows, #compare, #all-flows, #hosts > details, #hosts > p, #latency, nav, "
            "#flow-details > p, section.host ~ section.host { display: none !important } "
            f"#flow-details details.group:not([open]), #flow-details section.flow:not([data-uid='{flow['uid']}'])"
            " { display: none !important }"))
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG), full_page=True, timeout=TIMEOUT_MS)
