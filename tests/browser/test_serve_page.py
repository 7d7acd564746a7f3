"""The ``s2s serve`` page in headless Chromium: type a text, submit, see the prediction.

Chromium is Debian's ``chromium`` (or ``S2S_CHROMIUM``), started here with a DevTools port;
Playwright's Python package drives it over CDP (no browser download). Runs in the nox session
``browser``; skips, saying why, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from s2s import Tokenizer, load_model, seed_everything

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
CHROMIUM = os.environ.get("S2S_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium (apt-get install chromium, or set S2S_CHROMIUM)", allow_module_level=True)

LABELS = ["体育", "娱乐", "科技", "财经"]


def start(command, marker: str, timeout: float = 180):
    """Start ``command``; return the process and its stderr up to the line containing ``marker``."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, lines = [], []

    def read():
        for line in process.stderr:
            lines.append(line)
            if marker in line and not found:
                found.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    if not found:
        process.kill()
        raise AssertionError(f"{command[0]} did not print {marker!r}:\n{''.join(lines)[-3000:]}")
    return process, "".join(lines)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page") / "cls"
    seed_everything(0)
    tokenizer = Tokenizer.build_vocab(["国足晋级世界杯", *LABELS], min_frequency=1)
    model = load_model(tokenizer, "bert", "classification", size="tiny", labels=LABELS)
    model.save_pretrained(folder)
    command = [sys.executable, "-m", "s2s", "serve", str(folder), "--port", "0"]
    process, log = start(command, "Application startup complete")
    url = re.search(r"http://127\.0\.0\.1:\d+", log).group(0)
    yield url, model.predict(["国足晋级世界杯"])[0]
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="s2s-chromium-")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
               f"--user-data-dir={profile}", "about:blank"]
    try:
        process, log = start(command, "DevTools listening on", timeout=60)
    except (AssertionError, OSError) as exc:
        pytest.skip(f"Chromium ({CHROMIUM}) does not start headless here: {exc}")
    endpoint = re.search(r"DevTools listening on (\S+)", log).group(1)
    with sync_api.sync_playwright() as playwright:
        yield playwright.chromium.connect_over_cdp(endpoint)
    process.terminate()
    process.wait(timeout=15)
    shutil.rmtree(profile, ignore_errors=True)


def test_type_submit_and_see_the_prediction(server, browser):
    url, expected = server
    page = browser.contexts[0].new_page() if browser.contexts else browser.new_page()
    page.goto(url + "/")
    page.fill("#inputs", "国足晋级世界杯")
    page.click("#submit")
    page.wait_for_selector("#outputs[data-done=true]", timeout=30_000)
    shown = page.inner_text("#outputs")
    assert shown.startswith("国足晋级世界杯") and f'"{expected}"' in shown



@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page") / "chat"
    seed_everything(0)
    tokenizer = Tokenizer.build_vocab(["国足晋级世界杯", "今天天气很好", "股市今天大涨"], min_frequency=1)
    model = load_model(tokenizer, "gpt2", "chat", size="tiny")
    import torch

    with torch.no_grad():  # wider than the init, so the random model's greedy replies vary
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.5)
    model.save_pretrained(folder)
    command = [sys.executable, "-m", "s2s", "serve", str(folder), "--port", "0"]
    process, log = start(command, "Application startup complete")
    url = re.search(r"http://127\.0\.0\.1:\d+", log).group(0)
    yield url, load_model(checkpoint=folder)
    process.terminate()
    process.wait(timeout=15)


def test_chat_page_streams_replies_and_keeps_the_conversation(chat_server, browser):
    url, model = chat_server
    page = browser.contexts[0].new_page() if browser.contexts else browser.new_page()
    page.goto(url + "/")
    history = []
    for turn, text in enumerate(["今天天气很好", "股市今天大涨"]):
        page.fill("#message", text)
        page.click("#send")
        page.wait_for_selector(f".assistant >> nth={turn}", timeout=30_000)
        page.wait_for_function(f"document.querySelectorAll('.assistant')[{turn}].dataset.done === 'true'",
                               timeout=60_000)
        history.append(text)
        shown = page.locator(".assistant").nth(turn).inner_text()
        assert shown == model.reply([history], 64)[0]  # the page's history: every turn so far
        history.append(shown)
