"""Helpers for tests that run real processes: free ports, polling with a deadline, /proc process
tables, a private Redis database, and :func:`running_stack`, which runs ``pcaq up`` for a test.

Linux only (process groups and /proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from pcaq.cli.embedded_redis import embedded_redis_url, free_port

__all__ = ["free_port"]  # re-exported for tests

REPO = Path(__file__).resolve().parents[1]


def wakeups_failed(task: str) -> float:
    """This process's count of wake-up messages for ``task`` that could not be sent (``/metrics``)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("pcaq_wakeups_failed_total", {"task": task}) or 0.0


T = TypeVar("T")


class Clock:
    """A settable ``time.time`` for the record store and the services under test."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET url``, or None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


# -- processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    """One line of the process table."""

    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str


def process_table() -> dict[int, ProcInfo]:
    """Every process visible in /proc, by pid."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited while we looked
        # The command name in parentheses may hold spaces: split after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        table[pid] = ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0], cmdline)
    return table


def descendants(pid: int) -> list[ProcInfo]:
    """The live processes below ``pid`` (children, grandchildren, ...)."""
    table = process_table()
    found, frontier = [], {pid}
    while frontier:
        level = [p for p in table.values() if p.ppid in frontier and p.state != "Z"]
        found += level
        frontier = {p.pid for p in level}
    return found


def children(pid: int) -> list[ProcInfo]:
    """The live direct children of ``pid``."""
    return [p for p in process_table().values() if p.ppid == pid and p.state != "Z"]


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    info = process_table().get(pid)
    return info is not None and info.state != "Z"


def in_groups(pgids: set[int]) -> list[ProcInfo]:
    """Live processes whose process group is one of ``pgids``."""
    return [p for p in process_table().values() if p.pgid in pgids and p.state != "Z"]


def redis_servers_on(folder: Path) -> list[int]:
    """Pids of redis-server processes whose working directory (their --dir) is ``folder``."""
    found = []
    for info in process_table().values():
        if "redis-server" not in info.cmdline:
            continue
        try:
            if Path(f"/proc/{info.pid}/cwd").resolve() == folder.resolve():
                found.append(info.pid)
        except OSError:
            continue
    return found


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports (IPv4 and IPv6) on which process ``pid`` has a listening socket."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def kill_groups(pgids: set[int]) -> None:
    """SIGKILL every process group in ``pgids`` (cleanup after a failed test)."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# -- environments ---------------------------------------------------------------------------------


def pcaq_argv(*args: str) -> list[str]:
    """The command line of ``pcaq ARGS`` from this checkout, with this interpreter."""
    return [sys.executable, "-m", "pcaq.cli", *args]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment, cleared of pcaq settings, with a private data folder.

    The interpreter's own bin folder goes first on PATH so that ``granian`` and ``celery`` in a
    Procfile line are the ones installed for this interpreter.
    """
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PCAQ_") or k == "REDIS_URL")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PCAQ_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


_DB_RANGE = range(12, 1, -1)  # databases 12..2 of the test Redis belong to stacks (13 and 14: unit tests)
_dbs_in_use: set[int] = set()


@contextmanager
def private_redis_db(redis_base_url: str) -> Iterator[str]:
    """A flushed database of the Redis at ``redis_base_url`` (``redis://host:port``), flushed again after.

    A database is claimed with SET NX on a key in database 0, so test runs in several processes at
    once (helpers, CI and a developer) never flush each other's data.
    """
    registry = redis.Redis.from_url(f"{redis_base_url.rstrip('/')}/0")
    token = f"{os.getpid()}:{time.monotonic_ns()}"
    db = next(
        (
            d
            for d in _DB_RANGE
            if d not in _dbs_in_use and registry.set(f"pcaq-test:db:{d}", token, nx=True, ex=3600)
        ),
        None,
    )
    if db is None:
        raise RuntimeError("all test Redis databases are in use; stop a stack first")
    url = f"{redis_base_url.rstrip('/')}/{db}"
    client = redis.Redis.from_url(url)
    _dbs_in_use.add(db)
    try:
        client.flushdb()
        yield url
    finally:
        try:
            client.flushdb()
        finally:
            client.close()
            _dbs_in_use.discard(db)
            if registry.get(f"pcaq-test:db:{db}") == token.encode():
                registry.delete(f"pcaq-test:db:{db}")
            registry.close()


