"""The worker's background thread: a heartbeat (read by ``/readyz``) and, for the one worker that holds
the fleet-wide sweep lock, the sweeper that re-queues work left behind. Beside it runs the archiver
(worker/archiver.py), in a thread of its own so that a slow archive never delays the heartbeat.

Started in the worker's main process when Celery says the worker is ready; stopped at shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import signals

from pcaq.records import STORE_DOWN
from pcaq.worker.app import settings
from pcaq.worker.archiver import Archiver
from pcaq.worker.services import services
from pcaq.worker.sweeper import sweep

log = logging.getLogger("pcaq.worker")
_stop = threading.Event()
_archiver: list[Archiver] = []  # the running one, once the worker is ready


def _background_loop() -> None:
    """Heartbeat every few seconds; sweep every ``sweep_interval`` while this worker holds the lock."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    svc = services()
    last_sweep = 0.0
    while not _stop.is_set():
        try:
            svc.store.heartbeat(name)
            svc.store.sample_backlog()  # the console's "requests pending" chart (one script call)
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


@signals.worker_ready.connect
def _start_background(**_: object) -> None:
    threading.Thread(target=_background_loop, name="pcaq-heartbeat", daemon=True).start()
    archiver = Archiver(services().store, settings)
    _archiver.append(archiver)
    archiver.start()


@signals.worker_shutdown.connect
def _stop_background(**_: object) -> None:
    _stop.set()
    for archiver in _archiver:
        archiver.stop.set()
