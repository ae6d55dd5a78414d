"""End to end: the API and the Streamlit UI as real processes on loopback (fake backend,
sample corpus), driven in headless Debian Chromium through Selenium. Asks a question, sees
a cited answer, opens the citation (the quoted span is highlighted) and saves a screenshot
(docs/screenshot-ask.png when RAG_SCREENSHOT_DIR=docs).

Needs Debian's `chromium` and `chromium-driver` packages and `selenium` from PyPI; skips
with the reason when any is missing. Selenium is given the driver's path, so its own
driver download (which fails offline) never runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, SAMPLE

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ADMIN = "e2e-admin-key"
QUESTION = "Who designed the Harbor Point Lighthouse?"

pytestmark = [
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"),
    pytest.mark.timeout(240),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not come up in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def stack(tmp_path):
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "var"), "RAG_BACKEND": "fake", "RAG_ADMIN_KEY": ADMIN,
           "RAG_THREADS": "1", "OMP_NUM_THREADS": "1"}
    rag = [sys.executable, "-m", "rag.cli"]
    subprocess.run([*rag, "ingest", str(SAMPLE), "--json"], env=env, check=True, capture_output=True, timeout=120)
    api_port, ui_port = free_port(), free_port()
    procs = []
    try:
        api_log, ui_log = tmp_path / "api.log", tmp_path / "ui.log"
        procs.append(subprocess.Popen([*rag, "serve", "--port", str(api_port)], env=env,
                                      stdout=open(api_log, "w"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([*rag, "ui", "--port", str(ui_port), "--api", f"http://127.0.0.1:{api_port}"],
                                      env=env, stdout=open(ui_log, "w"), stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{api_port}/healthz", procs[0], api_log)
        wait_http(f"http://127.0.0.1:{ui_port}/_stcore/health", procs[1], ui_log)
        yield f"http://127.0.0.1:{ui_port}/"
    finally:
        for p in procs:  # terminate what we started, by handle
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1300"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def test_ask_page_shows_cited_answer(stack, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90)
    browser.get(stack)
    box = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Question"]')))
    box.send_keys(QUESTION)
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Ask").click()

    answer = wait.until(EC.presence_of_element_located((By.ID, "answer-text")))
    assert "1874" in answer.text and "[1]" in answer.text
    cite = wait.until(EC.element_to_be_clickable((By.XPATH, '//summary[contains(., "[1]") and contains(., "lighthouse.txt")]')))
    cite.click()
    mark = wait.until(EC.visibility_of_element_located((By.TAG_NAME, "mark")))
    assert "1874" in mark.text
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Latency" in page and "retrieve" in page
    time.sleep(0.5)  # let the expander finish its animation before the picture
    # RAG_SCREENSHOT_DIR=docs refreshes the picture in the docs; by default it stays out of the tree
    out = Path(os.environ.get("RAG_SCREENSHOT_DIR", tmp_path)) / "screenshot-ask.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    assert browser.save_screenshot(str(tmp))
    shutil.move(tmp, out)
    assert out.stat().st_size > 10_000
