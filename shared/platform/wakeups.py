"""Best-effort wake-ups: messages that only ask a worker to look at work already recorded in Redis.

A drain, a CA's key generation, a CRL rebuild or an audit report is recorded before its message is
sent, and the sweeper re-asks for whatever is left waiting. So a message that cannot be sent (the
broker is down) must not turn an accepted request into an error: :func:`wake` sends it, and on a
failure counts it in ``pcaq_wakeups_failed_total{task=...}`` and logs a warning, at most one line per
``LOG_EVERY_SECONDS`` per task, naming the task and the error's type only (never the message's
arguments, nor the error's text, which may carry the broker's address).

The counter lives in this process (no Redis round trip, which a broker outage would also break); the
API's processes pool it with their request counters in PROMETHEUS_MULTIPROC_DIR (see pcaq.api.metrics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from pcaq.platform import logs
from pcaq.platform.queue import AUDIT_REPORT_TASK, CREATE_CA_KEY_TASK, CRL_TASK, DRAIN_TASK

log = logging.getLogger("pcaq.wakeups")

LOG_EVERY_SECONDS = 5.0  # during a broker outage: one line per task per 5 s, not one per request

# The wake-ups the API sends; /metrics shows each at 0 until one fails.
TASKS = (DRAIN_TASK, CREATE_CA_KEY_TASK, CRL_TASK, AUDIT_REPORT_TASK)

FAILED = Counter(
    "pcaq_wakeups_failed",
    "Wake-up messages that could not be sent, by task (the sweeper asks again for the work).",
    ["task"],
)

_limits: dict[str, logs.Every] = {}


def _clock() -> float:
    return time.monotonic()


def wake(task: str, send: Callable[..., object], *args: object) -> bool:
    """Call ``send(*args)``, the Queue method that sends ``task``'s message; True if it was sent.

    On any failure: count it, log a rate-limited warning and return False; the work stays recorded
    and the sweeper asks for it again."""
    try:
        send(*args)
        return True
    except Exception as exc:  # noqa: BLE001 - best effort: every failure means "not sent"
        FAILED.labels(task).inc()
        limit = _limits.get(task)
        if limit is None:
            limit = _limits.setdefault(task, logs.Every(LOG_EVERY_SECONDS, clock=lambda: _clock()))
        held = limit.due()
        if held is not None:
            log.warning(
                "could not send a %s wake-up (%s); the sweeper asks again (%d more since the last such line)",
                task,
                type(exc).__name__,
                held,
                extra={"task": task, "error_type": type(exc).__name__},
            )
        return False


def declare() -> None:
    """Make every wake-up task's counter exist at 0, so /metrics shows it before any failure."""
    for task in TASKS:
        FAILED.labels(task)
