"""Run the whole app on one machine: ``python -m microblog.devstack`` (``make run``).

Starts Redis and an SMTP catcher (messages saved under ``instance/mail/``) on free loopback
ports, applies migrations, seeds the demo account into an empty database, then runs gunicorn
and a Dramatiq worker until Ctrl-C, which stops everything it started.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from microblog.seed import DEMO_PASSWORD, DEMO_USERNAME
from microblog.services import MailCatcher, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


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
    )
    return env


def flask(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="web port (a free one if taken)")
    parser.add_argument("--worker-processes", type=int, default=1)
    args = parser.parse_args()
    port = args.port if port_is_free(args.port) else free_port()
    os.chdir(ROOT)

    redis = RedisServer().start()
    mail = MailCatcher(directory=ROOT / "instance" / "mail").start()
    env = service_environment(redis, mail, port)
    children: list[subprocess.Popen] = []
    try:
        flask(env, "db", "upgrade")
        flask(env, "seed-demo", "--if-empty")
        children.append(
            subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], env=env)
        )
        worker = [sys.executable, "-m", "dramatiq", "tasks", "--threads", "4"]
        worker += ["--processes", str(args.worker_processes)]
        children.append(subprocess.Popen(worker, env=env))
        print(
            f"\n  microblog is running at http://127.0.0.1:{port}/\n"
            f"  demo login: {DEMO_USERNAME} / {DEMO_PASSWORD}\n"
            f"  Redis: {redis.url}   mail catcher: 127.0.0.1:{mail.port}, "
            f"messages in {mail.directory}\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # Block until any child exits (or Ctrl-C); one dying takes the others down.
        pid, status = os.wait()
        print(f"process {pid} exited with status {status}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave strays behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        mail.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
