"""The demo data command."""

from sqlalchemy import func, select

from microblog.auth.models import User
from microblog.extensions import db
from microblog.posts.models import Post
from microblog.posts.seed import DEMO_PASSWORD, DEMO_USERNAME


def test_seed_demo_creates_a_living_demo_account(runner, app, client, auth):
    result = runner.invoke(args=["seed-demo", "--posts", "120"])
    assert result.exit_code == 0, result.output
    assert f"{DEMO_USERNAME} / {DEMO_PASSWORD}" in result.output
    with app.app_context():
        demo = db.session.scalar(select(User).where(User.username == DEMO_USERNAME))
        assert db.session.scalar(select(func.count()).where(Post.user_id == demo.id)) == 120
        assert len(demo.following) == 2
        # written in time order, as search lists them
        stamps = db.session.scalars(select(Post.timestamp).order_by(Post.id)).all()
        assert len(stamps) == 120 + 2 * 20 and stamps == sorted(stamps)
    assert auth.login(DEMO_USERNAME, DEMO_PASSWORD).status_code == 302


def test_seed_demo_if_empty_leaves_an_existing_site_alone(runner, app, make_user):
    make_user("alice")
    result = runner.invoke(args=["seed-demo", "--if-empty"])
    assert result.exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 1
