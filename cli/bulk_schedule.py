"""When ``pcaq bulk-issue`` sends each CSR and polls for each certificate (one process's share).

CSRs are sent while earlier certificates are being signed; each certificate is polled after a first
wait that follows the service's pace, then with the wait doubling to ``LAST_POLL``.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

J = TypeVar("J")  # a job: the CSR to issue (``bulk_issue.Job``)


@dataclass(order=True)
class Poll(Generic[J]):
    """A certificate being issued, to ask for again at ``at`` (then ``delay`` later, doubling)."""

    at: float
    seq: int
    job: J = field(compare=False)
    arn: str = field(compare=False)
    delay: float = field(compare=False)
    issued_at: float | None = field(compare=False)  # when IssueCertificate answered (None: an earlier run)


FIRST_POLL = 0.05  # seconds after IssueCertificate: a drain signs a request within tens of ms
LAST_POLL = 2.0  # the longest wait between two polls of one certificate
MAX_POLLS_PER_THREAD = 256  # certificates being signed, per thread, before new CSRs wait (bounded memory)


class Schedule(Generic[J]):
    """What a run has still to do: CSRs not sent yet, and certificates being signed, each with the
    time to poll it next (a first wait after its IssueCertificate, then doubling to ``LAST_POLL``).

    The first wait follows how long certificates have taken to be collected (a moving average, from
    ``FIRST_POLL`` up to ``LAST_POLL``): when the service has a backlog (several processes or tools
    feeding one CA), polling every certificate at 50, 100, 200 ms... would cost both sides a call
    that answers "in progress" for each step of the wait.
    """

    def __init__(self, todo: list[J], max_polls: int):
        self._queue: Iterator[J] = iter(todo)
        self._more = True  # the queue may hold more jobs
        self._polls: list[Poll] = []
        self._seq = itertools.count()
        self._max_polls = max_polls
        self._collected_after = FIRST_POLL  # moving average of the age at which certificates came

    def _push(self, job: J, arn: str, after: float, issued_at: float | None) -> None:
        at = time.monotonic() + after
        heapq.heappush(self._polls, Poll(at, next(self._seq), job, arn, after, issued_at))

    def first_wait(self) -> float:
        """Seconds from an IssueCertificate answer to the first poll of its certificate."""
        return min(max(0.8 * self._collected_after, FIRST_POLL), LAST_POLL)

    def journalled(self, job: J, arn: str) -> None:
        """Poll at once a certificate an earlier run asked for (its ARN is in the journal)."""
        self._push(job, arn, 0.0, None)

    def signing(self, job: J, arn: str, last: Poll | None) -> None:
        """Poll again a certificate being signed: after :meth:`first_wait` if IssueCertificate has just
        answered (``last`` None) or a journalled one was found in progress, else after ``last``'s wait
        doubled."""
        if last is None:
            self._push(job, arn, self.first_wait(), time.monotonic())
        else:
            after = min(last.delay * 2, LAST_POLL) if last.delay else self.first_wait()
            self._push(job, arn, after, last.issued_at)

    def collected(self, poll: Poll | None) -> None:
        """A certificate came (from ``poll``): its age feeds the first wait (a first poll a little before
        the usual age, so that the service's own pace, not the polling, sets when it is collected)."""
        if poll is not None and poll.issued_at is not None:
            age = time.monotonic() - poll.issued_at
            self._collected_after = 0.9 * self._collected_after + 0.1 * age

    def due(self) -> Poll | None:
        """The poll whose time has come, taken off the schedule; None if none has."""
        if self._polls and self._polls[0].at <= time.monotonic():
            return heapq.heappop(self._polls)
        return None

    def next_job(self) -> J | None:
        """The next CSR to send; None when none is left, or while so many are being signed."""
        if not self._more or len(self._polls) >= self._max_polls:
            return None
        job = next(self._queue, None)
        self._more = job is not None
        return job

    def finished(self) -> bool:
        """Nothing left to send and nothing being signed."""
        return not (self._polls or self._more)

    def wait(self) -> float:
        """Seconds until the next poll falls due (at most 0.5: the loop also watches for a stop)."""
        return min(max(self._polls[0].at - time.monotonic(), 0.0), 0.5) if self._polls else 0.5
