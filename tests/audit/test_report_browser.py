"""report.html of a real audit opened offline in headless Chromium: its charts render."""

from __future__ import annotations

import pytest

from audit.finish import finish
from audit.logformat import ActivationLog
from audit.questions import make_questions
from audit.runner import run_audit
from audit.synthetic import write_synthetic_log
from oracle.engines.hf import HFEngine
from tests.browser import headless_chromium
from tests.helpers import make_oracle_dir


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_report_renders_its_charts_offline(tmp_path):
    from selenium.webdriver.common.by import By

    base, oracle = make_oracle_dir(tmp_path / "models", "llama")
    engine = HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")
    write_synthetic_log(tmp_path / "log", 12, d_model=engine.d_model, n_positions=3)
    log = ActivationLog(tmp_path / "log")
    questions = make_questions(["Is the assistant a pirate?", "What persona is it playing?"])
    state = run_audit(engine, log, questions, tmp_path / "out", batch_size=8, max_new_tokens=3)
    summary = finish(tmp_path / "out", log, threshold=0.0, expected=state.total)
    assert summary["flagged"] == 12  # threshold 0: every yes/no pair is flagged, with its text
    report = tmp_path / "out" / "report.html"

    with headless_chromium(tmp_path / "profile") as driver:
        driver.get(report.as_uri())
        assert driver.title == "Activation audit"
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 3  # top answers of both questions, one P(yes) histogram
        for chart in charts:
            assert chart.size["width"] > 0 and chart.size["height"] > 0
            bars = chart.find_elements(By.TAG_NAME, "rect")
            sizes = [b.size for b in bars]
            assert any(s["width"] > 0 and s["height"] > 0 for s in sizes)
        histogram = charts[1]
        heights = driver.execute_script(
            "return Array.from(arguments[0].querySelectorAll('rect'))"
            ".map(r => r.getBoundingClientRect().height)",
            histogram,
        )
        # 12 P(yes) values fall in some bins: the drawn bars' heights are not all zero
        assert sum(h > 0 for h in heights) >= 1
        summary_rows = driver.find_elements(By.CSS_SELECTOR, "table")[1].find_elements(
            By.TAG_NAME, "tr"
        )
        assert len(summary_rows) == 3  # header + 2 questions
        assert "synthetic record 11" in driver.find_element(By.TAG_NAME, "body").text
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
