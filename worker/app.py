"""The Celery application (``celery -A pcaq.worker.app:app worker``): configuration and logging only.

This module is the bottom of the worker package: tasks, services and the background loop import the
app, never the other way round. Celery imports the task modules named in ``app.conf.imports`` when
the worker starts.
"""

from __future__ import annotations

import logging
import os

from celery import signals

from pcaq.platform import logs
from pcaq.platform.queue import make_celery
from pcaq.platform.settings import load

settings = load()
app = make_celery(settings)
app.conf.imports = (
    "pcaq.worker.tasks",
    "pcaq.worker.revocation_tasks",
    "pcaq.worker.urgent",
    "pcaq.worker.background",
)


def _pcaq_log_level() -> None:
    """PCAQ_LOG_LEVEL governs pcaq's own lines (celery --loglevel governs Celery's)."""
    logging.getLogger("pcaq").setLevel(logs.most_verbose(settings.log_level))


if settings.log_format == logs.JSON:

    @signals.setup_logging.connect
    def _json_logging(loglevel: int | str | None = None, **_: object) -> None:
        # A receiver of setup_logging makes Celery leave logging to us: every line becomes JSON.
        logs.configure(logs.JSON, loglevel or settings.log_level)
        _pcaq_log_level()

else:

    @signals.after_setup_logger.connect
    def _text_logging(**_: object) -> None:
        _pcaq_log_level()


@signals.worker_init.connect
def _lower_priority(**_: object) -> None:
    """Where the API and the workers share CPUs, requests are answered first: signing is batch work
    and catches up in between (larger batches, less overhead per certificate), while an answer that
    waits behind a signing batch is latency a client sees. The pool processes inherit it."""
    if settings.worker_nice:
        os.nice(settings.worker_nice)
