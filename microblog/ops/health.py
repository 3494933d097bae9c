"""Health: ``GET /healthz`` and ``flask check`` (this process reaches its database and Redis),
and ``GET /readyz`` (the whole service can do its work: also the mail relay and a worker)."""

import smtplib
from collections.abc import Callable

import click
import redis
from flask import Blueprint, current_app, jsonify
from flask.cli import with_appcontext
from flask_login import current_user
from redis.cluster import RedisCluster
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from microblog.database import discard_session
from microblog.extensions import db
from microblog.jobs.worker.liveness import live_workers
from microblog.live.channel import redis_client
from microblog.live.stream import open_streams, subscription_state
from microblog.mailer import open_relay
from microblog.ops.prometheus import has_metrics_token
from microblog.redis_clients import broker_client, events_on_cluster

bp = Blueprint("health", __name__)


def check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as error:
        db.session.rollback()
        return f"error: {type(error).__name__}"


def check_redis(ping: Callable[[], object]) -> str:
    try:
        ping()
        return "ok"
    except redis.RedisError as error:
        return f"error: {type(error).__name__}"


def ping_broker() -> None:
    client = broker_client(current_app.config, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def ping_events() -> None:
    """Ping the events' Redis (each master, on a cluster) through the process's shared client:
    a load balancer's polls open no connections of their own."""
    client = redis_client()
    if isinstance(client, RedisCluster):
        client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.ping()


def run_checks() -> tuple[bool, dict[str, str]]:
    """Return whether every dependency answers, and what each check found."""
    checks = {"database": check_database(), "redis": check_redis(ping_broker)}
    if events_on_cluster(current_app.config) or current_app.config["EVENTS_REDIS_URL"]:
        checks["events_redis"] = check_redis(ping_events)
    return all(value == "ok" for value in checks.values()), checks


@bp.route("/healthz")
def healthz():
    healthy, checks = run_checks()
    # A stopped subscription would leave every open stream with heartbeats only.
    subscription = subscription_state()
    healthy = healthy and subscription != "stopped"
    status = "ok" if healthy else "degraded"
    return jsonify(
        status=status, streams=open_streams(), subscription=subscription, **checks
    ), 200 if healthy else 503


READY_TIMEOUT = 3  # seconds for the mail relay to answer a readiness check


def check_mail() -> str:
    try:
        relay = open_relay(timeout=READY_TIMEOUT)
        try:
            relay.noop()
        finally:
            relay.close()
        return "ok"
    except (smtplib.SMTPException, OSError) as error:
        # Say which relay and why: "Connection refused", "timed out", an SMTP reply.
        config = current_app.config
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return f"error: {config['MAIL_SERVER']}:{config['MAIL_PORT']}: {reason}"


@bp.route("/readyz")
def readyz():
    """Deep check for monitors and deploys: database, Redis, mail relay, a live worker.

    Anyone learns whether each dependency answers ("ok" or "error"); only operators (the
    metrics token, or a signed-in admin) learn why, with the relay's host and port.
    """
    healthy, checks = run_checks()
    checks["mail"] = check_mail()
    try:
        workers = len(live_workers(current_app.extensions["dramatiq"]))
    except redis.RedisError:
        workers = 0
    ready = healthy and checks["mail"] == "ok" and workers > 0
    if not for_operators():
        checks = {name: "ok" if found == "ok" else "error" for name, found in checks.items()}
    return jsonify(status="ok" if ready else "degraded", workers=workers, **checks), (
        200 if ready else 503
    )


def for_operators() -> bool:
    """Tell whether the request comes from an operator: the scraper's token or an admin."""
    if has_metrics_token():
        return True
    try:
        return bool(current_user.is_authenticated and current_user.is_admin)
    except SQLAlchemyError:  # the database is away: its check already says so
        discard_session()
        return False


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Exit non-zero unless the database and Redis answer (a worker container's healthcheck)."""
    healthy, checks = run_checks()
    for name, result in checks.items():
        click.echo(f"{name}: {result}")
    if not healthy:
        raise SystemExit(1)
