"""The report's interactive charts: their data and policy on the page, and their behaviour in a real browser.

The browser tests open the written index.html (file://) in Debian's headless chromium through chromedriver, as
installed by `apt-get install chromium chromium-driver`, with selenium (the dev extra). Selenium is always given
both binaries, so its driver manager never downloads one. They skip, saying which, where one is missing.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fake_device  # noqa: F401  (registers the "fake" backend)
import numpy as np
import pytest
from test_report import profiled

from compofa.report import PAGE_NAME, ReportRequest, write_report
from compofa.report.crossdevice import Scatter
from compofa.report.interactive import SCRIPT, export_command, scatter_chart, script_hash
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyPredictor
from compofa.space import parse_spec
from compofa.tables import LatencyTable

#: Subnets per table: enough for a front with several points, few enough to profile in a second.
SUBNETS = 12
WIDTH = 1.2  # the family's default width, which the report uses when none is given


@dataclass(frozen=True)
class Written:
    page: Path
    html: str
    entries: dict[str, Any]  # spec -> the first table's entry
    accuracy: dict[str, float]  # spec -> the shipped predictor's accuracy (percent)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """A report of two measured tables (no LUT: fast): a Pareto chart for each and one latency scatter."""
    folder = tmp_path_factory.mktemp("browser-report")
    tables = (profiled(folder, SUBNETS, "a.db"), profiled(folder, SUBNETS, "b.db"))
    write_report(ReportRequest(tables, folder / "out", luts=()))
    with LatencyTable.open(tables[0]) as store:
        entries = {e.key.spec: e for e in store.entries()}
    specs = list(entries)
    predicted = AccuracyPredictor.shipped().predict(ArchBatch.from_specs([parse_spec(s) for s in specs]))
    page = folder / "out" / PAGE_NAME
    return Written(page, page.read_text(), entries, dict(zip(specs, (float(a) * 100 for a in predicted))))


def chart_data(page: str) -> list[dict[str, Any]]:
    return [json.loads(text) for text in re.findall(r'<script type="application/json">(.*?)</script>', page)]


# -- without a browser ------------------------------------------------------------------------------


def test_page_holds_the_charts_data_and_fetches_nothing(written: Written) -> None:
    charts = chart_data(written.html)
    assert len(charts) == 3  # a Pareto chart per table, one scatter
    for chart in charts[:2]:
        assert sorted(chart["spec"]) == sorted(written.entries) and chart["y"]["kind"] == "accuracy"
    scatter = charts[2]
    for index, spec in enumerate(scatter["spec"]):
        entry = written.entries[spec]
        assert scatter["xs"][index] == pytest.approx(entry.median_ms, rel=1e-4)
        assert scatter["x_low"][index] == pytest.approx(entry.ci_low_ms, rel=1e-4)
        assert scatter["x_high"][index] == pytest.approx(entry.ci_high_ms, rel=1e-4)
        assert scatter["accuracy"][index] == pytest.approx(written.accuracy[spec], abs=0.01)
    assert "dashed: y = x" in written.html  # two tables of one machine: their latencies meet on y = x
    # every point is drawn in SVG, readable without the script
    assert written.html.count('<circle class="pt"') == sum(len(c["spec"]) for c in charts)
    # nothing leaves the page: no URL but data: images and anchors, and a policy that forbids fetching
    assert "://" not in written.html
    links = re.findall(r"(?:src|href)=['\"]?([^'\" >]*)", written.html)
    assert links and all(link.startswith(("data:image/png;base64,", "#")) for link in links)
    policy = re.search(r'<meta http-equiv=Content-Security-Policy content="([^"]*)"', written.html)
    assert policy is not None and "default-src 'none'" in policy.group(1)
    assert f"script-src {script_hash()}" in policy.group(1)
    assert written.html.count("<script>") == 1 and f"<script>{SCRIPT}</script>" in written.html


def test_chart_data_cannot_end_its_script_element() -> None:
    """A source label with markup in it stays data: escaped in JSON, text in SVG."""
    label = "</script><script>alert(1)</script>&"
    values = np.array([1.0, 2.0, 3.0])
    specs = tuple(f"compofa-r160-k33e33_k33e33_k33e33_k33e33_k33e3{e}" for e in (3, 4, 6))
    chart = scatter_chart(Scatter(label, "b", specs, values, values * 2, values - 0.1, values + 0.1, values * 2,
                                  values * 2, 1.0), WIDTH)
    assert chart.count("</script>") == 1 and "<script>alert" not in chart
    (data,) = chart_data(chart)
    assert data["x"]["name"] == label and html.escape(label) in chart
    assert data["command"].replace(data["slot"], specs[0]) == export_command(specs[0], WIDTH)


# -- in chromium --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One headless chromium for the module, on the written page, logging console messages and network events
    (the report is written once the browser is known to be there)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("chromium or chromedriver is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    written: Written = request.getfixturevalue("written")
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        session.get(written.page.as_uri())
        yield session
    finally:
        session.quit()


def charts(browser: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, ".chart")


def part(chart: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return chart.find_element(By.CSS_SELECTOR, selector)


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+\.\d+", text)]


def test_charts_render_every_point_with_axes(browser: Any, written: Written) -> None:
    from selenium.webdriver.common.by import By

    found = charts(browser)
    assert len(found) == 3
    for chart in found:
        count = browser.execute_script("return JSON.parse(arguments[0].textContent).spec.length",
                                       part(chart, "script[type='application/json']"))
        assert len(chart.find_elements(By.CSS_SELECTOR, "svg circle.pt")) == count == SUBNETS
        ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "svg .ticks text")]
        assert len(ticks) >= 4 and all(re.fullmatch(r"-?\d+(\.\d+)?", t) for t in ticks)
        assert part(chart, "svg").size["width"] > 300  # drawn, not collapsed


def test_hover_shows_spec_interval_and_accuracy_and_click_copies(browser: Any, written: Written,
                                                                 tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    chart = charts(browser)[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    # the last point drawn is the front's last: the most accurate subnet of the table
    best = max(written.accuracy, key=written.accuracy.__getitem__)
    entry = written.entries[best]
    ActionChains(browser).move_to_element(chart.find_elements(By.CSS_SELECTOR, "circle.pt")[-1]).perform()
    tip = part(chart, ".tip")
    assert tip.is_displayed()
    lines = tip.text.splitlines()
    assert lines[0] == best
    median, low, high = numbers(lines[1])
    assert median == pytest.approx(entry.median_ms, rel=1e-3)
    assert (low, high) == (pytest.approx(entry.ci_low_ms, rel=1e-3), pytest.approx(entry.ci_high_ms, rel=1e-3))
    assert "95% interval" in lines[1]
    assert numbers(lines[2]) == [pytest.approx(written.accuracy[best], abs=0.006)]
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    browser.execute_cdp_cmd("Browser.grantPermissions", {"permissions": ["clipboardReadWrite",
                                                                          "clipboardSanitizedWrite"]})
    ActionChains(browser).click().perform()
    command = export_command(best, WIDTH)
    status = part(chart, ".copy .status")
    _wait_for_text(browser, status)
    assert status.text == "copied" and part(chart, ".copy input").get_attribute("value") == command
    assert browser.execute_async_script(READ_CLIPBOARD) == command


READ_CLIPBOARD = """var done = arguments[arguments.length - 1];
navigator.clipboard.readText().then(done, function (error) { done("refused: " + error); });"""


def test_where_the_clipboard_is_refused_the_command_is_selected(browser: Any, written: Written) -> None:
    """On a page the clipboard API may not write from (file:// in some browsers), the command is selected."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    chart = charts(browser)[1]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); navigator.clipboard.writeText ="
                           " function () { return Promise.reject(new Error('denied')); };", chart)
    first = chart.find_elements(By.CSS_SELECTOR, "circle.pt")[0]
    ActionChains(browser).move_to_element(first).click().perform()
    status = part(chart, ".copy .status")
    _wait_for_text(browser, status)
    box = part(chart, ".copy input")
    spec = part(chart, ".tip").text.splitlines()[0] if part(chart, ".tip").is_displayed() else None
    command = box.get_attribute("value")
    assert spec is None or command == export_command(spec, WIDTH)
    assert status.text in ("copied", "selected: press Ctrl+C to copy")  # execCommand may still copy
    selected = browser.execute_script("var box = arguments[0]; return document.activeElement === box && "
                                      "box.value.substring(box.selectionStart, box.selectionEnd)", box)
    assert selected == command and command.startswith("compofa export compofa-r160-")


