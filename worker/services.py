"""What tasks use, built once per process: the store, the queue, the key vault."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pcaq.ca.authorities import Authorities
from pcaq.ca.vault import EncryptedRedisVault, KeyVault, load_master_key, verify_master_key
from pcaq.platform.queue import Queue
from pcaq.platform.settings import Settings, load
from pcaq.records import Store
from pcaq.worker.app import app


@dataclass
class Services:
    """The worker's view of the domain."""

    settings: Settings
    store: Store
    queue: Queue
    vault: KeyVault
    authorities: Authorities
    clock: Callable[[], float] = field(default=time.time)


@functools.cache
def services() -> Services:
    """The process-wide services (after a fork each child builds its own connections)."""
    settings = load()
    store = Store.from_settings(settings)
    kek, _ = load_master_key(settings, create=False)
    verify_master_key(store, kek)
    queue = Queue(app)
    return Services(
        settings, store, queue, EncryptedRedisVault(store, kek), Authorities(store, queue, settings)
    )
