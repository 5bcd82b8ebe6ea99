"""The web page in headless Chromium (Debian's chromium + chromedriver) against a real server."""

from __future__ import annotations

import pytest

from oracle.engines.hf import HFEngine
from serving.app import create_app
from serving.settings import ServeSettings
from tests.browser import headless_chromium
from tests.helpers import make_oracle_dir
from tests.serving_support import serve_in_thread


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_page_asks_and_shows_answer_and_token_heat(tmp_path):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, oracle = make_oracle_dir(tmp_path / "models", "llama")
    engine = HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")
    app = create_app(ServeSettings(target=str(base), oracle=str(oracle)), engine=engine)
    with (
        serve_in_thread(app) as url,
        headless_chromium(tmp_path / "profile", "1100,1500") as driver,
    ):
        driver.get(url + "/")
        driver.find_element(By.ID, "system").send_keys("You are a pirate.")
        driver.find_element(By.ID, "user").send_keys("Hello! How are you today?")
        driver.find_element(By.ID, "question").send_keys("Is the assistant a pirate?")
        driver.find_element(By.ID, "yesno").click()
        driver.find_element(By.ID, "ask").click()
        wait = WebDriverWait(driver, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#tokens .tok")))
        answer = driver.find_element(By.ID, "answer").text
        tokens = driver.find_elements(By.CSS_SELECTOR, "#tokens .tok")
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert driver.find_element(By.ID, "error").text == ""
        assert "P(yes) =" in answer
        assert tokens and all(t.get_attribute("data-p-yes") for t in tokens)
        scores = [float(t.get_attribute("data-p-yes")) for t in tokens]
        assert all(0.0 <= s <= 1.0 for s in scores)
        # the hidden system prompt's own tokens are not among those read
        assert "pirate" not in "".join(t.text for t in tokens)
        # a bad request shows the server's message, not a crash
        driver.find_element(By.ID, "question").clear()
        driver.find_element(By.ID, "ask").click()
        wait.until(lambda d: d.find_element(By.ID, "error").text)
        assert "422" in driver.find_element(By.ID, "error").text
    assert (tmp_path / "page.png").stat().st_size > 0