def test_keyboard_focus_walks_the_points_by_latency(browser: Any, written: Written) -> None:
    from selenium.webdriver.common.keys import Keys

    chart = charts(browser)[2]  # the scatter: latency on table a (x) against table b
    svg = part(chart, "svg")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", svg)
    by_latency = sorted(written.entries, key=lambda spec: written.entries[spec].median_ms)
    tip = part(chart, ".tip")
    assert tip.text.splitlines()[0] == by_latency[0]
    svg.send_keys(Keys.ARROW_RIGHT)
    lines = tip.text.splitlines()
    assert lines[0] == by_latency[1]
    entry = written.entries[by_latency[1]]
    assert numbers(lines[1])[:3] == [pytest.approx(v, rel=1e-3) for v in (entry.median_ms, entry.ci_low_ms,
                                                                          entry.ci_high_ms)]
    assert len(numbers(lines[2])) == 3 and numbers(lines[3]) == [pytest.approx(written.accuracy[lines[0]], abs=0.006)]
    svg.send_keys(Keys.END)
    assert tip.text.splitlines()[0] == by_latency[-1]
    svg.send_keys(Keys.ESCAPE)
    assert not tip.is_displayed()


def test_no_console_errors_and_nothing_fetched(browser: Any, written: Written) -> None:
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requested = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert written.page.as_uri() in requested
    assert all(url == written.page.as_uri() or url.startswith("data:image/png;base64,") for url in requested)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_the_page_policy_refuses_a_fetch(browser: Any) -> None:
    """Were something on the page to try, the Content-Security-Policy stops it before any request is made."""
    refused = browser.execute_async_script("""var done = arguments[arguments.length - 1], seen = [];
document.addEventListener("securitypolicyviolation", function (event) { seen.push(event.effectiveDirective); });
var image = document.createElement("img");
image.src = "http://127.0.0.1:9/probe.png";
document.body.appendChild(image);
fetch("http://127.0.0.1:9/probe").then(function () { done(["fetched"]); },
                                       function () { setTimeout(function () { done(seen); }, 100); });""")
    assert sorted(refused) == ["connect-src", "img-src"]


def _wait_for_text(browser: Any, element: Any) -> None:
    """Until `element` has text (a copy's outcome arrives asynchronously)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(lambda _: element.text)
