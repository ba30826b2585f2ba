"""The archiver alone in a process of its own (``python -m tests.faults.archiver_process``), configured
by the environment as a worker's would be, so that a fault test can SIGKILL it mid-batch."""

from __future__ import annotations

import logging

from pcaq.platform.settings import load
from pcaq.records import Store
from pcaq.worker.archiver import Archiver

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    settings = load()
    Archiver(Store.from_settings(settings), settings).run()
