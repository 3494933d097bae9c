"""Configuration comes from defaults, then the environment, then the test mapping."""

import pytest

from microblog import create_app
from microblog.config import from_environment, normalise_database_url


def test_production_without_secret_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("MICROBLOG_ENV", "production")
    with pytest.raises(RuntimeError, match="SECRET_KEY must be set"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_development_without_secret_key_uses_a_development_key(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("MICROBLOG_ENV", raising=False)
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["SECRET_KEY"] == "development-only-not-secret"


def test_environment_values_are_converted_to_their_types():
    found = from_environment(
        {"MAIL_PORT": "2525", "MAIL_USE_TLS": "true", "REDIS_URL": "redis://r:1/2", "HOME": "/x"}
    )
    assert found == {"MAIL_PORT": 2525, "MAIL_USE_TLS": True, "REDIS_URL": "redis://r:1/2"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_is_pointed_at_the_installed_driver(url, expected):
    assert normalise_database_url(url) == expected


def test_environment_overrides_defaults_and_test_config_overrides_both(monkeypatch):
    monkeypatch.setenv("POSTS_PER_PAGE", "7")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    assert create_app().config["POSTS_PER_PAGE"] == 7
    assert create_app({"POSTS_PER_PAGE": 3}).config["POSTS_PER_PAGE"] == 3
