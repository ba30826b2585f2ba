"""A PostgreSQL server of a fault test's own (initdb in a temporary folder, a free port), so that it
can be killed with SIGKILL and started again on the same data without touching anyone else's.
:meth:`PostgresServer.stop` removes its folder."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support import free_port, wait_until


def bin_dir() -> Path | None:
    """The folder of initdb and postgres (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    """``postgres`` on 127.0.0.1 in ``folder``; as the ``postgres`` user when the tests run as root
    (the server refuses to run as root)."""

    def __init__(self):
        binaries = bin_dir()
        assert binaries is not None, "PostgreSQL's initdb is not installed (.ci/run installs it)"
        self.bin = binaries
        # A folder of its own under /tmp: pytest's tmp_path may not be reachable by the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="pcaq-test-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"])

    def _run(self, argv: list[str]) -> None:
        subprocess.run([*self._as, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart after a kill: crash recovery runs) and wait until it answers."""
        argv = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
            "-k", str(self.folder), "-c", "fsync=on", "-c", "shared_buffers=16MB",
        ]  # fmt: skip
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the server keeps writing to it
        self.proc = subprocess.Popen([*self._as, *argv], stdout=log, stderr=log, process_group=0)
        wait_until(self._answers, timeout=timeout, interval=0.1, what=f"postgres on port {self.port}")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {(self.folder / 'postgres.log').read_text()[-2000:]}")
        try:
            with psycopg.connect(self.url, connect_timeout=1) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole server (postmaster and backends: no shutdown checkpoint)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        # Its backends leave with it; a restart must not find their shared memory still attached.
        wait_until(lambda: not (self.data / "postmaster.pid").exists() or self._stale_pid(), timeout=20)

    def _stale_pid(self) -> bool:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
            return False
        except (OSError, ValueError, IndexError):
            return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
