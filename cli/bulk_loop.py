"""``pcaq bulk-issue``'s calls from one thread: ``--concurrency`` keep-alive connections multiplexed
with ``selectors`` (the lean client's path).

With a thread per connection, every send, receive and file write hands Python's GIL from one thread
to another: ``strace -c`` counted about 50 ``futex`` calls a certificate, and on a machine busy with
other work they cost up to 1.7 ms of system time a certificate. One thread needs none of them. The
calls are the same as the threads make (``bulk_wire.LeanClient`` signs, encodes and judges each
answer; ``Issuer`` journals and writes), retried with the same backoff, which here is a time in a
heap rather than a sleep.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from pcaq.cli.bulk_wire import MAX_ATTEMPTS, Connection, LeanClient


@dataclass(order=True)
class _Retry:
    at: float
    seq: int
    call: _Call = field(compare=False)


@dataclass
class _Call:
    job: Any  # bulk_issue.Job
    poll: Any  # bulk_schedule.Poll, or None: IssueCertificate
    operation: str
    params: dict
    attempt: int = 0


def run(share, client: LeanClient, concurrency: int) -> None:
    """Make ``share``'s calls (``bulk_issue._Share``) over ``concurrency`` connections until it is done
    or stopped (calls in flight are answered first; retries not yet sent are left to a re-run)."""
    loop = _Loop(share, client, concurrency)
    try:
        loop.run()
    finally:
        loop.close()


class _Loop:
    def __init__(self, share, client: LeanClient, concurrency: int):
        self.share = share
        self.client = client
        self.issuer = share.issuer
        self.selector = selectors.DefaultSelector()
        self.free: list[Connection | None] = [None] * concurrency  # None: to open when needed
        self.calls: dict[Connection, _Call] = {}
        self.retries: list[_Retry] = []
        self.seq = itertools.count()

    def run(self) -> None:
        share = self.share
        while True:
            while self.free and not share.stop.is_set() and (call := self._next()) is not None:
                self._send(call)
            if not self.calls and (share.stop.is_set() or (not self.retries and share.done())):
                return
            timeout = 0.5
            if self.free:  # wake for the next poll or retry that falls due
                timeout = min(timeout, share.schedule.wait())
                if self.retries:
                    timeout = min(timeout, max(self.retries[0].at - time.monotonic(), 0.0))
            self.issuer.outputs.flush(due_only=bool(self.calls))  # idle: write what waits meanwhile
            if not self.calls:
                share.stop.wait(timeout)
                continue
            for key, _ in self.selector.select(timeout):
                if key.data in self.calls:
                    self._answered(key.data)
                else:  # an idle connection the server closed (or that says something unasked)
                    self._drop(key.data)
                    self.free[self.free.index(key.data)] = None

    def _next(self) -> _Call | None:
        if self.retries and self.retries[0].at <= time.monotonic():
            return heapq.heappop(self.retries).call
        if (task := self.share.next_call()) is None:
            return None
        job, poll = task
        if poll is None:
            return _Call(job, None, "IssueCertificate", self.issuer.issue_request(job))
        return _Call(job, poll, "GetCertificate", self.issuer.collect_request(poll.arn))

    def _send(self, call: _Call) -> None:
        conn = self.free.pop()
        call.attempt += 1
        try:
            if conn is None or conn.closed:
                conn = self.client.connect()
                # Registered for as long as it is open, not per call: two epoll_ctl calls a request saved.
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            conn.sock.sendall(self.client.encode(call.operation, call.params))
        except OSError as exc:
            if conn is not None:
                self._drop(conn)
            self.free.append(None)
            self._attempt_failed(call, exc, conn)
            return
        self.calls[conn] = call

    def _answered(self, conn: Connection) -> None:
        call = self.calls.pop(conn)
        try:
            status, body = conn.response()
        except (OSError, ValueError, IndexError) as exc:  # reset, timed out, garbled
            self._drop(conn)
            self.free.append(None)
            self._attempt_failed(call, exc, conn)
            return
        if conn.closed:  # the server said Connection: close
            self._drop(conn)
        self.free.append(None if conn.closed else conn)
        judged = self.client.judge(call.operation, status, body, call.attempt)
        if judged is None:
            self._retry(call)
        else:
            self._finish(call, judged)

    def _attempt_failed(self, call: _Call, exc: Exception, conn: Connection | None) -> None:
        if conn is not None and conn.stale(exc):  # the server had closed it: again at once, not counted
            call.attempt -= 1
            heapq.heappush(self.retries, _Retry(time.monotonic(), next(self.seq), call))
        elif call.attempt >= MAX_ATTEMPTS:
            error = self.client.unreachable(exc)
            self.share.record(call.job, call.poll, "failed", f"{type(error).__name__}: {error}")
        else:
            self._retry(call)

    def _retry(self, call: _Call) -> None:
        at = time.monotonic() + self.client.backoff(call.attempt)
        heapq.heappush(self.retries, _Retry(at, next(self.seq), call))

    def _finish(self, call: _Call, answer: dict | ClientError) -> None:
        if call.poll is None:
            outcome, detail = self.issuer.issued(call.job, answer)
        else:
            outcome, detail = self.issuer.collected(call.job, call.poll.arn, answer)
        self.share.record(call.job, call.poll, outcome, detail)

    def _drop(self, conn: Connection) -> None:
        """Close ``conn``, out of the selector first (a closed socket's number is reused)."""
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass  # never registered: its connect or first send failed
        conn.close()

    def close(self) -> None:
        for conn in [*self.free, *self.calls]:
            if conn is not None:
                self._drop(conn)
        self.selector.close()
