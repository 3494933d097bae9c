"""The application factory: the one place that puts the site together from its packages."""

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

# Alembic announces each of its plugins at INFO when it is imported (by Flask-Migrate, below),
# which would open every worker's log with a dozen lines of noise.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from microblog import (  # noqa: E402
    alerts,
    config,
    errors,
    i18n,
    mailer,
    scrub,
    security,
    throttle,
    urls,
    wire,
)
from microblog.extensions import (  # noqa: E402
    bootstrap,
    csrf,
    db,
    login_manager,
    mail,
    migrate,
)
from microblog.jobs import wiring as jobs  # noqa: E402
from microblog.live import stream  # noqa: E402


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; only entry points (wsgi.py, tasks.py, tests) call this."""
    app = Flask(__name__, instance_relative_config=True)
    config.load(app, test_config)
    configure_logging(app)
    alerts.init_app(app)  # before the broker is made: Sentry's Dramatiq integration hooks it
    wire.init_app(app)  # before the extensions: their hooks read cookies and bodies
    register_extensions(app)
    i18n.init_app(app)
    throttle.init_app(app)
    register_blueprints(app)
    jobs.init_app(app)
    stream.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    register_commands(app)
    app.shell_context_processor(shell_context)
    app.add_template_global(urls.here)  # forms come back to this page, when that is safe
    return app


def configure_logging(app: Flask) -> None:
    """Log to stderr, where gunicorn, dramatiq and containers collect it, at ``LOG_LEVEL``."""
    scrub.install()  # no secret in any log line, whoever writes it
    level = app.config["LOG_LEVEL"].upper()
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("microblog", "wsgi", "tasks"):
        logging.getLogger(name).setLevel(level)
    app.logger.setLevel(level)


def register_extensions(app: Flask) -> None:
    from microblog.auth.models import unconfirmed_addresses
    from microblog.database import init_app as init_database

    db.init_app(app)
    init_database(app)
    # migrations/ sits beside the package, wherever the process was started from.
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    mail.init_app(app)
    mailer.gate_addresses(app, unconfirmed_addresses)
    bootstrap.init_app(app)


def register_blueprints(app: Flask) -> None:
    from microblog.admin.views import bp as admin_bp
    from microblog.auth.views import bp as auth_bp
    from microblog.exports.views import bp as exports_bp
    from microblog.jobs.views import bp as jobs_bp
    from microblog.messages.views import bp as messages_bp
    from microblog.ops.health import bp as health_bp
    from microblog.ops.prometheus import bp as metrics_bp
    from microblog.posts.views import bp as posts_bp
    from microblog.recovery.views import bp as recovery_bp
    from microblog.search.views import bp as search_bp

    blueprints = (auth_bp, recovery_bp, posts_bp, messages_bp, search_bp, jobs_bp, exports_bp,
                  health_bp, admin_bp)  # fmt: skip
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    if app.config["METRICS_TOKEN"]:  # otherwise no such page, whatever the method
        app.register_blueprint(metrics_bp)


def shell_context() -> dict[str, Any]:
    """What ``flask --app wsgi shell`` starts with: the database and every model."""
    import sqlalchemy as sa
    import sqlalchemy.orm as so

    from microblog.auth.models import User
    from microblog.auth.sessions import SignIn
    from microblog.exports.models import Archive
    from microblog.jobs.models import Task
    from microblog.messages.models import Message
    from microblog.posts.models import Post

    return {"db": db, "sa": sa, "so": so, "User": User, "SignIn": SignIn, "Post": Post,
            "Task": Task, "Archive": Archive, "Message": Message}  # fmt: skip


def register_commands(app: Flask) -> None:
    from microblog.auth.cli import users_cli
    from microblog.jobs.cli import jobs_cli, tasks_cli
    from microblog.ops.health import check_command
    from microblog.posts.seed import seed_demo_command

    app.cli.add_command(seed_demo_command)
    app.cli.add_command(check_command)
    app.cli.add_command(tasks_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(users_cli)
