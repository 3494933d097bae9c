"""The ``flask seed-demo`` command: a demo account so a newcomer sees a living site."""

import random
from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from microblog.auth.models import User, follow
from microblog.extensions import db
from microblog.models import utcnow
from microblog.posts.models import Post

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password-1"
FRIENDS = ("ada", "grace")

_WORDS = (
    "flask dramatiq redis worker progress export archive stream event browser tab reload "
    "coffee morning deploy queue retry backoff heartbeat cursor chunk json gzip mail link "
    "today shipped fixed learned reading writing walking thinking ✨ 🚀 café naïve <b>bold?</b>"
).split()


def fake_sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(4, 16))
    return " ".join(words).capitalize() + rng.choice(".!?")


def create_user(username: str, password: str, about: str) -> User:
    # Confirmed: example.com is nobody's mailbox, and the demo shows exports arriving by email.
    user = User(username=username, email=f"{username}@example.com", about_me=about,
                email_confirmed_at=utcnow())  # fmt: skip
    user.set_password(password)
    db.session.add(user)
    return user


def make_posts(user: User, count: int, rng: random.Random) -> list[Post]:
    """Return ``count`` posts by the user spread over the last few months, oldest first."""
    now = utcnow()
    posts = []
    for i in range(count):
        body = fake_sentence(rng)
        when = now - timedelta(minutes=(count - i) * 97 + rng.randint(0, 60))
        posts.append(Post(body=body, timestamp=when, author=user))
    return posts


def seed_demo(posts: int = 300, seed: int = 7) -> User:
    """Create the demo user, two friends it follows, and their posts; commit."""
    rng = random.Random(seed)
    demo = create_user(DEMO_USERNAME, DEMO_PASSWORD, "The account the run command creates.")
    written = make_posts(demo, posts, rng)
    for name in FRIENDS:
        friend = create_user(name, DEMO_PASSWORD, f"{name.title()} posts about computing.")
        written += make_posts(friend, posts // 6, rng)
        db.session.flush()  # both need their ids
        follow(demo.id, friend.id)
    # Inserted in time order, as if written as the months went by: search lists posts in
    # the order they were written.
    db.session.add_all(sorted(written, key=lambda post: post.timestamp))
    db.session.commit()
    return demo


@click.command("seed-demo")
@click.option("--posts", default=300, show_default=True, help="Posts for the demo user.")
@click.option("--if-empty", is_flag=True, help="Do nothing when any user exists.")
@with_appcontext
def seed_demo_command(posts: int, if_empty: bool) -> None:
    """Create the demo account with a few hundred posts and two followed users."""
    if if_empty and db.session.scalar(select(func.count(User.id))):
        click.echo("Users exist; demo data not added.")
        return
    if db.session.scalar(select(User.id).where(User.username == DEMO_USERNAME)):
        raise click.ClickException(f"User {DEMO_USERNAME!r} already exists.")
    seed_demo(posts)
    click.echo(f"Demo account: {DEMO_USERNAME} / {DEMO_PASSWORD}")
