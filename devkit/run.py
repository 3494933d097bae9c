"""Run the whole app on one machine: ``python -m devkit.run`` (``make run``).

Starts Redis and an SMTP catcher (messages saved under ``instance/mail/``) on free loopback
ports, applies migrations, seeds the demo account into an empty database, then runs gunicorn
and a Dramatiq worker until Ctrl-C, which stops everything it started, in order: web, worker,
then Redis and the mail catcher.

Development only: the production image leaves this module out.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devkit.services import MailCatcher, RedisServer, free_port, wait_until
from microblog.posts.seed import DEMO_PASSWORD, DEMO_USERNAME

ROOT = Path(__file__).resolve().parent.parent
# Seconds a running job may take to finish after Ctrl-C before it goes back to the queue.
WORKER_SHUTDOWN_SECONDS = 5
WORKER_METRICS = ROOT / "instance" / "worker-metrics"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def service_environment(redis: RedisServer, mail: MailCatcher, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_URL=env.get("REDIS_URL", redis.url),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(mail.port),
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        MICROBLOG_BIND=f"127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
        # The worker's metrics samples, kept with the rest of the stack's files.
        dramatiq_prom_db=env.get("dramatiq_prom_db", str(WORKER_METRICS)),
    )
    return env


def describe_exit(returncode: int) -> str:
    """Say in words how a process ended, from its return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    if returncode == 0:
        return "exited on its own"
    return f"exited with status {returncode} (its log is above)"


class Child:
    """A named process of the stack, in a process group of its own.

    Its own group keeps the terminal's Ctrl-C away from it, so that the stack can stop its
    parts in order instead of all at once.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(command, env=env, process_group=0)

    def stop(self, timeout: float) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {timeout:.0f}s; killing it", file=sys.stderr)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def raise_if_exited(children: dict[str, subprocess.Popen]) -> None:
    """Raise :class:`ChildExited` for the first of ``children`` that has ended."""
    for name, process in children.items():
        if process.poll() is not None:
            raise ChildExited(name, process.returncode)


def answers(url: str, children: dict[str, subprocess.Popen]) -> bool:
    """Tell whether ``url`` answers; raise if a child died while we waited."""
    raise_if_exited(children)
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # an error page is an answer too
    except OSError:
        return False


class ChildExited(Exception):
    """A part of the stack ended while the stack was meant to be running."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} {describe_exit(returncode)}")


def watch(children: dict[str, subprocess.Popen]) -> None:
    """Block until one of ``children`` exits (or Ctrl-C), then raise :class:`ChildExited`."""
    while True:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        raise_if_exited(children)


def ignore_stop_signals() -> None:
    # A second Ctrl-C, or the SIGTERM that make relays after the one it got itself, must not
    # cut the clean-up short and leave strays behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_requested(signum: int, frame: object) -> None:
    """Turn Ctrl-C or SIGTERM into one orderly stop, deaf to any signal that follows."""
    ignore_stop_signals()
    raise KeyboardInterrupt


def flask(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="web port, default $PORT or 8000 (a free one if taken)")  # fmt: skip
    parser.add_argument("--worker-processes", type=int, default=1)
    args = parser.parse_args()
    port = args.port if port_is_free(args.port) else free_port()
    os.chdir(ROOT)
    signal.signal(signal.SIGINT, stop_requested)
    signal.signal(signal.SIGTERM, stop_requested)

    redis = mail = web = worker = None
    try:
        redis = RedisServer().start()
        mail = MailCatcher(directory=ROOT / "instance" / "mail").start()
        env = service_environment(redis, mail, port)
        shutil.rmtree(WORKER_METRICS, ignore_errors=True)  # a previous run's processes' samples
        flask(env, "db", "upgrade")
        flask(env, "seed-demo", "--if-empty")
        web = Child("gunicorn (web)", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                    env)  # fmt: skip
        worker = Child(
            "dramatiq (worker)",
            [sys.executable, "-m", "dramatiq", "tasks", "--threads", "4",
             "--processes", str(args.worker_processes),
             "--worker-shutdown-timeout", str(WORKER_SHUTDOWN_SECONDS * 1000)],
            env,
        )  # fmt: skip
        children = {child.name: child.process for child in (web, worker)}
        children["redis-server"] = redis.process
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url + "healthz", children), 60, f"gunicorn at {url}")
        print(
            f"\n  microblog is running at {url}\n"
            f"  demo login: {DEMO_USERNAME} / {DEMO_PASSWORD}\n"
            f"  Redis: {redis.url}   mail catcher: 127.0.0.1:{mail.port}, "
            f"messages in {mail.directory}\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        watch(children)
    except ChildExited as error:
        print(f"\n{error}; stopping the rest", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"\n`{' '.join(error.cmd[2:])}` failed with status {error.returncode}",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("\nstopping: web, worker, then Redis and the mail catcher", file=sys.stderr)
        return 0
    finally:
        ignore_stop_signals()
        if web is not None:
            web.stop(timeout=15)
        if worker is not None:
            worker.stop(timeout=WORKER_SHUTDOWN_SECONDS + 20)
        if mail is not None:
            mail.stop()
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
