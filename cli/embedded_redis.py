"""The Redis that ``pcaq up`` runs for itself when ``REDIS_URL`` is not set.

A fresh machine needs no Redis install: :func:`embedded_redis` prefers a ``redis-server`` found on
PATH, started privately (a Unix socket only its owner may open, plus loopback TCP on a free port for
operators' tools; data in ``<data dir>/redis`` with the append-only file on and ``noeviction``, see
docs/operations.md), and falls back to fakeredis's in-process server, which speaks enough of the
protocol for Celery and our Lua scripts but is slow and keeps nothing.

Either way only the data folder's owner gets in. redis-server asks every connection, TCP or socket,
for a password made once and kept in ``<data dir>/redis/password`` (mode 0600); the password reaches
redis-server on its standard input, never its command line, which every local user can read. fakeredis
cannot enforce a password, so it listens on a Unix socket in the owner-only folder and on no TCP port.
:func:`embedded_redis_url` builds the URL, password included, for any process of the folder's owner.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import redis

log = logging.getLogger(__name__)

AUTO = "auto"
REDIS_SERVER = "redis-server"
FAKEREDIS = "fakeredis"
CHOICES = (AUTO, REDIS_SERVER, FAKEREDIS)

_START_DEADLINE = 60.0  # loading a large append-only file can take a while; PING answers LOADING until then
_STOP_DEADLINE = 10.0
_POLL = 0.05
_SOCKET_NAME = "redis.sock"
_PASSWORD_NAME = "password"  # the file holding it (mode 0600)
_ADDRESS_NAME = "address"  # where the running embedded Redis listens, without its password
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux (104 on the BSDs); longer: TCP only


class EmbeddedRedisError(Exception):
    """The embedded Redis cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class EmbeddedRedis:
    """A running embedded Redis: where to reach it and what it is."""

    url: str = field(repr=False)  # carries the password
    kind: str  # REDIS_SERVER or FAKEREDIS
    pid: int | None = None  # the redis-server process, None for the in-process server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the caller must cope with losing a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def redis_folder(data_dir: Path) -> Path:
    """The embedded Redis's folder in the data folder: its data, socket, password and lock."""
    return Path(data_dir) / "redis"


def embedded_redis_url(data_dir: Path) -> str | None:
    """The URL, password included, of the embedded Redis a ``pcaq up`` runs on ``data_dir``.

    None when no ``pcaq up`` has its embedded Redis running there. Raises :class:`EmbeddedRedisError`
    when the password file is missing or others may read it. Never log the URL (see ``redact``).
    """
    folder = redis_folder(data_dir)
    try:
        address = (folder / _ADDRESS_NAME).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return _with_password(address, _read_password(folder / _PASSWORD_NAME))


def _with_password(address: str, password: str) -> str:
    # In the user part (not "?password="): where redact() looks, and where kombu reads it.
    parts = urlsplit(address)
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}"))


def redis_password(data_dir: Path) -> str:
    """The embedded Redis's password, made on first use: random, in a file only its owner may read.

    The file is created whole under a temporary name with mode 0600 and then linked into place, so it
    is never readable by others nor seen half-written, and two callers at once agree on one password.
    """
    folder = redis_folder(data_dir)
    _private_folder(folder)
    path = folder / _PASSWORD_NAME
    if not path.exists():
        temporary = folder / f".{_PASSWORD_NAME}.{os.getpid()}.{secrets.token_hex(8)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode() + b"\n")  # 256 bits
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # made meanwhile by another process: theirs is the password
        finally:
            os.unlink(temporary)
    return _read_password(path)


