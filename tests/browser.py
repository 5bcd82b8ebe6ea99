"""Headless Chromium for browser tests: Debian's chromium + chromedriver, driven by selenium.

The flags keep Chromium off the network (this machine has none) and out of the sandbox (tests
run as root); each driver gets a fresh profile directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@contextmanager
def headless_chromium(profile_dir: Path, window: str = "1200,1600") -> Iterator[object]:
    """A selenium Chrome driver on headless Chromium; quit when the block ends."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which(CHROMEDRIVER):
        pytest.fail("chromedriver is missing: run scripts/setup.sh --browser")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={window}", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    try:
        yield driver
    finally:
        driver.quit()
