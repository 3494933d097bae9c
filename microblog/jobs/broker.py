"""Dramatiq glue: one Redis broker per process, and each message in a fresh app context.

Dramatiq binds an actor to a broker when the actor is declared, at import time, but our broker
needs the app's configuration. Actors are therefore declared on a placeholder broker and
re-declared on the real one by :func:`init_app`, which every entry point reaches through
``create_app`` before a worker starts consuming.
"""

import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware
from flask import Flask

from microblog.extensions import db

_placeholder = StubBroker()
_placeholder.add_middleware(CurrentMessage())
_actors: dict[str, dramatiq.Actor] = {}


def declare(actor: dramatiq.Actor) -> dramatiq.Actor:
    """Remember ``actor`` so that :func:`init_app` binds it to the app's broker."""
    _actors[actor.actor_name] = actor
    return actor


def placeholder_broker() -> dramatiq.Broker:
    return _placeholder


def actor_named(name: str) -> dramatiq.Actor:
    return _actors[name]


def queue_of(name: str) -> str:
    """Return the queue of a job type; a type no longer declared used the default queue."""
    actor = _actors.get(name)
    return actor.queue_name if actor is not None else "default"


class AppContext(Middleware):
    """Run each message inside its own app context, so it gets its own database session."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        context = self.app.app_context()
        context.push()
        self._local.context = context

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        context = getattr(self._local, "context", None)
        if context is not None:
            self._local.context = None
            db.session.remove()
            context.pop()

    after_skip_message = after_process_message


def make_broker(app: Flask) -> RedisBroker:
    """Build the Redis broker from the app's configuration."""
    broker = RedisBroker(
        url=app.config["REDIS_URL"],
        heartbeat_timeout=app.config["JOBS_HEARTBEAT_TIMEOUT_MS"],
        maintenance_chance=app.config["JOBS_MAINTENANCE_CHANCE"],
    )
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(AppContext(app))
    return broker


def init_app(app: Flask) -> RedisBroker:
    """Make the app's broker this process's broker and bind every declared actor to it."""
    from microblog.jobs.reaper import Reaper

    broker = make_broker(app)
    broker.add_middleware(Reaper(app))
    dramatiq.set_broker(broker)
    for actor in _actors.values():
        actor.broker = broker
        broker.declare_actor(actor)
    app.extensions["dramatiq"] = broker
    return broker