def _read_password(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise EmbeddedRedisError(
            f"the embedded Redis's password file {path} is missing; restart pcaq up to make a new one"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise EmbeddedRedisError(
                f"the embedded Redis's password file {path} may be read by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); delete it (pcaq up makes a new one) "
                "and check who else can read the data folder"
            )
        password = fh.read().decode("ascii", errors="replace").strip()
    if not password:
        raise EmbeddedRedisError(f"the embedded Redis's password file {path} is empty; delete it")
    return password


def _private_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # one made looser earlier, by hand or by an older pcaq, is tightened


@contextmanager
def _published(folder: Path, address: str) -> Iterator[None]:
    """Write where the running Redis listens (no secret in it) for :func:`embedded_redis_url`."""
    path = folder / _ADDRESS_NAME
    temporary = folder / f".{_ADDRESS_NAME}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(address + "\n")
    os.replace(temporary, path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def embedded_redis(data_dir: Path, prefer: str = AUTO) -> Iterator[EmbeddedRedis]:
    """Run a private Redis for the life of the ``with`` block and yield where it listens.

    ``prefer`` is ``"auto"`` (redis-server if on PATH, else fakeredis), ``"redis-server"`` or
    ``"fakeredis"``. Raises :class:`EmbeddedRedisError` when the chosen kind cannot start.
    """
    if prefer not in CHOICES:
        raise EmbeddedRedisError(f"unknown embedded Redis {prefer!r}; choose one of {', '.join(CHOICES)}")
    binary = shutil.which("redis-server")
    if prefer == REDIS_SERVER and binary is None:
        raise EmbeddedRedisError("redis-server is not on PATH; install Redis or set REDIS_URL")
    folder = redis_folder(data_dir)
    password = redis_password(data_dir)
    with ExitStack() as stack:
        stack.enter_context(_folder_lock(folder))
        if binary is not None and prefer != FAKEREDIS:
            address, running = stack.enter_context(_redis_server(binary, folder, password))
        else:
            address, running = stack.enter_context(_fakeredis_server(folder, password))
        stack.enter_context(_published(folder, address))
        yield running


# -- redis-server ---------------------------------------------------------------------------------


@contextmanager
def _redis_server(binary: str, folder: Path, password: str) -> Iterator[tuple[str, EmbeddedRedis]]:
    """Yield the address (no password) and the running redis-server; the caller holds the lock."""
    _stop_orphan(folder)
    proc, port = _start_redis_server(binary, folder, password)
    keeper = _Keeper(binary, folder, port, password, proc)
    try:
        keeper.start()
        log.info("embedded redis-server (pid %d) on 127.0.0.1:%d, data in %s", proc.pid, port, folder)
        sock = _socket_path(folder)
        # The socket when there is one: a command over it costs about half the CPU of one over TCP.
        address = f"unix://{sock}?db=0" if sock else f"redis://127.0.0.1:{port}/0"
        yield address, EmbeddedRedis(url=_with_password(address, password), kind=REDIS_SERVER, pid=proc.pid)
    finally:
        keeper.stop()


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    # Two redis-servers appending to one file would corrupt it: one embedded Redis per data folder.
    with open(folder / "lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedRedisError(
                f"another pcaq up is already running with the data folder {folder.parent}; "
                "stop it first, or set PCAQ_DATA_DIR to another folder"
            ) from None
        yield


def _stop_orphan(folder: Path) -> None:
    """Stop a redis-server left running on this folder by a pcaq up that was killed (we hold the lock)."""
    try:
        pid = int((folder / "redis.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except (OSError, ValueError):
        return
    if b"redis-server" not in cmdline or cwd != folder.resolve():
        return  # the pid file is stale and the number now belongs to someone else
    log.warning("stopping redis-server (pid %d) left running on %s by an earlier pcaq up", pid, folder)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_DEADLINE
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(_POLL)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


def _socket_path(folder: Path) -> Path | None:
    """Where the embedded Redis listens on a Unix socket, or None when the path would be too long."""
    path = folder.resolve() / _SOCKET_NAME
    return path if len(os.fsencode(path)) <= _MAX_SOCKET_PATH else None


def _redis_server_argv(binary: str, folder: Path, port: int) -> list[str]:
    sock = _socket_path(folder)
    unix = ["--unixsocket", str(sock), "--unixsocketperm", "700"] if sock else []
    return [
        binary,
        "-",  # first: the rest of the configuration (requirepass) comes on standard input
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--dir", str(folder),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
        "--save", "",
        "--pidfile", str(folder / "redis.pid"),
        "--logfile", str(folder / "redis.log"),
        "--daemonize", "no",
        *unix,
    ]  # fmt: skip


class _Keeper(threading.Thread):
    """Starts the embedded redis-server again, on the same data, port and socket, when it dies.

    A single-machine install heals itself: while Redis is gone the API answers 503 and the workers
    retry their connection; once it is back (its append-only file replayed) both carry on.
    """

    def __init__(self, binary: str, folder: Path, port: int, password: str, proc: subprocess.Popen):
        super().__init__(name="embedded-redis-keeper", daemon=True)
        self.binary, self.folder, self.port, self.proc = binary, folder, port, proc
        self._password = password
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            status = self.proc.wait()
            with self.lock:
                if self.stopping.is_set():
                    return
                log.warning(
                    "embedded redis-server (pid %d) exited with status %s; starting it again on %s",
                    self.proc.pid, status, self.folder,
                )  # fmt: skip
                self.proc = self._restart()

    def _restart(self) -> subprocess.Popen:
        delay = _POLL
        while True:  # keep trying: without Redis nothing works, and a transient cause may pass
            proc = _spawn(self.binary, self.folder, self.port, self._password)
            try:
                _wait_for_ping(proc, self.port, self._password)
                log.info("embedded redis-server (pid %d) is back on 127.0.0.1:%d", proc.pid, self.port)
                return proc
            except EmbeddedRedisError as exc:
                _stop_redis_server(proc)
                log.error("embedded redis-server did not start again (%s); retrying", exc)
                if self.stopping.wait(delay):
                    return proc
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        """Stop the current redis-server for good (flushing its append-only file)."""
        with self.lock:
            self.stopping.set()
            _stop_redis_server(self.proc)


def _spawn(binary: str, folder: Path, port: int, password: str) -> subprocess.Popen:
    # Own process group: a Ctrl-C at the terminal must not stop Redis before the workers are stopped.
    proc = subprocess.Popen(
        _redis_server_argv(binary, folder, port),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        process_group=0,
    )
    assert proc.stdin is not None
    try:
        # On standard input, not in argv: /proc/<pid>/cmdline (ps) shows argv to every local user.
        proc.stdin.write(f"requirepass {password}\n".encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it exited at once: _wait_for_ping reports its status
    return proc


def _start_redis_server(binary: str, folder: Path, password: str) -> tuple[subprocess.Popen, int]:
    last_error = ""
    for _ in range(3):  # the free port may be taken between our probe and redis's bind: try another
        port = free_port()
        proc = _spawn(binary, folder, port, password)
        try:
            _wait_for_ping(proc, port, password)
            return proc, port
        except EmbeddedRedisError as exc:
            last_error = str(exc)
            _stop_redis_server(proc)
    raise EmbeddedRedisError(f"{last_error}; see {folder / 'redis.log'}{_log_tail(folder / 'redis.log')}")


def _wait_for_ping(proc: subprocess.Popen, port: int, password: str) -> None:
    client = redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_connect_timeout=1, socket_timeout=1
    )
    deadline = time.monotonic() + _START_DEADLINE
    try:
        while True:
            if proc.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with status {proc.returncode} at start")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass  # not listening yet, or still loading its append-only file
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server did not answer PING within {_START_DEADLINE:.0f} s")
            time.sleep(_POLL)
    finally:
        client.close()


def _stop_redis_server(proc: subprocess.Popen) -> None:
    # SIGTERM makes Redis flush its append-only file before it exits.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            log.warning("redis-server (pid %d) did not stop in %.0f s; killing it", proc.pid, _STOP_DEADLINE)
            proc.kill()
            proc.wait()
        log.info("embedded redis-server (pid %d) stopped", proc.pid)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip() for line in tail)) if tail else ""


# -- fakeredis ------------------------------------------------------------------------------------


@contextmanager
def _fakeredis_server(folder: Path, password: str) -> Iterator[tuple[str, EmbeddedRedis]]:
    """Yield the address and the running in-process server; the caller holds the folder's lock."""
    try:
        import lupa  # noqa: F401  (our record store runs Lua scripts: fakeredis needs lupa for EVAL)
        from fakeredis import TcpFakeServer
    except ImportError as exc:
        raise EmbeddedRedisError(
            f"no redis-server on PATH and the fallback cannot run ({exc}); install Redis, "
            "or install fakeredis with Lua support (pip install 'fakeredis[lua]'), or set REDIS_URL"
        ) from exc

    class UnixFakeServer(TcpFakeServer):
        """fakeredis's server on a Unix socket: it ignores passwords, so the socket's folder is the lock."""

        address_family = socket.AF_UNIX

        def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
            # A Unix peer has no address; fakeredis keys its connections by it, so give each its own.
            conn, _ = self.socket.accept()
            return conn, (f"unix-{next(self.client_ids)}", 0)

    with ExitStack() as stack:
        sock = _socket_path(folder)
        if sock is None:  # too long a path for a socket: one in a private (0700) temporary folder
            sock = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pcaq-redis-"))) / _SOCKET_NAME
        sock.unlink(missing_ok=True)  # left by a pcaq up that was killed (we hold the lock)
        server = UnixFakeServer(str(sock))
        stack.callback(sock.unlink, missing_ok=True)
        stack.callback(server.server_close)
        os.chmod(sock, 0o600)
        # Not enforced by fakeredis, but clients send AUTH with the password and it must accept it.
        server.fake_server.config = {b"requirepass": password.encode()}
        thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
        thread.start()
        stack.callback(thread.join, _STOP_DEADLINE)
        stack.callback(server.shutdown)
        log.warning(
            "no redis-server on PATH: using the in-process fakeredis server on %s. It is slow "
            "(about 17 tasks/s) and keeps nothing on disk (every CA and certificate is lost when pcaq up "
            "stops): for trying pcaq only. Install Redis (redis-server) or set REDIS_URL for real use.",
            sock,
        )
        address = f"unix://{sock}?db=0"
        yield address, EmbeddedRedis(url=_with_password(address, password), kind=FAKEREDIS)
