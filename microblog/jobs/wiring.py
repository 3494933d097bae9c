"""Wiring: the app's broker, with every piece of middleware, bound to the app's job types.

This is the one module that knows all the worker side's parts; ``create_app`` calls
:func:`init_app` for every entry point (the web processes, ``dramatiq tasks``, the CLI, tests).
"""

import dramatiq
from dramatiq.middleware import CurrentMessage
from flask import Flask

from microblog.jobs import registry
from microblog.jobs.worker.broker import AppContext, Broker, HandBack, TaskMessageIds
from microblog.jobs.worker.liveness import Maintenance
from microblog.jobs.worker.reaper import Reaper
from microblog.jobs.worker.runner import UnknownJobTypes
from microblog.redis_clients import broker_client


def make_broker(app: Flask) -> Broker:
    """Build the Redis broker from the app's configuration."""
    # Every broker call is a short script: ten seconds without an answer is a dead link.
    client = broker_client(app.config, socket_timeout=10, socket_connect_timeout=5)
    broker = Broker(client=client, heartbeat_timeout=app.config["JOBS_HEARTBEAT_TIMEOUT_MS"])
    broker.add_middleware(TaskMessageIds())
    broker.add_middleware(Maintenance(app.config["JOBS_MAINTENANCE_INTERVAL_MS"]))
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(AppContext(app))
    broker.add_middleware(HandBack())
    return broker


def init_app(app: Flask) -> Broker:
    """Make the app's broker this process's broker; bind the app's job types and every
    errand to it."""
    broker = make_broker(app)
    broker.add_middleware(Reaper(app))
    broker.add_middleware(UnknownJobTypes(app))
    dramatiq.set_broker(broker)
    actors = [job_type.actor for job_type in registry.load(app).values()]
    for actor in actors + registry.errands():
        actor.broker = broker
        broker.declare_actor(actor)
    app.extensions["dramatiq"] = broker
    return broker
