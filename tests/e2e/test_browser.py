"""The backups page in a real browser: `streamlit run` of the app in
tests/e2e/page_app.py (the one-liner of docs/DEPLOYMENT.md with a
``st.cache_resource`` connection), driven by Selenium in Debian's headless
Chromium, against the real daemon."""

import datetime
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


def page_helpers(browser):
    """A wait that looks again when Streamlit re-renders (an element found a
    moment ago can be gone: stale), and the two steps every page test takes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))

    def text_appears(t):
        return wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(normalize-space(.), {t!r}) and not(*[contains(normalize-space(.), {t!r})])]")))

    def click_button(label):
        wait.until(ec.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)={label!r}]"))).click()

    return wait, text_appears, click_button


def test_restore_from_the_page_in_a_browser(daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

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
        wait, text_appears, click_button = page_helpers(browser)
        browser.get(url)

        text_appears("orders in the database: 1000")
        click_button("Back up now")
        text_appears("created (")
        click_button("Delete customer 7")
        text_appears("orders in the database: 980")
        shot = lambda name: browser.save_screenshot(str(tmp_path / f"{name}.png"))  # noqa: E731
        # Both pickers preselect the newest pre-delete, with local time and age.
        today = datetime.datetime.now().astimezone().strftime("%Y-%m-%d")
        pickers = "//input[@role='combobox' and contains(@value, 'pre-delete · delete customer 7 · ')]"
        wait.until(lambda d: len(d.find_elements(By.XPATH, pickers)) == 2)
        for p in browser.find_elements(By.XPATH, pickers):
            value = p.get_attribute("value")
            assert value.startswith(today) and ("(just now)" in value or " ago)" in value), value
        # Every column of the snapshots table is inside the centered layout.
        headers = ["taken", "age", "reason", "label", "size", "new", "pinned", "verified", "id"]
        fits = browser.execute_script(
            """const t = document.querySelector('[data-testid="stTable"] table');
               const box = t.closest('[data-testid="stTable"]').getBoundingClientRect();
               const ths = [...t.querySelectorAll('thead th')];
               return {names: ths.map(h => h.innerText.trim()).filter(n => n),
                       inside: ths.every(h => h.getBoundingClientRect().right <= box.right + 1),
                       scroll: t.closest('[data-testid="stTable"]').scrollWidth - box.width};"""
        )
        shot("snapshots-table")
        assert fits["names"] == headers and fits["inside"] and fits["scroll"] <= 1, fits
        # Changes since the pre-delete snapshot: the tables, then the rows.
        click_button("Show changes since this snapshot")
        text_appears("Removed rows: 1")  # customers, the first changed table
        text_appears("customer 7")
        browser.find_element(By.XPATH, "//input[@role='combobox' and @value='customers']").click()
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@role='option' and normalize-space(.)='orders']"))).click()
        text_appears("Removed rows: 20")
        text_appears("Added rows: 0")
        shot("removed-rows")
        # Restore: the confirmation covers one snapshot once.
        confirm = "//label[.//*[contains(text(), 'I understand')]]"
        box = "//label[.//*[contains(text(), 'I understand')]]//input[@type='checkbox']"
        browser.find_element(By.XPATH, confirm).click()
        wait.until(lambda d: d.find_element(By.XPATH, box).is_selected())
        click_button("Restore")
        text_appears("Restored the snapshot of")
        text_appears("orders in the database: 1000")
        text_appears("footer: rendered after the backups page")
        assert "in_use" not in browser.page_source
        shot("after-restore")
        wait.until(lambda d: not d.find_element(By.XPATH, box).is_selected())
        restore_button = "//button[normalize-space(.)='Restore']"
        assert not browser.find_element(By.XPATH, restore_button).is_enabled(), "Restore is disabled until confirmed again"
        # Ticked, then another snapshot picked: the tick is gone.
        browser.find_element(By.XPATH, confirm).click()
        wait.until(lambda d: d.find_element(By.XPATH, box).is_selected())
        wait.until(lambda d: d.find_element(By.XPATH, restore_button).is_enabled())
        restore_picker = browser.find_elements(By.XPATH, "//input[@role='combobox']")[-1]
        restore_picker.click()
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@role='option' and contains(., '· manual · ')]"))).click()
        wait.until(lambda d: not d.find_element(By.XPATH, box).is_selected())
        wait.until(lambda d: not d.find_element(By.XPATH, restore_button).is_enabled())
        shot("new-selection")
        # The list is refreshed: the pre-restore snapshot is offered now.
        restore_picker = browser.find_elements(By.XPATH, "//input[@role='combobox']")[-1]
        restore_picker.click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[@role='option' and contains(., 'pre-restore')]")))
        print(f"screenshots in {tmp_path}")
    finally:
        proc.terminate()
        proc.wait(30)
    con = duckdb.connect(str(daemon.db), read_only=True)
    assert app.counts(con, 7) == (1, 20), "the deleted rows are back in the file"
    con.close()
    listed = [s["reason"] for s in __import__("ducksnap").Client(socket_path=str(daemon.socket), env={}).list_snapshots()]
    assert "pre-delete" in listed and "manual" in listed, listed


def test_daemon_down_in_a_browser(browser, tmp_path):
    """The set-up `ducksnap init --systemd` writes, with the daemon stopped:
    the page names the project's socket and unit, once; the app's delete is
    refused with a message, not a traceback, and nothing is deleted."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    from conftest import ducksnap_bin

    project = tmp_path / "myapp"
    (project / "data").mkdir(parents=True)
    db = project / "data" / "app.duckdb"
    con = duckdb.connect(str(db))
    app.create_schema(con)
    con.close()
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    init = subprocess.run([ducksnap_bin(), "init", "--systemd"], cwd=str(project), env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    sock = runtime / "ducksnap" / "myapp.sock"
    assert f'path = "{sock}"' in (project / "ducksnap.toml").read_text()
    assert (tmp_path / ".config" / "systemd" / "user" / "ducksnap-myapp.service").exists()
    proc, url = start_streamlit(project, dict(env, APP_DB=str(db)))
    try:
        # Streamlit re-renders while a condition is being read: an element
        # found a moment ago can be gone (stale); the wait then looks again.
        wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
        browser.get(url)
        advice = f"no ducksnap daemon answers on {sock} (start it: systemctl --user start ducksnap-myapp.service)"
        wait.until(lambda d: advice in d.find_element(By.TAG_NAME, "body").text)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert body.count("systemctl") == 1, body
        assert "/tmp/ducksnap-" not in body and "start ducksnap)" not in body, body
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Delete customer 7']"))).click()
        wait.until(lambda d: "Customer 7 was not deleted: no ducksnap daemon answers on" in d.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(tmp_path / "daemon-down.png"))
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), "a traceback is shown"
        assert "Traceback" not in browser.page_source
        assert "orders in the database: 1000" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        proc.terminate()
        proc.wait(30)
    con = duckdb.connect(str(db), read_only=True)
    assert app.counts(con, 7) == (1, 20), "nothing was deleted without a snapshot"
    con.close()


