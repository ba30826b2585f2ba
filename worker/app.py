"""The Celery application (``celery -A worker.app:app worker``).

Besides the tasks, the worker's main process runs one background thread that writes a heartbeat
(read by ``/readyz``) and, when it holds the fleet-wide sweep lock, re-queues work left behind.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import signals

from shared import logs
from shared.queue import make_celery
from shared.settings import load

settings = load()
app = make_celery(settings)
app.conf.imports = ("worker.tasks", "worker.revocation_tasks", "worker.urgent")

log = logging.getLogger("pcaq.worker")
_stop = threading.Event()


def _background_loop() -> None:
    from shared.records import STORE_DOWN
    from worker.services import services
    from worker.sweeper import sweep

    name = f"{socket.gethostname()}:{os.getpid()}"
    svc = services()
    last_sweep = 0.0
    while not _stop.is_set():
        try:
            svc.store.heartbeat(name)
            now = svc.clock()
            if now - last_sweep >= settings.sweep_interval:
                last_sweep = now
                if svc.store.try_sweep_lock(name, settings.sweep_interval):
                    sweep(svc)
        except STORE_DOWN:
            log.warning("Redis is not reachable; heartbeat and sweep will retry")
        except Exception:  # noqa: BLE001 - the loop must survive anything
            log.exception("background loop failed; continuing")
        _stop.wait(min(5.0, settings.sweep_interval))


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


@signals.worker_ready.connect
def _start_background(**_: object) -> None:
    threading.Thread(target=_background_loop, name="pcaq-heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_background(**_: object) -> None:
    _stop.set()
