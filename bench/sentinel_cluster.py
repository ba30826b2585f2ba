"""A Sentinel-managed Redis on loopback, for the failover tests and bench/replicated.py: a primary, its
replicas and three Sentinels, each a real ``redis-server`` (``--sentinel`` for the Sentinels) on a port
and in a folder of its own. Every process started here is stopped by :meth:`SentinelCluster.stop`,
even when a test or a run fails half-way.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.stack import free_port, wait_for

MASTER = "mymaster"
DOWN_AFTER_MS = 1000  # Sentinel's down-after-milliseconds: the figure for the recovery aim


@dataclass
class Node:
    """One ``redis-server`` (data node or Sentinel); ``argv`` is started again as it was by :meth:`start`."""

    folder: Path
    port: int
    argv: list[str]
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, cwd=self.folder, stdout=subprocess.DEVNULL, process_group=0)
        wait_for(self._answers, 20, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server on port {self.port} exited: {log}")
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its data
            return False

    def kill(self) -> None:
        """``kill -9``: no shutdown, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process stays, but reads, answers and replicates nothing until :meth:`resume`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=10)

    def role(self) -> str:
        """``master`` or ``slave``, as the server says (``ROLE``)."""
        with self.client() as client:
            return client.execute_command("ROLE")[0].decode()


@dataclass
class SentinelCluster:
    """One primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum 2) under ``folder``."""

    folder: Path
    replicas: int = 2
    sentinels: int = 3
    data: list[Node] = field(default_factory=list)  # data[0] starts as the primary
    watchers: list[Node] = field(default_factory=list)

    def start(self) -> SentinelCluster:
        ports = [free_port() for _ in range(1 + self.replicas)]
        for n, port in enumerate(ports):
            argv = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", ".",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--maxmemory-policy", "noeviction",
                "--logfile", "redis.log",
            ]  # fmt: skip
            if n:
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            node = Node(self.folder / f"redis-{n}", port, argv)
            self.data.append(node)
            node.start()
        wait_for(self._replicas_acknowledge, 30, "replicas that acknowledge writes")
        for n in range(self.sentinels):
            port = free_port()
            folder = self.folder / f"sentinel-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            # Sentinel rewrites its configuration file as it learns the topology: one writable file each.
            (folder / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\ndir .\nlogfile redis.log\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {ports[0]} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 2\n"
            )
            node = Node(folder, port, ["redis-server", "sentinel.conf", "--sentinel"])
            self.watchers.append(node)
            node.start()
        wait_for(self._sentinels_see_all, 30, "Sentinels that know every node")
        return self

    @property
    def sentinel_setting(self) -> str:
        """``PCAQ_REDIS_SENTINELS`` for this cluster."""
        return ",".join(f"127.0.0.1:{node.port}" for node in self.watchers)

    def _sentinels_see_all(self) -> bool:
        for node in self.watchers:
            with node.client() as client:
                info = client.sentinel_master(MASTER)
                if int(info["num-slaves"]) < self.replicas or int(info["num-other-sentinels"]) < 2:
                    return False
        return True

    def primary(self) -> Node:
        """The node the Sentinels name as primary now (asked of the first that answers)."""
        for watcher in self.watchers:
            try:
                with watcher.client() as client:
                    _, port = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            return next(node for node in self.data if node.port == int(port))
        raise AssertionError("no Sentinel answers")

    def wait_new_primary(self, old: Node, timeout: float = 30.0) -> tuple[Node, float]:
        """Wait until the Sentinels promoted another node and it answers as primary; it and when."""
        start = time.monotonic()

        def promoted() -> Node | None:
            node = self.primary()
            return node if node is not old and node.role() == "master" else None

        node = wait_for(promoted, timeout, "a new primary")
        return node, time.monotonic() - start

    def _replicas_acknowledge(self) -> bool:
        """A write on the primary is acknowledged by every replica within 0.2 s (a replica just
        synchronised answers WAIT late for a moment)."""
        with self.data[0].client() as client:
            client.set("sentinel-cluster:probe", 1)
            return int(client.execute_command("WAIT", self.replicas, 200)) == self.replicas

    def stop(self) -> None:
        """Stop every process this cluster started (Sentinels first, so none fails over meanwhile)."""
        for node in [*self.watchers, *self.data]:
            if node.proc is not None and node.proc.poll() is None:
                node.resume()  # a paused process would not act on SIGTERM
            node.stop()
