"""`circuitcat serve`'s pages in headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by selenium; tests/run-all.sh installs them when missing): the feature page shows the
top context and the histogram, a circuit node opens its feature, a label written on the page
is found by search, the prompt graph draws. With CIRCUITCAT_WRITE_SCREENSHOTS=DIR each page is
also saved as a PNG there (how docs/screenshots/ is made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from circuitcat.cli.web import ServeConfig

from .test_serve_support import CIRCUIT, FEATURE, TOKEN, copy_toy, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 20


def _missing_browser() -> str | None:
    if CHROMIUM and CHROMEDRIVER:
        return None
    return (
        "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    )


@pytest.fixture(scope="module")
def base_url(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = copy_toy(toy_catalog, tmp_path_factory.mktemp("web") / "toy")
    with live_server(ServeConfig(store=store, tokens={"alice": TOKEN})) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def _screenshot(driver: Any, name: str, height: int = 1000) -> None:
    """Saved only when CIRCUITCAT_WRITE_SCREENSHOTS names a folder (docs/screenshots)."""
    folder = os.environ.get("CIRCUITCAT_WRITE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.set_window_size(1400, height)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
        driver.set_window_size(1400, 1000)


def _no_console_errors(driver: Any) -> None:
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_feature_page_shows_top_context_and_histogram(browser: Any, base_url: str) -> None:
    import httpx

    data = httpx.get(f"{base_url}/api/features/{FEATURE}").json()
    browser.get(f"{base_url}/feature/{FEATURE}")
    first = _wait(browser, "#top-contexts .ctx")
    top = data["top_contexts"][0]
    shown = [s.get_attribute("textContent") for s in first.find_elements("css selector", ".tok")]
    assert shown == top["tokens"]
    peak = first.find_element("css selector", ".tok.peak")
    assert peak.text == top["tokens"][top["acts"].index(max(top["acts"]))].strip()
    bars = browser.find_elements("css selector", "#histogram svg rect")
    assert len(bars) == len(data["histogram"]["counts"])
    ticks = browser.find_elements("css selector", "#histogram .axis .tick")
    assert len(ticks) >= 4  # both axes are drawn
    assert browser.find_element("css selector", "h1").text.startswith("L0/156")
    assert "promotes" in browser.find_element("id", "logits").text.lower()
    _no_console_errors(browser)
    _screenshot(browser, "feature", 1900)


def test_clicking_a_circuit_node_opens_its_feature(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/circuit/{CIRCUIT}")
    node = _wait(browser, "#circuit-graph g.node[data-kind='feature']")
    uid = node.get_attribute("data-id")
    assert _wait(browser, "#faithfulness-figure")
    assert browser.find_elements("css selector", "#circuit-graph path.link")
    assert browser.find_element("css selector", "[data-testid='legend']").text
    target = browser.find_element("css selector", "#circuit-graph g.node[data-kind='target']")
    assert target.text == "logit difference"  # what the edges go into, not verify's metric
    _no_console_errors(browser)
    _screenshot(browser, "circuit", 1500)
    from selenium.webdriver.common.action_chains import ActionChains

    symbol = node.find_element("css selector", "path")
    ActionChains(browser).move_to_element(symbol).perform()
    tip = browser.find_element("css selector", "#circuit-graph .tooltip")
    assert tip.is_displayed() and "score" in tip.text and "click to open" in tip.text
    ActionChains(browser).click(symbol).perform()
    _wait(browser, "#top-contexts")
    assert browser.current_url.endswith(f"/feature/{uid}")


def test_label_written_on_the_page_is_found_by_search(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/feature/{FEATURE}")
    form = _wait(browser, "#label-form")
    form.find_element("name", "text").send_keys("late-century start year")
    form.find_element("name", "token").send_keys("not-the-token-0123456789")
    form.find_element("css selector", "button").click()
    status = _wait(browser, "#label-status.error")
    assert "token" in status.text  # refused: a wrong token writes nothing
    form.find_element("name", "token").clear()
    form.find_element("name", "token").send_keys(TOKEN)
    form.find_element("css selector", "button").click()
    _wait(browser, "table#label-history")
    assert "late-century start year" in browser.find_element("id", "current-label").text
    assert "alice" in browser.find_element("id", "label-history").text
    assert TOKEN not in browser.current_url
    browser.get(f"{base_url}/search?q=late-century")
    link = _wait(browser, "#labelled a.feature-link")
    assert link.get_attribute("href").endswith(f"/feature/{FEATURE}")
    _screenshot(browser, "search", 1000)
    browser.get_log("browser")  # the refused write above logged its 401: expected


def test_prompt_graph_front_page_pairs_and_cypher(browser: Any, base_url: str) -> None:
    import httpx

    prompts = httpx.get(f"{base_url}/api/tasks/greater-than/prompts").json()["prompts"]
    uid = next(p["uid"] for p in prompts if p["graph_sets"])
    browser.get(f"{base_url}/prompt/{uid}")
    _wait(browser, "#prompt-graph g.node[data-kind='target']")
    assert browser.find_elements("css selector", "#prompt-graph g.node[data-kind='feature']")
    _no_console_errors(browser)
    _screenshot(browser, "prompt-graph", 1300)
    browser.get(f"{base_url}/")
    _wait(browser, "#feature-list table")
    _wait(browser, "#circuits a.circuit-link")
    links = browser.find_elements("css selector", "#circuits a.circuit-link")
    assert {a.text for a in links} >= {"greater-than", "less-than", "counting"}
    _screenshot(browser, "catalog", 1200)
    browser.get(f"{base_url}/pairs?src=L0/156&dst=L1/170")
    assert _wait(browser, "table#pair-prompts")
    _screenshot(browser, "pairs", 900)
    browser.get(f"{base_url}/cypher")
    _wait(browser, "#cypher-text")
    browser.find_element("css selector", "main button").click()
    assert "greater-than" in _wait(browser, "#cypher-result table").text
    _no_console_errors(browser)


LESS_THAN = "toy-years/tc-v1/circuit/less-than/less-than"


def test_compare_page_shows_two_circuits_with_shared_nodes(browser: Any, base_url: str) -> None:
    import httpx

    cmp = httpx.get(f"{base_url}/api/compare", params={"a": CIRCUIT, "b": LESS_THAN}).json()
    shared = {m["uid"] for m in cmp["features"]["members"]}
    assert shared  # the two year circuits share features (docs/circuits.md)
    browser.get(f"{base_url}/circuit/{CIRCUIT}")  # the circuit page links to the compare page
    _wait(browser, "#compare-link").click()
    form = _wait(browser, "#compare-form")
    picked = [
        e.get_attribute("value") for e in form.find_elements("css selector", "option:checked")
    ]
    assert picked[0] == CIRCUIT and picked[1] != CIRCUIT
    browser.get(f"{base_url}/compare?a={CIRCUIT}&b={LESS_THAN}")
    _wait(browser, "#compare-b g.node[data-kind='feature']")
    for side in ("#compare-a", "#compare-b"):
        ringed = browser.find_elements("css selector", f"{side} g.node.shared[data-kind='feature']")
        assert {n.get_attribute("data-id") for n in ringed} == shared
    assert str(cmp["features"]["shared"]) in browser.find_element("id", "compare-overlap").text
    rows = browser.find_elements("css selector", "#compare-shared tbody tr")
    assert len(rows) == cmp["features"]["shared"] + cmp["heads"]["shared"]
    _no_console_errors(browser)
    _screenshot(browser, "compare", 1400)
    # the feature page of a shared feature lists both circuits, with its score in each
    uid = sorted(shared)[0]
    browser.get(f"{base_url}/feature/{uid}")
    table = _wait(browser, "#feature-circuits")
    text = table.text
    scores = {m["uid"]: m for m in cmp["features"]["members"]}[uid]
    assert "greater-than" in text and "less-than" in text
    assert f"{scores['score_a']:.3g}" in text and f"{scores['score_b']:.3g}" in text  # as num()


def test_intervention_run_on_the_feature_page_is_saved_and_listed(
    browser: Any, base_url: str
) -> None:
    """The feature page's form POSTs with the token; the result shows, the saved intervention
    is listed on the feature page and on the circuit page."""
    browser.get(f"{base_url}/feature/{FEATURE}")
    form = _wait(browser, "#intervention-form")
    assert "no saved interventions" in browser.find_element("id", "feature-interventions").text
    form.find_element("name", "n").clear()
    form.find_element("name", "n").send_keys("8")
    form.find_element("name", "token").send_keys(TOKEN)
    form.find_element("css selector", "button").click()
    result = _wait(browser, "#intervention-result")
    assert "prob_diff" in result.text and "saved as" in result.text
    listed = _wait(browser, "table#feature-interventions")
    assert "zero" in listed.text and "alice" in listed.text
    _screenshot(browser, "intervention", 1200)
    browser.get(f"{base_url}/circuit/{CIRCUIT}")
    assert "alice" in _wait(browser, "table#circuit-interventions").text
    _no_console_errors(browser)
