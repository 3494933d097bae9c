"""Redis as production outgrows one server, started for real on loopback: a Redis Cluster of
three masters with a replica each, and a master with a replica watched by three sentinels.

Each is a set of ``redis-server`` (and ``redis-sentinel``) processes in a process group of
their own, on free ports, in a temporary folder, stopped and removed by ``stop()``. Both can
lose their master for real (``kill -9``) and report when the failover is done.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from devkit.services import free_port, redis_server_binary, wait_until


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, process_group=0)


def _answers(port: int, password: str | None = None) -> bool:
    try:
        client = redis.Redis(port=port, password=password, socket_timeout=1,
                             socket_connect_timeout=1)  # fmt: skip
        return client.ping()
    except redis.RedisError:
        return False


class Nodes:
    """Redis processes by port, in one folder; each wants ``password`` if one is given (from
    its clients and, as a replica, from its master)."""

    def __init__(self, prefix: str, password: str | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.password = password
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, port: int, *options: str) -> None:
        folder = self.folder / str(port)
        folder.mkdir(exist_ok=True)
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
                "--dir", str(folder), *options]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        self.processes[port] = _start(argv, folder / "redis.log")
        wait_until(lambda: self._started(port, folder / "redis.log"), 10,
                   f"redis-server on port {port}")  # fmt: skip

    def _started(self, port: int, log: Path) -> bool:
        """Say whether the node answers; raise at once, with its log, if it exited."""
        if self.processes[port].poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited:\n{log.read_text()[-2000:]}")
        return self.answers(port)

    def answers(self, port: int) -> bool:
        return _answers(port, self.password)

    def kill(self, port: int) -> None:
        """Kill the server on ``port`` as a crash would (SIGKILL)."""
        process = self.processes.pop(port)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def ephemeral_ports_start() -> int:
    """Return the first port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_cluster_port() -> int:
    """Return a free port whose cluster bus port (10,000 higher) is free too, both below the
    ephemeral range: there, any outgoing connection of a busy test session could take one
    between this check and the node's start."""
    highest = max(ephemeral_ports_start() - 10_000, 11_000)
    while True:
        port = random.randrange(10_000, highest)
        try:
            with socket.socket() as data, socket.socket() as bus:
                data.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
                return port
        except OSError:
            continue


class RedisClusterServers:
    """Three masters, each with one replica, slots spread evenly (``redis-cli --cluster``)."""

    NODE_TIMEOUT_MS = 1000  # a master silent this long is failed over to its replica

    def __init__(self) -> None:
        self.nodes = Nodes("microblog-cluster-")
        self.ports = []
        while len(self.ports) < 6:
            port = free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> "RedisClusterServers":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "RedisClusterServers":
        for port in self.ports:
            self.nodes.start(port, "--cluster-enabled", "yes",
                             "--cluster-config-file", f"nodes-{port}.conf",
                             "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS))  # fmt: skip
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{port}" for port in self.ports], "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_until(self.healthy, 30, "the Redis Cluster to be ready")
        return self

    def client(self) -> RedisCluster:
        live = next(port for port in self.ports if port in self.nodes.processes)
        return RedisCluster(host="127.0.0.1", port=live, socket_timeout=2)

    def healthy(self) -> bool:
        """Say whether every live node sees the cluster as ok, with three masters up, and
        every replica of a live master in step with it (only then can it take over)."""
        for port in self.nodes.processes:
            try:
                node = redis.Redis(port=port, socket_timeout=1)
                info, replication = node.cluster("info"), node.info("replication")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
            master = replication.get("master_port")
            if master in self.nodes.processes and replication["master_link_status"] != "up":
                return False
        try:
            client = self.client()
            masters = client.get_primaries()
            client.close()
        except redis.RedisError:
            return False
        return len(masters) == 3 and all(m.port in self.nodes.processes for m in masters)

    def master_of(self, key: str) -> int:
        """Return the port of the master that holds ``key``'s slot now."""
        client = self.client()
        try:
            return client.get_node_from_key(key).port
        finally:
            client.close()

    def shard_masters(self) -> list[int]:
        client = self.client()
        try:
            return sorted(node.port for node in client.get_primaries())
        finally:
            client.close()

    def kill_master_of(self, key: str) -> int:
        """Kill -9 the master holding ``key``'s slot; return its port (failover follows)."""
        port = self.master_of(key)
        self.nodes.kill(port)
        return port

    def wait_failed_over(self, timeout: float = 30) -> None:
        wait_until(self.healthy, timeout, "the cluster to promote a replica")

    def stop(self) -> None:
        self.nodes.stop()


class SentinelServers:
    """A master, its replica, and three sentinels watching it as ``MASTER``."""

    MASTER = "mymaster"
    DOWN_AFTER_MS = 1000

    def __init__(self, password: str | None = None) -> None:
        """``password``: what the master and the replica want (the sentinels want none)."""
        self.nodes = Nodes("microblog-sentinel-", password)
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        """The URL the app gets beside the sentinels: it gives only the database number."""
        return "redis://127.0.0.1:1/0"

    def start(self) -> "SentinelServers":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "SentinelServers":
        self.nodes.start(self.master_port)
        self.nodes.start(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for port in self.sentinel_ports:
            config = self.nodes.folder / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.nodes.folder}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            if self.nodes.password:
                with config.open("a") as out:
                    out.write(f"sentinel auth-pass {self.MASTER} {self.nodes.password}\n")
            binary = shutil.which("redis-sentinel")
            if binary is None:
                raise RuntimeError(
                    "redis-sentinel is not installed: apt-get install redis-sentinel"
                )
            self.sentinels.append(_start([binary, str(config)], self.nodes.folder / f"{port}.log"))
            wait_until(lambda port=port: _answers(port), 10, f"redis-sentinel on port {port}")
        wait_until(lambda: self.master() == self.master_port, 10, "the sentinels to agree")
        return self

    def master(self) -> int | None:
        """Return the port of the master the first sentinel that answers names."""
        for port in self.sentinel_ports:
            try:
                found = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    self.MASTER
                )
            except redis.RedisError:
                continue
            if found:
                return int(found[1])
        return None

    def kill_master(self) -> int:
        """Kill -9 the current master; return its port (the sentinels promote the replica)."""
        port = self.master()
        self.nodes.kill(port)
        return port

    def wait_failed_over(self, old: int, timeout: float = 30) -> int:
        wait_until(lambda: self.master() not in (None, old) and self.nodes.answers(self.master()),
                   timeout, "the sentinels to promote the replica")  # fmt: skip
        return self.master()

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
        self.nodes.stop()
