"""The browser tests' fixtures: pages on the live gunicorn, a worker beside it."""

import pytest

from tests.support.browser import watch_csp
from tests.support.servers import running_worker


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
