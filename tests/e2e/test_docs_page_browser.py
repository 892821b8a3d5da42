"""The docs page in a real browser: Debian's headless Chromium (installed by `make test`), driven by
Selenium through Debian's chromedriver, opens /api/docs on the local host, the page renders every
operation from the app's own document, and "Try it out" on POST /orders creates an order (201).
A screenshot is saved under test-output/ (TEST_OUTPUT_DIR overrides it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.localhost import ROOT, LocalHost

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
OUTPUT = Path(os.environ.get("TEST_OUTPUT_DIR", ROOT / "test-output"))
# The flags that work on a machine without a network (no sandbox as root, no background calls
# home that a closed network refuses).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")
WAIT = 30


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, f"{missing} not installed: `make test` installs Debian's chromium and " \
        "chromium-driver (apt-get)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, css: str, what: str, timeout: float = WAIT) -> None:
    try:
        WebDriverWait(driver, timeout).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(OUTPUT / "docs-page-failed.png"))
        raise AssertionError(f"timed out after {timeout}s waiting for {what} ({css}); "
                             f"screenshot in {OUTPUT}") from None


@pytest.mark.timeout(180)
def test_the_docs_page_renders_and_try_it_out_creates_an_order(
    host: LocalHost, browser: webdriver.Chrome
) -> None:
    document = host.request("GET", "/openapi.json").json()
    operation_ids = [op["operationId"] for item in document["paths"].values()
                     for op in item.values()]
    browser.get(f"{host.base}/docs")

    # Every operation of the document is on the page (Swagger UI ids: operations-{tag}-{id}).
    wait_for(browser, "#operations-orders-orders_create", "the operations to render")
    rendered = {element.get_attribute("id")
                for element in browser.find_elements(By.CSS_SELECTOR, ".opblock")}
    expected = {f"operations-{op['tags'][0]}-{op['operationId']}"
                for item in document["paths"].values() for op in item.values()}
    assert expected <= rendered, sorted(expected - rendered)
    assert len(operation_ids) == len(expected)

    create = "#operations-orders-orders_create"
    browser.find_element(By.CSS_SELECTOR, f"{create} .opblock-summary").click()
    wait_for(browser, f"{create} .try-out__btn", "the Try it out button")
    browser.find_element(By.CSS_SELECTOR, f"{create} .try-out__btn").click()
    wait_for(browser, f"{create} .body-param__text", "the request body editor")
    body = browser.find_element(By.CSS_SELECTOR, f"{create} .body-param__text")
    assert json.loads(body.get_attribute("value") or "{}") == {
        "customerId": "customer-42", "currency": "EUR"}  # the documented example
    browser.find_element(By.CSS_SELECTOR, f"{create} .execute").click()
    status_cell = f"{create} .live-responses-table .response .response-col_status"
    wait_for(browser, status_cell, "the response of the request")
    status = browser.find_element(By.CSS_SELECTOR, status_cell).text.strip()
    response_body = browser.find_element(
        By.CSS_SELECTOR, f"{create} .live-responses-table .response-col_description pre")

    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.CSS_SELECTOR, create).location_once_scrolled_into_view  # noqa: B018
    assert browser.save_screenshot(str(OUTPUT / "docs-page.png"))
    assert status == "201", f"Try it out answered {status}: {response_body.text}"

    # The order it created is real.
    order_id = json.loads(response_body.text)["orderId"]
    assert host.request("GET", f"/orders/{order_id}").json()["customerId"] == "customer-42"
    # Nothing was refused by the page's policy or failed to load (no CDN, no other origin).
    logged = browser.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [entry for entry in logged if entry["level"] == "SEVERE"]
    assert errors == []
