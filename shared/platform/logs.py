"""Log output of the API and the workers, configured in one place: text for people, JSON for machines.

``PCAQ_LOG_FORMAT=json`` makes every pcaq log line one JSON object (time, level, logger, message,
request_id when there is one, and any ``extra=`` fields), which log shippers index without parsing.
The request id is the one the API returns in ``x-amzn-RequestId``; the API sets it for the duration
of a request (:func:`set_request_id`) and the worker logs it from the certificate request document, so
one id finds a request's lines on both sides.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_request_id: ContextVar[str | None] = ContextVar("pcaq_request_id", default=None)

# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The request id of the API request being served in this context, if any."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> None:
    """Make ``request_id`` the current one for log lines in this context (the API sets it per request)."""
    _request_id.set(request_id)


class Every:
    """Lets a repetitive log line through at most once per ``seconds``, counting the ones held back."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._next = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def due(self) -> int | None:
        """None to hold this line back, else how many were held back since the last one let through."""
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._held += 1
                return None
            self._next = now + self.seconds
            held, self._held = self._held, 0
            return held


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            doc["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in doc:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class _PcaqHandler(logging.StreamHandler):
    """The handler :func:`configure` installs (marked so that configuring again replaces it)."""


def configure(log_format: str, level: str | int, stream: TextIO | None = None) -> None:
    """Send the root logger's output to ``stream`` (stderr) as ``json`` or ``text`` lines at ``level``.

    Safe to call more than once (the last call wins). In text mode, logging that someone else
    configured is left alone; JSON mode replaces it so that no line comes out twice in two formats.
    """
    root = logging.getLogger()
    handler = _PcaqHandler(stream or sys.stderr)
    if log_format == JSON:
        handler.setFormatter(JsonFormatter())
        root.handlers = [handler]
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        others = [h for h in root.handlers if not isinstance(h, _PcaqHandler)]
        if others:  # someone (a test runner, an embedding program) configured logging: leave it be
            root.handlers = others
            return
        root.handlers = [handler]
    root.setLevel(most_verbose(level))


def most_verbose(*levels: str | int) -> int:
    """The most verbose of several level names or numbers (unknown names count as INFO)."""
    numbers = []
    for level in levels:
        number = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
        numbers.append(number if isinstance(number, int) else logging.INFO)
    return min(numbers)
