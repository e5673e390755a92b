"""A real headless browser for the TensorBoard tests: Debian's chromium driven by Selenium through
Debian's chromedriver (both found by the ``chromium`` fixture in conftest.py, installed by .ci/run,
never at test time: Selenium is given the driver's path, so its manager downloads nothing)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Text of the whole page, shadow roots included (TensorBoard's HParams plugin renders in them).
DEEP_TEXT = """const out = []; const walk = (n) => {
  if (n.shadowRoot) walk(n.shadowRoot);
  for (const c of n.childNodes) {
    if (c.nodeType === 3) out.push(c.textContent);
    else if (!['SCRIPT', 'STYLE'].includes(c.nodeName)) walk(c);
  } };
  walk(document); return out.join(' ');"""


@contextmanager
def browser(chromium: str, chromedriver: str, profile: Path) -> Iterator:
    """A headless chromium under Selenium, for as long as the block runs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,900"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def rendered_text(driver, url: str, want: list[str], timeout_s: float = 300) -> str:
    """Load ``url`` and wait until every string of ``want`` is in the rendered text (or the
    timeout passes); the text last read."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_page_load_timeout(timeout_s)
    driver.get(url)
    seen = {"text": ""}

    def shows_all(d) -> bool:
        seen["text"] = d.execute_script(DEEP_TEXT) or ""
        return all(w in seen["text"] for w in want)

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=1).until(shows_all)
    except TimeoutException:
        pass  # the caller names what is missing
    return seen["text"]
