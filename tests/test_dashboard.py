"""The dashboard at ``/_sim/ui`` in a real headless browser (Debian's chromium + chromium-driver, selenium).

A missing browser fails these tests (``.ci/run`` installs both); they never skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from convai_sync import ConvaiClient, Disconnected, DisconnectReason, EventDeliveryPolicy
from convai_sync.testing import Recorder
from simulator import Simulator

pytestmark = pytest.mark.timeout(90)

WAIT = 15.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1100,760", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(concurrency_limit=3, usage_quota=50) as simulator:
        yield simulator


def _wait(browser: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    """Waits that look again when the page re-rendered an element under them (it does, twice a second)."""
    return WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))


def _row_text(browser: webdriver.Chrome, selector: str) -> str:
    """The text of the row ``selector`` names, read once it is there (re-read when it was just re-rendered)."""
    texts: list[str] = []

    def read(driver: webdriver.Chrome) -> bool:
        texts[:] = [driver.find_element(By.CSS_SELECTOR, selector).text]
        return True

    _wait(browser).until(read)
    return texts[0]


def test_clicking_inject_ends_the_session_with_that_reason(browser: webdriver.Chrome, sim: Simulator) -> None:
    gone: Recorder[Disconnected] = Recorder()
    with ConvaiClient(sim.client_config()) as client:
        client.events.on_disconnected.subscribe(gone, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        client.ask("hello", timeout=WAIT)
        session_id = client.session_id
        assert session_id is not None
        browser.get(f"{sim.url}/_sim/ui#token={sim.control_token}")
        row = f'#sessions tr[data-session-id="{session_id}"]'
        _wait(browser).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, row)))
        assert sim.control_token not in browser.current_url  # the fragment was taken off the address bar
        _wait(browser).until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, f'#target option[value="{session_id}"]')))
        Select(browser.find_element(By.ID, "target")).select_by_value(session_id)
        Select(browser.find_element(By.ID, "fault")).select_by_value("reason:PARTICIPANT_REMOVED")
        browser.find_element(By.ID, "inject").click()
        gone.wait(1, timeout=WAIT)
        assert gone.events[0].reason is DisconnectReason.PARTICIPANT_REMOVED
        ended = f'#ended tr[data-session-id="{session_id}"]'
        _wait(browser).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ended)))
        assert _row_text(browser, ended).split()[2:4] == ["4004", "PARTICIPANT_REMOVED"]


def test_a_network_fault_and_reset_from_the_page(browser: webdriver.Chrome, sim: Simulator) -> None:
    browser.get(f"{sim.url}/_sim/ui#token={sim.control_token}")
    _wait(browser).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, '#fault option[value="toxic:latency"]')))
    Select(browser.find_element(By.ID, "fault")).select_by_value("toxic:latency")
    browser.find_element(By.ID, "params").send_keys("latency=0.2, jitter=0.05")
    browser.find_element(By.ID, "inject").click()
    _wait(browser).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#toxics tr[data-toxic-id]")))
    [toxic] = sim.toxics()
    assert toxic["kind"] == "latency" and toxic["latency"] == 0.2 and toxic["jitter"] == 0.05
    browser.find_element(By.ID, "reset").click()
    _wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "result"), "simulator reset"))
    assert sim.toxics() == []


def test_without_the_token_the_page_asks_for_it_and_the_data_routes_refuse(browser: webdriver.Chrome,
                                                                            sim: Simulator) -> None:
    browser.get(f"{sim.url}/_sim/ui")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{sim.url}/_sim/ui")
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "login")))
    assert not browser.find_element(By.ID, "board").is_displayed()
    for route in ("events", "catalog", "state"):
        assert requests.get(f"{sim.url}/_sim/{route}", timeout=WAIT).status_code == 401
    page = requests.get(f"{sim.url}/_sim/ui", timeout=WAIT)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert sim.control_token not in page.text
    # Signing in through the form works like the fragment.
    browser.find_element(By.ID, "token").send_keys(sim.control_token)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    _wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "live:"))
