"""The playground page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via selenium).

Generates 4 samples of 8 bars from the shipped model and checks what a musician sees: piano
rolls, sheet music and playable audio; no console error; no request leaving 127.0.0.1. The
screenshot goes to ``$MELODYLM_SCREENSHOT`` when set (``docs/playground.png`` for the README).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and DRIVER.is_file()):
    pytest.skip("no /usr/bin/chromium or /usr/bin/chromedriver: `make browser` (apt-get install -y chromium "
                "chromium-driver) installs them", allow_module_level=True)
pytest.importorskip("selenium", reason="the browser test drives chromium with selenium (extra 'test')")
pytest.importorskip("fastapi", reason="the playground needs its extra: pip install 'melodylm[serve]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from test_serve_server import SHIPPED, served  # noqa: E402

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model checkpoints/pretrained/model.pt is missing")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1400,1100",
         "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for, from Chrome's DevTools network events."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.mark.slow
def test_page_generates_shows_and_plays_offline(browser, tmp_path):
    out = tmp_path / "served"
    out.mkdir()
    with served(out) as base:
        browser.get(base + "/")
        wait = WebDriverWait(browser, 300, poll_frequency=0.05)
        wait.until(lambda d: Select(d.find_element(By.ID, "checkpoint")).options)
        assert Select(browser.find_element(By.ID, "checkpoint")).first_selected_option.get_attribute("value") == "pretrained"
        # the shipped model was trained with controls and infilling: the steering is on; ask for a key
        wait.until(lambda d: len(Select(d.find_element(By.ID, "key")).options) > 1)
        for kind in ("key", "meter", "style"):  # (fill waits for a prompt to fill)
            assert browser.find_element(By.ID, kind).is_enabled(), kind
        assert browser.find_element(By.ID, "controls-reason").get_attribute("hidden") is not None
        assert browser.find_element(By.ID, "fill-reason").text.startswith("fill rewrites bars of a prompt")
        Select(browser.find_element(By.ID, "key")).select_by_visible_text("D major")
        for field, value in (("n", "4"), ("max_bars", "8"), ("seed", "3")):
            el = browser.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        t0 = time.perf_counter()
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".sample .roll svg")) == 4)
        t_roll = time.perf_counter() - t0
        wait.until(lambda d: d.execute_script(
            "const a = document.querySelector('.sample audio'); return a && a.src && a.readyState >= 3 && a.duration > 0"))
        t_audio = time.perf_counter() - t0
        wait.until(lambda d: d.find_element(By.ID, "progress").get_attribute("hidden") is not None)
        file_errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".file-error") if e.is_displayed()]
        assert file_errors == [], file_errors
        wait.until(lambda d: d.execute_script(
            "const i = [...document.querySelectorAll('.sample .score img')];"
            "return i.length === 4 && i.every(x => x.complete && x.naturalWidth > 0)"))
        print(f"\nGenerate -> piano rolls {t_roll:.2f} s, -> first playable audio {t_audio:.2f} s "
              f"(4 samples x 8 bars, shipped model)")

        assert browser.find_elements(By.CSS_SELECTOR, ".sample .roll svg rect.note")
        assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
        assert "pretrained/model.pt" in browser.find_element(By.ID, "signature").text
        browser.find_element(By.CSS_SELECTOR, ".sample .play").click()
        wait.until(lambda d: d.execute_script("const a = document.querySelector('.sample audio');"
                                              "return !a.paused && a.currentTime > 0"))
        browser.find_element(By.CSS_SELECTOR, ".sample .stop").click()
        assert browser.execute_script("const a = document.querySelector('.sample audio'); return a.paused && a.currentTime === 0")
        for cls in ("dl-midi", "dl-wav", "dl-xml"):
            link = browser.find_element(By.CSS_SELECTOR, f".sample .{cls}")
            assert link.is_displayed() and link.get_attribute("href").startswith(base + "/files/")

        shot = tmp_path / "playground.png"
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("MELODYLM_SCREENSHOT"):
            shutil.copy(shot, os.environ["MELODYLM_SCREENSHOT"])

        # the idea-generator loop: a sample becomes the next prompt
        for field, value in (("n", "1"), ("max_bars", "2")):
            el = browser.find_element(By.ID, field)
            el.clear()
            el.send_keys(value)
        browser.find_element(By.CSS_SELECTOR, ".sample .continue").click()
        wait.until(lambda d: "prompt sample_1.mid" in d.find_element(By.ID, "signature").text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".sample")) == 1)
        assert browser.find_elements(By.CSS_SELECTOR, ".sample .roll svg rect.note.prompt")
        assert browser.find_elements(By.CSS_SELECTOR, ".sample .roll svg rect.note.continuation")

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        urls = requested_urls(browser)
        assert any(u.endswith(".wav") for u in urls)
        # chrome:// and data: URLs are the browser's own pages and inline data, never the network
        outside = [u for u in urls if urlparse(u).scheme not in ("chrome", "data", "about", "blob")
                   and urlparse(u).hostname != "127.0.0.1"]
        assert outside == [], outside
