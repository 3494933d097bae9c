"""Driving a real browser (Debian's chromium, through Playwright) in the tests."""

import shutil
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.web import PASSWORD

ARTIFACTS = ROOT / "test-artifacts"
# Chromium's options for a machine with no network but loopback, and no screen.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: apt-get install chromium (the test command does)")


def watch_csp(page):
    """Collect in ``page.refused_by_csp`` what the Content-Security-Policy refuses."""
    page.refused_by_csp = []
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and page.refused_by_csp.append(message.text)
        ),
    )
    return page


def sign_in(page, username: str) -> None:
    page.goto("/auth/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def watch_task_bar(page) -> None:
    """Keep in ``window.seenValues`` every value the first task card's bar shows from now."""
    page.evaluate("""() => {
        window.seenValues = [];
        new MutationObserver(() => {
            const bar = document.querySelector('#tasks .progress');
            if (bar) window.seenValues.push(Number(bar.getAttribute('aria-valuenow')));
        }).observe(document.getElementById('tasks'),
                   {subtree: true, childList: true, attributes: true});
    }""")


def bar_value(page) -> int:
    return int(page.locator("#tasks .progress").first.get_attribute("aria-valuenow"))
