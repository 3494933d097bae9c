"""Operators' commands for accounts: ``flask --app wsgi users …``."""

import click
from flask.cli import with_appcontext

from microblog.auth.models import User, find_user
from microblog.extensions import db
from microblog.jobs import events
from microblog.stream import close_streams


@click.group("users")
def users_cli() -> None:
    """Manage accounts."""


def user_or_fail(username: str) -> User:
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"there is no user {username!r}")
    return user


@users_cli.command("grant-admin")
@click.argument("username")
@with_appcontext
def grant_admin(username: str) -> None:
    """Let a user see and control everyone's tasks at /admin/tasks."""
    set_admin(username, True)


@users_cli.command("revoke-admin")
@click.argument("username")
@with_appcontext
def revoke_admin(username: str) -> None:
    """Take the admin role back; it is checked on every request to /admin."""
    set_admin(username, False)


def set_admin(username: str, admin: bool) -> None:
    user = user_or_fail(username)
    user.is_admin = admin
    db.session.commit()
    if not admin:  # the operators' page open in their browser stops hearing at once
        close_streams([events.OPERATORS], user.id)
    click.echo(f"{user.username} is {'an admin' if admin else 'no longer an admin'}")
