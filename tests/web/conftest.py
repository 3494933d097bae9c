"""The browser tests' fixtures: one chromium per module, pages on the live gunicorn."""

import pytest

from tests.support.browser import CHROMIUM_ARGS, chromium_path, watch_csp
from tests.support.servers import running_worker


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()


@pytest.fixture
def worker_process(live_env, tmp_path):
    with running_worker(live_env, tmp_path / "worker.log") as process:
        yield process


@pytest.fixture
def page(browser, gunicorn_server):
    context = browser.new_context(base_url=gunicorn_server)
    page = watch_csp(context.new_page())
    yield page
    context.close()
