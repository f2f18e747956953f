"""The board opened in a real headless Chromium (Selenium + Debian's chromium / chromium-driver; ``make
test-browser`` installs them): no console errors, one row per config, sortable headers, filters, a
rendered learning curve and a screenshot that is not blank. Skipped when Chromium or chromedriver is
absent."""

from __future__ import annotations

import io
import os
import shutil

import pytest
import yaml

from benchmark import board
from benchmark.records import group_records
from tests.test_board import TARGETS, fixed_records, paper_records, write_records

pytestmark = pytest.mark.browser

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
pytest.importorskip("optuna")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "Chromium and chromedriver are needed for the browser tests: "
        "apt-get install chromium chromium-driver (or run 'make test-browser')",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def make_study(path):
    """A small Optuna study in a SQLite file, as 'ctrbench tune' leaves one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="DCN_x-space",
        storage=f"sqlite:///{path}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.set_user_attr("expid", "DCN_x")
    study.optimize(lambda t: 0.7 + t.suggest_float("learning_rate", 1e-4, 1e-2, log=True), n_trials=6)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    records = fixed_records() + paper_records()
    results = write_records(root / "runs.jsonl", records)
    targets = root / "paper_t1.yaml"
    targets.write_text(yaml.safe_dump(TARGETS))
    (root / "tune").mkdir()
    make_study(root / "tune" / "DCN_x-space.db")
    out = root / "site"
    board.build([results], str(out), targets=[str(targets)], baseline="LR", config_dir=str(root))
    return {"out": out, "records": records}


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, path):
    driver.get(path.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def severe(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def pixel_std(png: bytes) -> float:
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).std())


def column_values(table, index):
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    return [row.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort") for row in rows]


def test_index_loads_without_console_errors(site, browser):
    open_page(browser, site["out"] / "index.html")
    assert severe(browser) == []
    assert browser.title == "ctrbench board"


def test_one_row_per_config_in_every_table(site, browser):
    open_page(browser, site["out"] / "index.html")
    sections = browser.find_elements(By.CSS_SELECTOR, "section.board-table")
    groups = group_records(site["records"])
    expected = {
        f"dataset-{d}": sum(g.dataset_id == d for g in groups) for d in {g.dataset_id for g in groups}
    }
    paper = [
        r
        for r in site["records"]
        if (r["config"].get("table_name"), r["config"].get("table_column")) == ("paper_t1", "colA")
    ]
    expected["paper-paper_t1-colA"] = len(group_records(paper))
    got = {s.get_attribute("id"): len(s.find_elements(By.CSS_SELECTOR, "tbody tr")) for s in sections}
    assert got == expected
    assert got["dataset-ds"] == 7  # 5 configs of the fixed records + the paper table's 2 on ds


def test_clicking_a_header_sorts_the_column(site, browser):
    open_page(browser, site["out"] / "index.html")
    table = browser.find_element(By.CSS_SELECTOR, "#dataset-ds table")
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    auc = next(i for i, th in enumerate(headers) if th.text.startswith("AUC"))
    headers[auc].click()
    values = [float(v) for v in column_values(table, auc)]
    assert values == sorted(values) and headers[auc].get_attribute("aria-sort") == "ascending"
    headers[auc].click()
    values = [float(v) for v in column_values(table, auc)]
    assert values == sorted(values, reverse=True) and headers[auc].get_attribute("aria-sort") == "descending"
    headers[0].click()  # text column
    labels = column_values(table, 0)
    assert [label.lower() for label in labels] == sorted(label.lower() for label in labels)
    assert severe(browser) == []


def test_filters_hide_tables_and_rows(site, browser):
    open_page(browser, site["out"] / "index.html")
    Select(browser.find_element(By.ID, "filter-dataset")).select_by_visible_text("other")
    visible = [
        s.get_attribute("id")
        for s in browser.find_elements(By.CSS_SELECTOR, "section.board-table")
        if s.is_displayed()
    ]
    assert visible == ["dataset-other"]
    Select(browser.find_element(By.ID, "filter-dataset")).select_by_index(0)
    Select(browser.find_element(By.ID, "filter-paper")).select_by_visible_text("paper_t1")
    visible = [
        s.get_attribute("id")
        for s in browser.find_elements(By.CSS_SELECTOR, "section.board-table")
        if s.is_displayed()
    ]
    assert visible == ["paper-paper_t1-colA"]
    Select(browser.find_element(By.ID, "filter-paper")).select_by_index(0)
    browser.find_element(By.ID, "filter-model").send_keys("DCN")
    rows = browser.find_elements(By.CSS_SELECTOR, "#dataset-ds tbody tr")
    assert [r.get_attribute("data-model") for r in rows if r.is_displayed()] == ["DCN"]


def test_learning_curves_and_tuning_plots_render(site, browser):
    open_page(browser, site["out"] / "index.html")
    link = browser.find_element(By.CSS_SELECTOR, "#dataset-ds tbody tr td.label a")
    link.click()
    WebDriverWait(browser, 30).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "div[id^=curves-] svg"))
    )
    plot = browser.find_element(By.CSS_SELECTOR, "div[id^=curves-]")
    assert "js-plotly-plot" in plot.get_attribute("class")
    assert plot.find_elements(By.CSS_SELECTOR, "svg.main-svg") or plot.find_elements(By.TAG_NAME, "canvas")
    assert len(plot.find_elements(By.CSS_SELECTOR, "g.trace.scatter")) >= 3  # one line per seed
    assert pixel_std(plot.screenshot_as_png) > 5
    assert severe(browser) == []
    open_page(browser, site["out"] / "index.html")
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#tuning-number svg")))
    assert browser.find_elements(By.CSS_SELECTOR, "#tuning-number g.trace.scatter")


def test_screenshot_is_not_blank(site, browser, tmp_path):
    open_page(browser, site["out"] / "index.html")
    png = browser.get_screenshot_as_png()
    (tmp_path / "board.png").write_bytes(png)
    assert pixel_std(png) > 10
    page = sorted(os.listdir(site["out"] / "configs"))[0]
    open_page(browser, site["out"] / "configs" / page)
    assert pixel_std(browser.get_screenshot_as_png()) > 10
