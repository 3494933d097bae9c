"""Operators' commands for accounts: ``flask --app wsgi users …``."""

from types import SimpleNamespace

import click
from flask import current_app
from flask.cli import with_appcontext

from microblog.auth.forms import MAX_PASSWORD_LENGTH, strong_password
from microblog.auth.models import User, find_user
from microblog.auth.sessions import (
    admin_revoked,
    announce_password_changed,
    announce_revoked,
    close_all_sign_ins,
    count_sign_ins,
)
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


@users_cli.command("set-password")
@click.argument("username")
@with_appcontext
def set_password(username: str) -> None:
    """Give a user a new password, asked for twice (never on the command line), and sign out
    every device signed in to the account."""
    user = user_or_fail(username)
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if problem := password_problem(password):
        raise click.ClickException(problem)
    user.set_password(password)
    close_all_sign_ins(user)
    db.session.commit()
    announce_password_changed(user.id)
    click.echo(f"{user.username} has a new password; every sign-in is closed")


def password_problem(password: str) -> str | None:
    """Return why the account forms would refuse ``password``, or None."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    try:
        strong_password(None, SimpleNamespace(data=password))
    except ValueError as error:
        return str(error)
    return None


@users_cli.command("sign-out")
@click.argument("username")
@with_appcontext
def sign_out_everywhere(username: str) -> None:
    """Close every sign-in of a user: every browser, and its open streams, at once."""
    user = user_or_fail(username)
    closed = count_sign_ins(user)
    close_all_sign_ins(user)
    db.session.commit()
    announce_revoked(user.id)
    click.echo(f"{user.username}: {closed} sign-in(s) closed")


@users_cli.command("show")
@click.argument("username")
@with_appcontext
def show(username: str) -> None:
    """Show an account: when it was made and last seen, its role, its open sign-ins."""
    user = user_or_fail(username)

    def when(moment) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"

    click.echo(f"username:  {user.username}")
    click.echo(f"email:     {user.email}")
    click.echo(f"created:   {when(user.created_at)}")
    click.echo(f"last seen: {when(user.last_seen)}")
    click.echo(f"admin:     {'yes' if user.is_admin else 'no'}")
    click.echo(f"sign-ins:  {count_sign_ins(user)}")
