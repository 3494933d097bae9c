"""``GET /healthz``: whether this process reaches its database and Redis."""

import redis
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from microblog.extensions import db
from microblog.stream import open_streams

bp = Blueprint("health", __name__)


def check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as error:
        db.session.rollback()
        return f"error: {type(error).__name__}"


def check_redis() -> str:
    try:
        client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=2)
        client.ping()
        return "ok"
    except redis.RedisError as error:
        return f"error: {type(error).__name__}"


@bp.route("/healthz")
def healthz():
    checks = {"database": check_database(), "redis": check_redis()}
    healthy = all(value == "ok" for value in checks.values())
    status = "ok" if healthy else "degraded"
    return jsonify(status=status, streams=open_streams(), **checks), 200 if healthy else 503
