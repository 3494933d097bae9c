"""``flask jobs replay``: a recorded job played on a user's channel, never in production."""

import pytest

from devkit.services import wait_until
from microblog import create_app
from microblog.extensions import db
from microblog.jobs.recording import Recording, comparable
from tests.support import ROOT

GOLDEN = ROOT / "tests" / "jobs" / "golden" / "count_words.json"


def test_replay_publishes_the_recording_as_a_new_task(app, runner, make_user, recorded_events):
    user_id = make_user("front-end")
    result = runner.invoke(args=["jobs", "replay", str(GOLDEN), "--user", "front-end",
                                 "--speed", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    recording = Recording.load(GOLDEN)

    def sent() -> list:
        return [m for c, m in list(recorded_events.messages) if c == f"user.{user_id}"]

    wait_until(lambda: len(sent()) == len(recording.events), 10, "the replayed events")
    sent = sent()
    replayed = Recording("count_words", [{"type": m.type, "data": m.data} for m in sent])
    assert comparable(replayed) == comparable(recording)
    assert sent[0].data["task_id"] != recording.events[0]["data"]["task_id"]


def test_replay_keeps_the_pacing_scaled_by_speed(app, runner, make_user, recorded_events):
    make_user("front-end")
    recording = Recording.load(GOLDEN)
    runner.invoke(args=["jobs", "replay", str(GOLDEN), "--user", "front-end", "--speed", "2"])
    wait_until(lambda: len(recorded_events.times) == len(recording.events), 30, "the events")
    gaps = [b - a for a, b in zip(recorded_events.times, recorded_events.times[1:], strict=False)]
    recorded = [
        (b["after_ms"] - a["after_ms"]) / 1000 / 2
        for a, b in zip(recording.events, recording.events[1:], strict=False)
    ]
    assert sum(gaps) >= sum(recorded) * 0.9, (gaps, recorded)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody"], "there is no user 'nobody'"),
        (["--user", "front-end", "--speed", "0"], "Invalid value for '--speed'"),
    ],
)
def test_replay_refuses_bad_arguments(runner, make_user, args, message):
    make_user("front-end")
    result = runner.invoke(args=["jobs", "replay", str(GOLDEN), *args])
    assert result.exit_code != 0 and message in result.output


def test_replay_refuses_a_file_that_is_not_a_recording(runner, make_user, tmp_path):
    make_user("front-end")
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    result = runner.invoke(args=["jobs", "replay", str(path), "--user", "front-end"])
    assert result.exit_code == 1 and "is not a recording" in result.output


def test_replay_refuses_to_run_in_production(app_config, make_user, recorded_events):
    make_user("front-end")
    production = create_app({**app_config, "MICROBLOG_ENV": "production"})
    try:
        result = production.test_cli_runner().invoke(
            args=["jobs", "replay", str(GOLDEN), "--user", "front-end"]
        )
    finally:
        with production.app_context():
            db.engine.dispose()
    assert result.exit_code == 1 and "refusing to replay in production" in result.output
    assert recorded_events.messages == []
