"""The backups page in a real browser: `streamlit run` of the app in
tests/e2e/page_app.py (the one-liner of docs/DEPLOYMENT.md with a
``st.cache_resource`` connection), driven by Selenium in Debian's headless
Chromium, against the real daemon."""

import os
import pathlib
import shutil
import socket
import subprocess
import sys

import duckdb
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import app  # noqa: E402

HERE = pathlib.Path(__file__).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"Chromium or ChromeDriver missing ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,2400",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def start_streamlit(tmp, env):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(HERE / "page_app.py"),
         "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        env=env, cwd=str(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # Streamlit prints its URL once it listens: wait for that line.
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if f":{port}" in line:
            return proc, f"http://127.0.0.1:{port}/"
    raise AssertionError("streamlit did not start:\n" + "".join(seen))


def test_restore_from_the_page_in_a_browser(daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    con = duckdb.connect(str(daemon.db))
    app.create_schema(con)
    con.close()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "APP_DB": str(daemon.db),
        "DUCKSNAP_SOCKET": str(daemon.socket),
        # The signal that used to switch snapshots off on a developer machine.
        "STREAMLIT_SERVER_HEADLESS": "true",
    }
    proc, url = start_streamlit(tmp_path, env)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(url)

        def text_appears(t):
            return wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(normalize-space(.), {t!r}) and not(*[contains(normalize-space(.), {t!r})])]")))

        def click_button(label):
            wait.until(ec.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)={label!r}]"))).click()

        text_appears("orders in the database: 1000")
        click_button("Back up now")
        text_appears("created (")
        click_button("Delete customer 7")
        text_appears("orders in the database: 980")
        # The picker shows time, reason and label, the newest pre-delete first.
        picker = "//input[@role='combobox' and contains(@value, 'pre-delete · delete customer 7 · ')]"
        wait.until(ec.presence_of_element_located((By.XPATH, picker)))
        browser.find_element(By.XPATH, "//label[.//*[contains(text(), 'I understand')]]").click()
        click_button("Restore")
        text_appears("Restored the snapshot of")
        text_appears("orders in the database: 1000")
        text_appears("footer: rendered after the backups page")
        assert "in_use" not in browser.page_source
        # The list is refreshed: the pre-restore snapshot is offered now.
        browser.find_element(By.XPATH, "//input[@role='combobox']").click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[@role='option' and contains(., 'pre-restore')]")))
    finally:
        proc.terminate()
        proc.wait(30)
    con = duckdb.connect(str(daemon.db), read_only=True)
    assert app.counts(con, 7) == (1, 20), "the deleted rows are back in the file"
    con.close()
    listed = [s["reason"] for s in __import__("ducksnap").Client(socket_path=str(daemon.socket), env={}).list_snapshots()]
    assert "pre-delete" in listed and "manual" in listed, listed
