"""Foreground process supervision for ``pcaq up``: start, watch, restart and stop child processes.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only ``pcaq up``, which
then stops the children in order (SIGTERM to each group leader, which stops its own workers, then
SIGKILL to whatever is left after a timeout). A child that dies unexpectedly is restarted with an
exponential back-off; one that keeps dying soon after it starts stops the whole run with status 1,
so a broken install fails loudly instead of looping forever.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """How to run one supervised process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None: inherit pcaq up's environment


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again, and when the supervisor gives up."""

    min_uptime: float = 10.0  # a child that dies sooner than this "died at start"
    max_start_failures: int = 5  # give up after this many deaths at start in a row
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows ``failures`` deaths in a row."""
        return min(self.backoff_max, self.backoff_initial * 2 ** max(0, failures - 1))


class StopSignals:
    """Turns SIGINT/SIGTERM into a stop request and lets the main loop sleep until something happens.

    Signals wake :meth:`wait` through a pipe (``signal.set_wakeup_fd``), so a stop request or a child's
    death (SIGCHLD) is handled at once rather than at the next poll. Must be created on the main thread.
    """

    def __init__(self) -> None:
        self.count = 0  # stop requests received; a second one means "kill now"
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        self._previous_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.count += 1

    @property
    def requested(self) -> bool:
        """True once SIGINT or SIGTERM arrived."""
        return self.count > 0

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, returning early when any handled signal arrives."""
        select.select([self._r], [], [], max(0.0, timeout))
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Restore the previous handlers."""
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._r)
        os.close(self._w)


class _GiveUp(Exception):
    """A child cannot be kept running; the supervisor stops everything."""


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # deaths at start in a row
    restart_at: float = 0.0

    def exited(self) -> bool:
        """True once the leader has exited, without reaping it.

        An unreaped (zombie) leader keeps its pid, and so its process group id, from being reused:
        until :meth:`reap`, signalling the group cannot hit an unrelated process.
        """
        if self.proc is None or self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def kill_group(self) -> None:
        """SIGKILL everything left in the child's process group (call before :meth:`reap`)."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # the group is already empty

    def reap(self) -> int:
        """Wait for the leader and return its Popen return code."""
        assert self.proc is not None
        return self.proc.wait()


def describe_exit(returncode: int) -> str:
    """'exited with status 3' or 'was killed by SIGKILL', from a Popen return code."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    """Runs a fixed set of children in the foreground until asked to stop."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        signals: StopSignals,
        *,
        policy: RestartPolicy | None = None,
        stop_timeout: float = 20.0,
    ):
        self._children = [_Child(spec) for spec in children]
        self._signals = signals
        self._policy = policy or RestartPolicy()
        self._stop_timeout = stop_timeout

    def pids(self) -> dict[str, int]:
        """The pid of each running child, by name."""
        return {c.spec.name: c.proc.pid for c in self._children if c.proc is not None and not c.exited()}

    def run(self) -> int:
        """Start every child and supervise until a stop signal (returns 0) or a child that keeps
        dying at start (returns 1). Every child is stopped before this returns."""
        try:
            for child in self._children:
                self._start(child)
            while not self._signals.requested:
                now = time.monotonic()
                for child in self._children:
                    if child.proc is not None and child.exited():
                        self._handle_death(child, now)
                    if child.proc is None and now >= child.restart_at:
                        self._start(child)
                self._signals.wait(self._next_wakeup())
            log.info("stopping (signal received)")
            return 0
        except _GiveUp:
            return 1
        finally:
            self._stop_all()

    def _next_wakeup(self) -> float:
        waiting = [c.restart_at for c in self._children if c.proc is None]
        until_restart = min(waiting) - time.monotonic() if waiting else 1.0
        return min(1.0, max(0.0, until_restart))  # poll at least once a second as a safety net

    def _start(self, child: _Child) -> None:
        env = dict(child.spec.env) if child.spec.env is not None else None
        try:
            # process_group=0: the child leads a new group, out of reach of the terminal's Ctrl-C.
            child.proc = subprocess.Popen(
                list(child.spec.argv), env=env, stdin=subprocess.DEVNULL, process_group=0
            )
        except OSError as exc:
            # A missing or unrunnable program will not fix itself: no point in retrying.
            log.error("cannot start %s (%s): %s; stopping pcaq", child.spec.name, child.spec.argv[0], exc)
            raise _GiveUp from exc
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.spec.name, child.proc.pid)

    def _handle_death(self, child: _Child, now: float) -> None:
        """Clean up after a child that died on its own and schedule its restart (or give up)."""
        proc = child.proc
        assert proc is not None
        uptime = now - child.started_at
        # The leader is gone; whatever it left in its group (pool processes) goes with it.
        child.kill_group()
        child.reap()
        child.proc = None
        child.failures = child.failures + 1 if uptime < self._policy.min_uptime else 1
        if uptime < self._policy.min_uptime and child.failures >= self._policy.max_start_failures:
            log.error(
                "%s keeps dying at start (%d times in a row, last: %s after %.1f s); stopping pcaq. "
                "See its output above.",
                child.spec.name,
                child.failures,
                describe_exit(proc.returncode),
                uptime,
            )
            raise _GiveUp
        delay = self._policy.delay(child.failures)
        log.warning(
            "%s (pid %d) %s after %.1f s; restarting it in %.1f s",
            child.spec.name,
            proc.pid,
            describe_exit(proc.returncode),
            uptime,
            delay,
        )
        child.restart_at = now + delay

    def _stop_all(self) -> None:
        running = [c for c in self._children if c.proc is not None and not c.exited()]
        for child in running:
            assert child.proc is not None
            # To the leader only: granian and celery stop their own workers gracefully on SIGTERM.
            os.kill(child.proc.pid, signal.SIGTERM)  # not Popen.send_signal: that may reap the leader
        deadline = time.monotonic() + self._stop_timeout
        # Stopping on a signal: a second one kills now (also one that came before we got here).
        requests = min(self._signals.count, 1)
        while not all(c.exited() for c in running):
            if time.monotonic() >= deadline:
                log.warning("children did not stop within %.0f s; killing them", self._stop_timeout)
                break
            if self._signals.count > requests:
                log.warning("second stop request: killing the children now")
                break
            self._signals.wait(0.1)
        for child in self._children:
            if child.proc is not None:
                child.kill_group()  # leftovers, or leaders that ignored SIGTERM
                child.reap()
        for child in running:
            assert child.proc is not None
            log.info("%s (pid %d) %s", child.spec.name, child.proc.pid, describe_exit(child.proc.returncode))
