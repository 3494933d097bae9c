"""An export waits out a minute without its mail relay: a real `dramatiq tasks` process reaches
the relay's closed port when the email is due, retries, and delivers one email once it is back,
the card having said what it waited for, and no traceback in the worker's log."""

import time

import pytest

from devkit.pytest_plugin import EventRecorder
from devkit.services import MailCatcher, free_port
from tests.support.databases import KINDS
from tests.support.sites import assert_no_traceback, waiting_for

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long


def test_an_export_waits_out_a_minute_without_its_mail_relay(
    databases, redis_instance, site_on, tmp_path
):
    # Given a relay that is down when the export's email is due: on each kind of database at
    # once (a site each, with a Redis database of its own), so that one minute serves both
    relay_port = free_port()
    sites, recorders, tasks = {}, {}, {}
    try:
        for kind in KINDS:
            redis_url = redis_instance.fresh_database().url
            recorders[kind] = EventRecorder(redis_url)
            sites[kind] = site_on(databases.migrated(kind, tmp_path), relay_port, redis_url)
            tasks[kind] = sites[kind].export(10)
        waiting = {kind: waiting_for(recorders[kind], tasks[kind],
                                     "The mail server is unreachable.", 60)
                   for kind in KINDS}  # fmt: skip
        # When it comes back a minute later
        time.sleep(60)  # the outage itself, not a wait for something to happen
        relay = MailCatcher(port=relay_port).start()
        try:
            # Then each export ends succeeded with its one email
            for kind in KINDS:
                finished = recorders[kind].finished(tasks[kind], timeout=240)
                assert finished.data["status"] == "succeeded", (kind, finished.data)
            assert len(relay.messages) == len(KINDS)
        finally:
            relay.stop()
        for kind in KINDS:
            assert waiting[kind].data["status"] == "running"
            assert_no_traceback(sites[kind])
    finally:
        for recorder in recorders.values():
            recorder.close()
        for site in sites.values():
            site.close()  # before its database goes
            databases.drop(site.config["SQLALCHEMY_DATABASE_URI"])
