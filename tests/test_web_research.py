"""The research questions' places in the service, in headless Chromium (the fixtures of
tests/test_web_browser.py): the prompt page's position and compare panels, the catalog page's
finder, and the feature page's automatic description, each showing what the API answers."""

from __future__ import annotations

from typing import Any

import httpx
from selenium.webdriver.support.ui import WebDriverWait

from .test_serve_support import FEATURE
from .test_web_browser import WAIT_S, _no_console_errors, _wait, base_url, browser

__all__ = ["base_url", "browser"]  # fixtures, shared with tests/test_web_browser.py


def _rows(driver: Any, table_id: str) -> int:
    return len(driver.find_elements("css selector", f"#{table_id} tr")) - 1  # the header row


def test_prompt_page_position_and_compare_panels(browser: Any, base_url: str) -> None:
    prompts = httpx.get(f"{base_url}/api/tasks/greater-than/prompts").json()["prompts"]
    a, b = [p["uid"] for p in prompts if p["graph_sets"]][:2]
    browser.get(f"{base_url}/prompt/{a}")
    _wait(browser, "#position-table tr td")
    _wait(browser, "#metric-table tr td")
    last = httpx.get(f"{base_url}/api/prompts/{a}/position", params={"pos": -1}).json()
    assert _rows(browser, "position-table") == len(last["features"]) > 0
    assert _rows(browser, "metric-table") == len(last["metric_inputs"])
    browser.find_element("css selector", "#position-select option[value='8']").click()
    at8 = httpx.get(f"{base_url}/api/prompts/{a}/position", params={"pos": 8}).json()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "at position 8 " in d.find_element("id", "position-features").text
    )
    assert _rows(browser, "position-table") == len(at8["features"])
    browser.find_element("id", "compare-input").send_keys(b)
    browser.find_element("css selector", "#compare-form button").click()
    _wait(browser, "#compare-table")
    shared = httpx.get(f"{base_url}/api/prompt-compare", params={"a": a, "b": b}).json()
    assert _rows(browser, "compare-table") == len(shared["shared"]) > 0
    _no_console_errors(browser)


def test_catalog_page_finds_features_and_feature_page_describes(
    browser: Any, base_url: str
) -> None:
    browser.get(f"{base_url}/")
    form = _wait(browser, "#find-form")
    form.find_element("name", "reads").send_keys("45")
    form.find_element("name", "promotes").send_keys("46..99")
    form.find_element("name", "layer").send_keys("0")
    form.find_element("css selector", "button").click()
    _wait(browser, "#find-table")
    found = httpx.get(
        f"{base_url}/api/find", params={"reads": "45", "promotes": "46..99", "layer": 0}
    ).json()
    assert _rows(browser, "find-table") == len(found) > 0
    assert found[0]["description"] in browser.find_element("id", "find-table").text
    browser.get(f"{base_url}/feature/{FEATURE}")
    auto = httpx.get(f"{base_url}/api/features/{FEATURE}").json()["auto_description"]
    assert auto and auto in _wait(browser, "#auto-description").text
    _no_console_errors(browser)