def test_the_database_at_a_time_from_the_page_in_a_browser(browser, tmp_path):
    """With continuous protection on, the page takes a time, not only a
    snapshot: the changes since then name exactly the rows the later delete
    removed, and restoring to that time brings them back."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    from conftest import Daemon

    db = tmp_path / "data" / "app.duckdb"
    db.parent.mkdir()
    con = duckdb.connect(str(db))
    app.create_schema(con)
    con.close()
    d = Daemon(tmp_path, config_extra="[continuous]\nenabled = true\n")
    assert d.cli("snapshot").returncode == 0
    # A commit after that snapshot, archived as the app makes it.
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO customers VALUES (1000, 'late')")
    # The time the user will type: customer 1000 and every order are there
    # then; the delete comes after it.
    time.sleep(1.5)
    at = datetime.datetime.now().astimezone()
    time.sleep(1.2)
    con.close()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "APP_DB": str(d.db), "DUCKSNAP_SOCKET": str(d.socket)}
    proc, url = start_streamlit(tmp_path, env)
    try:
        wait, text_appears, click_button = page_helpers(browser)
        browser.get(url)

        text_appears("orders in the database: 1000")
        click_button("Delete customer 7")
        text_appears("orders in the database: 980")
        text_appears("The database at a time")
        clock = wait.until(ec.presence_of_element_located((By.XPATH, "//input[@aria-label=\"Time (HH:MM:SS, this machine's time zone)\"]")))
        clock.send_keys(Keys.CONTROL, "a")
        clock.send_keys(at.strftime("%H:%M:%S"), Keys.ENTER)
        shown_at = at.strftime("%Y-%m-%d %H:%M:%S")
        # The confirmation names the time once the page took it.
        box = f"//label[contains(normalize-space(.), 'as of {shown_at}')]"
        wait.until(ec.presence_of_element_located((By.XPATH, box)))
        click_button("Show changes since then")
        text_appears(f"As of {shown_at}:")
        text_appears("Removed rows: 1")  # customers, the first changed table
        pickers = browser.find_elements(By.XPATH, "//input[@role='combobox' and @value='customers']")
        pickers[-1].click()
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[@role='option' and normalize-space(.)='orders']"))).click()
        text_appears("Removed rows: 20")
        browser.save_screenshot(str(tmp_path / "at-a-time-changes.png"))
        browser.find_element(By.XPATH, box).click()
        wait.until(lambda dr: dr.find_element(By.XPATH, box + "//input[@type='checkbox']").is_selected())
        click_button("Restore to that time")
        text_appears("orders in the database: 1000")
        browser.save_screenshot(str(tmp_path / "at-a-time-restored.png"))
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), "a traceback is shown"
        print(f"screenshots in {tmp_path}")
    finally:
        proc.terminate()
        proc.wait(30)
        d.stop()
    con = duckdb.connect(str(d.db), read_only=True)
    assert app.counts(con, 7) == (1, 20), "the deleted rows are back in the file"
    late = con.execute("SELECT count(*) FROM customers WHERE id = 1000").fetchone()[0]
    assert late == 1, "the commit made after the last snapshot before that time is there too"
    con.close()
