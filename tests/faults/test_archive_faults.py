"""SIGKILL the archiver, PostgreSQL and Redis while records stream in and retention removes them:
afterwards the archive holds every record exactly once, byte for byte, and Redis holds none of them
(each was archived before it left)."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pcaq.platform.settings import load
from pcaq.records import Store, keys, member_of
from tests.archive_db import needs_postgres
from tests.faults.postgres_server import PostgresServer
from tests.support import wait_until

pytestmark = [pytest.mark.faults, needs_postgres]

RECORDS = 3000
BATCH = 20
CA = "ca-faults"


def expired_certificate() -> bytes:
    """A certificate whose Not After has passed: retention removes its record as soon as it is archived."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "archive fault")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class Producer(threading.Thread):
    """Submits, claims and commits records in batches at a steady pace; holds still while paused."""

    def __init__(self, store: Store, der: bytes):
        super().__init__(daemon=True)
        self.store, self.der = store, der
        self.go = threading.Event()
        self.go.set()
        self.idle = threading.Event()  # set while it holds still (paused)
        self.done: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for first in range(0, RECORDS, BATCH):
                if not self.go.is_set():
                    self.idle.set()
                    self.go.wait()
                    self.idle.clear()
                serials = [f"{n:06x}" for n in range(first, first + BATCH)]
                for serial in serials:
                    assert self.store.submit_certificate(CA, "123456789012", serial, b"{}", None)
                leased = self.store.claim_ready("producer", BATCH)
                assert self.store.commit("producer", [(m, True, self.der) for m, _ in leased]) == BATCH
                self.done.extend(member_of(CA, s) for s in serials)
                time.sleep(0.02)  # pacing of a steady load (~1,000 records a second), not a wait
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_sigkill_of_the_archiver_postgres_and_redis_loses_and_doubles_nothing(redis_server, tmp_path):
    redis_srv = redis_server(appendfsync="always")
    pg = PostgresServer()
    pg.start()
    env = {
        **os.environ,
        "REDIS_URL": redis_srv.url,
        "PCAQ_ARCHIVE_URL": pg.url,
        "PCAQ_ARCHIVE_BATCH": "40",
        "PCAQ_RETENTION_AFTER_EXPIRY": "1s",
        "PCAQ_DATA_DIR": str(tmp_path / "data"),
    }
    settings = load({"REDIS_URL": redis_srv.url})
    store = Store.from_settings(settings)
    log = open(tmp_path / "archiver.log", "ab")  # noqa: SIM115 - closed at the end

    def start_archiver() -> subprocess.Popen:
        argv = [sys.executable, "-m", "tests.faults.archiver_process"]
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log)

    def archived() -> int:
        try:
            return store.retention_counts().archived
        except Exception:  # noqa: BLE001 - Redis may be restarting
            return 0

    archiver = start_archiver()
    producer = Producer(store, expired_certificate())
    producer.start()
    try:
        wait_until(lambda: archived() > 500, timeout=60, what="500 records archived")
        archiver.send_signal(signal.SIGKILL)  # mid-batch: its write may or may not have committed
        archiver.wait(10)
        archiver = start_archiver()  # a new one takes the lock once the old one's lapses (10 s)

        wait_until(lambda: archived() > 1000, timeout=90, what="1,000 records archived")
        pg.kill()
        wait_until(
            lambda: store.retention_counts().last_failure > store.retention_counts().last_ok,
            timeout=30,
            what="the archiver noticing PostgreSQL is gone",
        )
        # While it is down, records wait in Redis: the archiver tries again, fails again, archives nothing.
        down = store.retention_counts()
        wait_until(
            lambda: store.retention_counts().last_failure > down.last_failure,
            timeout=30,
            what="the archiver failing once more while PostgreSQL is down",
        )
        backlog_during_outage = store.retention_counts().backlog
        assert archived() == down.archived and backlog_during_outage >= down.backlog
        pg.start()

        wait_until(lambda: archived() > 2000, timeout=90, what="2,000 records archived")
        producer.go.clear()
        wait_until(
            lambda: producer.idle.is_set() or not producer.is_alive(), timeout=30, what="the producer still"
        )
        redis_srv.kill()
        redis_srv.start()
        producer.go.set()

        producer.join(120)
        assert producer.error is None, repr(producer.error)
        assert len(producer.done) == RECORDS
        wait_until(
            lambda: (c := store.retention_counts()).backlog == 0 and c.retained == 0,
            timeout=120,
            what="every record archived and removed from Redis",
        )
        assert backlog_during_outage > 0  # the outage held records in Redis, issuance went on

        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("SELECT ca_id, serial, der FROM pcaq_records").fetchall()
        members = [member_of(ca, serial) for ca, serial, _ in rows]
        assert len(members) == len(set(members)) == RECORDS  # nothing doubled, nothing lost
        assert set(members) == set(producer.done)
        assert {bytes(der) for _, _, der in rows} == {producer.der}
        client = redis_srv.client()
        assert list(client.scan_iter(match=keys.certificate(f"{CA}:*"), count=1000)) == []
    finally:
        producer.go.set()
        archiver.kill()
        archiver.wait(10)
        log.close()
        pg.stop()
