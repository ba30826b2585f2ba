"""What tasks use, built once per process: the store, the queue, the key vault."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import signals

from pcaq.ca.authorities import Authorities
from pcaq.ca.key_store import CaKeys
from pcaq.ca.pkcs11_token import Token
from pcaq.ca.vault import EncryptedRedisVault, KeyVault, load_master_key, verify_master_key
from pcaq.platform.queue import Queue
from pcaq.platform.settings import Settings
from pcaq.records import Store
from pcaq.worker.app import app, settings


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
    store = Store.from_settings(settings)
    kek, _ = load_master_key(settings, create=False)
    verify_master_key(store, kek)
    queue = Queue(app)
    vault = CaKeys(store, EncryptedRedisVault(store, kek), token_of(settings))
    return Services(settings, store, queue, vault, Authorities(store, queue, settings))


@functools.cache
def token_of(settings: Settings) -> Token | None:
    """The process's PKCS#11 token (None without one): its session opens on first use, in the
    process that signs (see pcaq.worker.app for the fork)."""
    if not settings.token_configured:  # the settings require label and PIN with a module
        return None
    return Token(settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_pin)


@signals.worker_process_init.connect
def _own_token_session(**_: object) -> None:
    """A pool child starts without its parent's PKCS#11 session: a library's sessions must not be
    shared across fork. The child opens its own, and logs in, at its first signature."""
    token = token_of(settings)
    if token is not None:
        token.forget()
