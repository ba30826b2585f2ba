"""When ``pcaq bulk-issue`` sends each CSR and polls for each certificate (one process's share).

CSRs are sent while earlier certificates are being signed; each certificate is polled after a first
wait that follows the service's pace, then with the wait doubling to ``LAST_POLL``.

The service signs requests about in the order they came. So when a poll answers "in progress", the
certificates asked for after it are not ready either: polls pause for ``HOLD``, then one poll at a
time goes out (a probe) until one answers with a certificate. Without this, a run against `pcaq up`
made 2.3 GetCertificate calls per certificate (each an answer "in progress" for a certificate that
could not be ready); threads held back from polling send new CSRs meanwhile.

For the same reason, a probe that brings a certificate brings forward every certificate asked for
before it (they are ready too, whatever their backed-off times said). And once every CSR is sent,
probes go out without waiting for the polls' times, one at a time, the pause after an answer "in
progress" growing from ``HOLD`` to ``LAST_PROBE``: without that, the last certificates of a run
waited for their first poll, or a backed-off one, up to 0.4 s after they were signed (a sixth of a
3,000-certificate run).
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
    delay: float = field(compare=False)  # the wait before this poll if it is a retry, else 0
    issued_at: float | None = field(compare=False)  # when IssueCertificate answered (None: an earlier run)


FIRST_POLL = 0.05  # seconds after IssueCertificate: a drain signs a request within tens of ms
LAST_POLL = 2.0  # the longest wait between two polls of one certificate
HOLD = 0.02  # after an answer "in progress", the pause before the next poll (of any certificate)
LAST_PROBE = 0.08  # once every CSR is sent, the longest pause between two probes (12 a second)
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
        self._hold_until = 0.0  # no poll before this (an answer "in progress" came just before)
        self._probing = False  # since that answer: one poll at a time until a certificate comes
        self._probe_out = False  # that one poll is being made
        self._hold = HOLD  # the pause after an answer "in progress" (grows once every CSR is sent)

    def _push(self, job: J, arn: str, after: float, issued_at: float | None, retry: bool = False) -> None:
        at = time.monotonic() + after
        heapq.heappush(self._polls, Poll(at, next(self._seq), job, arn, after if retry else 0.0, issued_at))

    def first_wait(self) -> float:
        """Seconds from an IssueCertificate answer to the first poll of its certificate."""
        return min(max(0.8 * self._collected_after, FIRST_POLL), LAST_POLL)

    def journalled(self, job: J, arn: str) -> None:
        """Poll at once a certificate an earlier run asked for (its ARN is in the journal)."""
        self._push(job, arn, 0.0, None)

    def signing(self, job: J, arn: str, last: Poll | None) -> None:
        """Poll a certificate being signed: after :meth:`first_wait` if IssueCertificate has just
        answered (``last`` None); if poll ``last`` answered "in progress", again after ``HOLD``, then
        with the wait doubling (to ``LAST_POLL``), and every poll pauses for ``HOLD`` then probes."""
        if last is None:
            self._push(job, arn, self.first_wait(), time.monotonic())
            return
        self._push(job, arn, min(max(last.delay * 2, HOLD), LAST_POLL), last.issued_at, retry=True)
        if self._probing and not self._more:  # nothing left to send: each probe waits longer
            self._hold = min(self._hold * 2, LAST_PROBE)
        self._hold_until = time.monotonic() + self._hold
        self._probing, self._probe_out = True, False

    def collected(self, poll: Poll | None) -> None:
        """A certificate came (from ``poll``): its age feeds the first wait (a first poll a little before
        the usual age, so that the service's own pace, not the polling, sets when it is collected)."""
        if poll is not None:
            if self._probing or poll.delay:  # it answered "in progress" before: the service caught up
                self._bring_forward(poll.issued_at)
            self._probing = self._probe_out = False  # the service has caught up with this one
            self._hold = HOLD
        if poll is not None and poll.issued_at is not None:
            age = time.monotonic() - poll.issued_at
            self._collected_after = 0.9 * self._collected_after + 0.1 * age

    def _bring_forward(self, issued_at: float | None) -> None:
        """Poll now the certificates asked for no later than ``issued_at`` (signed in about that order)."""
        if issued_at is None:
            return
        now, moved = time.monotonic(), False
        for poll in self._polls:
            if poll.at > now and poll.issued_at is not None and poll.issued_at <= issued_at:
                poll.at, moved = now, True
        if moved:
            heapq.heapify(self._polls)

    def failed(self, poll: Poll | None) -> None:
        """A call ended in an error (no certificate to poll any more): a probe may go out again."""
        if poll is not None:
            self._probe_out = False

    def due(self) -> Poll | None:
        """The poll whose time has come, taken off the schedule; None if none has (or while polls
        pause after an answer "in progress", or a probe is out)."""
        now = time.monotonic()
        if not self._polls or now < self._hold_until:
            return None
        if self._polls[0].at > now:
            if self._more or self._probe_out:  # not due; nor a late probe (every CSR sent, none out)
                return None
            self._probing = True
        if self._probing:
            if self._probe_out:
                return None
            self._probe_out = True
        return heapq.heappop(self._polls)

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
        if not self._polls or self._probe_out:  # (a probe's answer wakes the caller: no spinning)
            return 0.5
        due = self._polls[0].at if self._more else 0.0  # every CSR sent: a late probe at the hold's end
        return min(max(max(due, self._hold_until) - time.monotonic(), 0.0), 0.5)
