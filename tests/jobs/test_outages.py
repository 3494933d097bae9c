"""Jobs through a database outage: a real `dramatiq tasks` process exports while PostgreSQL is
shut down "fast" for a while, then started again. The export must end succeeded with one email,
the card must have said what it waited for meanwhile, and the worker's log must hold no
traceback. (The mail relay's outage is in ``tests/mail/test_relay_outage.py``.)
"""

import time

import pytest

from devkit.services import wait_until
from tests.support.databases import migrate
from tests.support.sites import assert_no_traceback, waiting_for

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

POSTS = 60_000  # several seconds of reading: the outage lands mid-export


@pytest.mark.parametrize("outage_seconds", [20, 90])
def test_an_export_waits_out_a_database_outage_and_succeeds_once(
    own_postgres, site_on, recorded_events, mailbox, outage_seconds
):
    # Given an export under way on a database of its own
    own_postgres.execute("CREATE DATABASE outage")
    url = own_postgres.url("outage")
    migrate(url)
    site = site_on(url)
    task_id = site.export(POSTS)
    wait_until(lambda: site.progress(task_id) > 0, 60, "the export to be under way")
    # When PostgreSQL shuts down ("fast") for a while, then comes back
    own_postgres.halt()
    waiting = waiting_for(recorded_events, task_id, "The database is unavailable.", 30)
    time.sleep(outage_seconds)  # the outage itself, not a wait for something to happen
    own_postgres.start()
    # Then the card said what it waited for, and the export ends succeeded with one email
    assert waiting.data["status"] == "running" and waiting.data["max_attempts"] == 13
    finished = recorded_events.finished(task_id, timeout=240)
    assert finished.data["status"] == "succeeded", finished.data
    assert finished.data["done"] == POSTS
    assert len(mailbox) == 1
    assert_no_traceback(site)
