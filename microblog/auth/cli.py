"""Operators' commands for accounts: ``flask --app wsgi users …``."""

import click
from flask import current_app
from flask.cli import with_appcontext

from microblog.auth.models import User, find_user
from microblog.auth.sessions import admin_revoked
from microblog.extensions import db


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
        admin_revoked.send(current_app._get_current_object(), user_id=user.id)
    click.echo(f"{user.username} is {'an admin' if admin else 'no longer an admin'}")