# -- pcaq up --------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running ``pcaq up``."""

    endpoint_url: str
    redis_url: str
    env: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    data_dir: Path
    groups: set[int] = field(default_factory=set)  # process groups of its children, seen while running

    def log(self) -> str:
        """Everything ``pcaq up`` and its children printed so far."""
        return self.log_path.read_text(errors="replace")

    def child_pids(self) -> dict[str, int]:
        """The live children of ``pcaq up`` by role: ``api``, ``worker`` and, if embedded, ``redis``."""
        roles = {}
        for info in children(self.proc.pid):
            for role, marker in (("api", "granian"), ("worker", "celery"), ("redis", "redis-server")):
                if marker in info.cmdline:
                    roles[role] = info.pid
        return roles

    def remember_groups(self) -> None:
        """Note the process groups of the current children (for the cleanup check)."""
        self.groups |= {info.pgid for info in children(self.proc.pid)}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal ``pcaq up`` and wait for it; kill everything it started if it does not stop in time."""
        if self.proc.poll() is None:
            self.remember_groups()
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            kill_groups(self.groups)
            self.proc.wait()
            raise AssertionError(f"pcaq up did not stop within {timeout:.0f} s after {sig!r}") from None
        finally:
            kill_groups({info.pgid for info in in_groups(self.groups)})


def start_pcaq_up(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Path]:
    """Start ``pcaq ARGS`` with its output in a log file under ``tmp_path``."""
    log_path = tmp_path / f"pcaq-{time.monotonic_ns()}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            pcaq_argv(*args),
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            process_group=0,  # our own signals only, as a service manager would send
        )
    return proc, log_path


def wait_ready(endpoint_url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 90.0) -> None:
    """Wait for ``/readyz`` to answer 200, failing at once (with the log) if the process exits."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pcaq exited with {proc.returncode} before ready:\n{log_path.read_text()}")
        return http_status(endpoint_url + "/readyz") == 200

    try:
        wait_until(ready, timeout=timeout, interval=0.1, what=f"{endpoint_url}/readyz == 200")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- log ---\n{log_path.read_text(errors='replace')}") from None


@contextmanager
def running_stack(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    workers: int = 1,
    redis_base_url: str | None = None,
    embedded_redis: str | None = None,
) -> Iterator[Stack]:
    """Run ``pcaq up`` on a free port until the block ends, and yield it once ``/readyz`` is 200.

    Redis: ``env["REDIS_URL"]`` if given, else a private database of ``redis_base_url`` (see
    :func:`private_redis_db`), else the embedded Redis (``embedded_redis`` picks which kind). The master
    key is created in the private data folder unless ``env`` sets one. The stack is stopped with SIGTERM.
    """
    with _redis_for(env, redis_base_url) as redis_url:
        port = free_port()
        data_dir = tmp_path / "data"
        stack_env = base_env(data_dir, **(env or {}))
        if redis_url:
            stack_env["REDIS_URL"] = redis_url
        args = ["up", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if embedded_redis:
            args += ["--embedded-redis", embedded_redis]
        proc, log_path = start_pcaq_up(tmp_path, stack_env, *args)
        endpoint_url = f"http://127.0.0.1:{port}"
        stack = Stack(endpoint_url, redis_url or "", stack_env, proc, log_path, data_dir)
        try:
            wait_ready(endpoint_url, proc, log_path)
            stack.remember_groups()
            # As pcaq's own commands find it: the data folder says where, and the password (with
            # Sentinel there is no embedded Redis: the test knows its cluster).
            if not redis_url and not stack_env.get("PCAQ_REDIS_SENTINELS"):
                embedded = embedded_redis_url(data_dir)
                assert embedded, f"pcaq up did not publish its embedded Redis in {data_dir}:\n{stack.log()}"
                stack.redis_url = embedded
            yield stack
        finally:
            stack.stop()


@contextmanager
def _redis_for(env: dict[str, str] | None, redis_base_url: str | None) -> Iterator[str | None]:
    if env and env.get("REDIS_URL"):
        yield env["REDIS_URL"]
    elif redis_base_url:
        with private_redis_db(redis_base_url) as url:
            yield url
    else:
        yield None
