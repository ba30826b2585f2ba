"""Retention and the archive, in-process: real Redis, real PostgreSQL (or the file archive), the real
Flask app; the worker's functions called directly and time moved by the store's injected clock."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis
from cryptography import x509

from pcaq.api.app import create_app
from pcaq.archive import ArchiveDown, ArchivedRecord, open_archive
from pcaq.archive.postgres import PostgresArchive
from pcaq.ca.audit_trail import AuditTrail
from pcaq.ca.authorities import Authorities
from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
from pcaq.cli.main import main
from pcaq.platform.settings import load
from pcaq.records import Store, keys, member_of
from pcaq.worker.archiver import Archiver, archive_step, audit_step, retention_step
from pcaq.worker.revocation_tasks import write_audit_report
from pcaq.worker.services import Services
from pcaq.worker.tasks import drain_outbox
from tests.archive_db import needs_postgres, private_database
from tests.revocation_flow import ENABLED, Flow, RecordingQueue, issue_leaf, make_root, revoke
from tests.support import private_redis_db

WINDOW, FAILED_WINDOW = 90, 60  # seconds: PCAQ_RETENTION_AFTER_EXPIRY=90s, PCAQ_FAILED_RETENTION=1m


class Clock:
    """The store's clock: real time until a test moves it."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(params=["files", pytest.param("postgres", marks=needs_postgres)])
def world(request, redis_base_url, tmp_path) -> Iterator[tuple[Flow, Clock]]:
    """The revocation flow with retention settings and an archive of each kind."""
    with ExitStack() as stack:
        url = stack.enter_context(private_redis_db(redis_base_url))
        env = {
            "REDIS_URL": url,
            "PCAQ_DATA_DIR": str(tmp_path),
            "PCAQ_RETENTION_AFTER_EXPIRY": f"{WINDOW}s",
            "PCAQ_FAILED_RETENTION": "1m",
            "PCAQ_RESPONDER_WAIT_MS": "20",
        }
        if request.param == "postgres":
            env["PCAQ_ARCHIVE_URL"] = stack.enter_context(private_database())
        settings = load(env)
        clock = Clock()
        store = Store(redis.Redis.from_url(url), settings, clock=clock)
        kek = os.urandom(32)
        verify_master_key(store, kek)
        queue = RecordingQueue()
        svc = Services(
            settings,
            store,
            queue,
            EncryptedRedisVault(store, kek),
            Authorities(store, queue, settings),
            clock,
        )
        flow = Flow(svc, create_app(settings).test_client())
        yield flow, clock


def _archive_all(flow: Flow) -> int:
    archive = open_archive(flow.svc.settings)
    try:
        done = 0
        while n := archive_step(flow.svc.store, archive, flow.svc.settings):
            done += n
        return done
    finally:
        archive.close()


def _archive_audit(flow: Flow, arn: str) -> int:
    archive = open_archive(flow.svc.settings)
    try:
        return audit_step(flow.svc.store, archive, flow.svc.settings, [arn.rsplit("/", 1)[1]])
    finally:
        archive.close()


def _not_after(flow: Flow, arn: str, cert_arn: str) -> float:
    pem = flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})[
        "Certificate"
    ]
    return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc.timestamp()


def _failed_request(flow: Flow, arn: str) -> str:
    """A request whose stored form is corrupt: the worker ends it FAILED. Its ARN."""
    ca_id, account = arn.rsplit("/", 1)[1], arn.split(":")[4]
    assert flow.svc.store.submit_certificate(ca_id, account, "bad1", b'{"csr":', None)
    assert drain_outbox(flow.svc) == 1
    return f"{arn}/certificate/bad1"


def _in_redis(flow: Flow, arn: str, serial: str) -> bool:
    return flow.svc.store.get_certificate(arn.rsplit("/", 1)[1], serial) is not None


def test_retention_removes_exactly_what_is_due_and_the_archive_answers_for_it(world):
    flow, clock = world
    arn, own = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    leaves = [issue_leaf(flow, arn) for _ in range(3)]
    failed = _failed_request(flow, arn)
    get = {}
    for cert_arn, _ in leaves:
        get[cert_arn] = flow.ok(
            "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn}
        )
    not_after = _not_after(flow, arn, leaves[0][0])

    # Nothing leaves Redis before the archive confirmed it, however late it is.
    clock.offset = not_after + WINDOW + 10 - time.time()
    assert retention_step(flow.svc.store, flow.svc.settings) == 0
    clock.offset = 0
    assert _archive_all(flow) == 5  # the root's own certificate, three leaves, one failure
    before = indexed(flow, ca_id)
    assert {serial for _, serial in leaves} <= before["issued"] & before["expiry"] & before["names"]
    assert "bad1" in before["failed"]
    assert flow.svc.store.retention_counts().backlog == 0

    # Before the failed window: nothing goes. After it: only the failure goes.
    assert retention_step(flow.svc.store, flow.svc.settings) == 0
    clock.offset = FAILED_WINDOW + 5
    assert retention_step(flow.svc.store, flow.svc.settings) == 1
    assert not _in_redis(flow, arn, "bad1") and all(_in_redis(flow, arn, s) for _, s in leaves)
    status, out = flow.call("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": failed})
    assert (status, out["__type"]) == (400, "RequestFailedException") and "corrupt" in out["message"]

    # Expired but inside the window: kept. Past the window: the leaves go, the root's own stays.
    clock.offset = not_after + WINDOW - 5 - time.time()
    assert retention_step(flow.svc.store, flow.svc.settings) == 0
    clock.offset = not_after + WINDOW + 5 - time.time()
    assert retention_step(flow.svc.store, flow.svc.settings) == 3
    assert not any(_in_redis(flow, arn, s) for _, s in leaves) and _in_redis(flow, arn, own.rsplit("/", 1)[1])
    for cert_arn, _ in leaves:
        body = {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn}
        assert flow.ok("GetCertificate", body) == get[cert_arn]  # the same answer, from the archive
    # The console finds them there too, by serial (its page and its search).
    serial = leaves[0][1]
    page = flow.client.get(f"/console/cas/{ca_id}/certificates/{serial}")
    assert page.status_code == 200 and get[leaves[0][0]]["Certificate"].splitlines()[1] in page.text
    found = flow.client.get(f"/console/cas/{ca_id}/certificates", query_string={"q": serial})
    assert found.status_code == 200 and f"/certificates/{serial}" in found.text
    missing = flow.client.get(f"/console/cas/{ca_id}/certificates/{'0' * 30}ff")
    assert missing.status_code == 404
    counts = flow.svc.store.retention_counts()
    assert (counts.retained, counts.archived, counts.removed) == (1, 5, 4)
    metrics = flow.client.get("/metrics").data.decode()
    assert "pcaq_records_removed_total 4.0" in metrics and "pcaq_records_held 1.0" in metrics
    assert "pcaq_archive_failing 0.0" in metrics
    assert member_of(ca_id, "bad1") not in flow.svc.store.due_for_removal(clock() + 10**9, 100)
    # They left the console's indexes with them (its lists and name search stay bounded too).
    gone = {serial for _, serial in leaves} | {"bad1"}
    after = indexed(flow, ca_id)
    assert not gone & set().union(*after.values())
    assert after["issued"] == after["expiry"] == {own.rsplit("/", 1)[1]}  # the root's own, kept


def indexed(flow: Flow, ca_id: str) -> dict[str, set[str]]:
    """The serials in each of a CA's console indexes (names: the serials the names point at)."""
    r = flow.svc.store.r
    found = {}
    for kind in ("pending", "issued", "failed", "expiry", "names"):
        members = [m.decode() for m in r.zrange(keys.certificate_index(ca_id, kind), 0, -1)]
        found[kind] = {m.rpartition("\0")[2] for m in members} if kind == "names" else set(members)
    return found


def test_a_revoked_certificate_stays_on_the_crl_until_it_expires(world):
    flow, clock = world
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    (kept_arn, kept), (revoked_arn, revoked) = issue_leaf(flow, arn), issue_leaf(flow, arn)
    colon = ":".join(revoked[i : i + 2] for i in range(0, len(revoked), 2))
    assert revoke(flow, arn, colon)[0] == 200
    assert _archive_all(flow) >= 3  # the revocation queued the record again
    not_after = _not_after(flow, arn, revoked_arn)
    clock.offset = not_after - 5 - time.time()  # close to expiry: still listed
    retention_step(flow.svc.store, flow.svc.settings)
    assert [e.serial_hex for e in flow.svc.store.revoked_entries(ca_id)] == [revoked]
    clock.offset = not_after + WINDOW + 5 - time.time()
    assert retention_step(flow.svc.store, flow.svc.settings) == 2
    assert flow.svc.store.revoked_entries(ca_id) == []
    archived = open_archive(flow.svc.settings).get(ca_id, revoked)
    assert archived is not None and archived.revoked_at is not None and archived.reason == "KEY_COMPROMISE"
    assert open_archive(flow.svc.settings).get(ca_id, kept).revoked_at is None
    del kept_arn


def test_an_audit_report_covers_the_whole_history_from_the_archive(world):
    flow, clock = world
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    old = [issue_leaf(flow, arn) for _ in range(2)]
    colon = ":".join(old[0][1][i : i + 2] for i in range(0, len(old[0][1]), 2))
    assert revoke(flow, arn, colon)[0] == 200
    _archive_all(flow)
    clock.offset = _not_after(flow, arn, old[0][0]) + WINDOW + 5 - time.time()
    assert retention_step(flow.svc.store, flow.svc.settings) == 2
    _archive_audit(flow, arn)  # the trail's entries leave Redis too: the templates come from the archive
    assert flow.svc.store.read_audit(ca_id) == []
    clock.offset = 0
    recent = issue_leaf(flow, arn)  # still only in Redis
    body = {"CertificateAuthorityArn": arn, "S3BucketName": "reports", "AuditReportResponseFormat": "JSON"}
    out = flow.ok("CreateCertificateAuthorityAuditReport", body)
    assert write_audit_report(flow.svc, ca_id, out["AuditReportId"]) == "SUCCESS"
    rows = json.loads(flow.client.get(f"/s3/reports/{out['S3Key']}").data)
    by_arn = {row["certificateArn"]: row for row in rows}
    assert {a for a, _ in [*old, recent]} <= set(by_arn) and len(rows) == len(by_arn) == 4  # and the root's
    assert by_arn[old[0][0]]["revocationReason"] == "KEY_COMPROMISE"
    assert "revokedAt" not in by_arn[old[1][0]]
    assert by_arn[old[1][0]]["templateArn"].endswith("template/EndEntityCertificate/V1")


def _record(serial: str, revoked_at: float | None = None) -> ArchivedRecord:
    return ArchivedRecord("ca1", serial, True, b"\x30\x00", None, 1.0, 2.0, 3.0, revoked_at, None)


@pytest.mark.parametrize("kind", ["files", pytest.param("postgres", marks=needs_postgres)])
def test_a_record_written_twice_is_one_record_and_may_only_gain_a_revocation(kind, tmp_path):
    with ExitStack() as stack:
        env = {"PCAQ_DATA_DIR": str(tmp_path)}
        if kind == "postgres":
            env["PCAQ_ARCHIVE_URL"] = stack.enter_context(private_database())
        archive = open_archive(load(env))
        stack.callback(archive.close)
        archive.write([_record("a1"), _record("a2")])
        archive.write([_record("a1"), _record("a2", revoked_at=5.0)])  # a batch written again, a revocation
        archive.write([_record("a2")])  # a stale copy does not take the revocation back
        assert sorted((r.serial_hex, r.revoked_at) for r in archive.issued("ca1")) == [
            ("a1", None),
            ("a2", 5.0),
        ]
        assert archive.get("ca1", "a2").revoked_at == 5.0 and archive.get("ca1", "zz") is None
        assert list(archive.issued("ca2")) == []


def test_an_archive_outage_lets_issuance_go_on_and_raises_the_alarm(redis_base_url, tmp_path, caplog):
    with private_redis_db(redis_base_url) as url:
        down = "postgresql://pcaq@127.0.0.1:1/none"  # nothing listens on port 1
        settings = load({"REDIS_URL": url, "PCAQ_ARCHIVE_URL": down, "PCAQ_DATA_DIR": str(tmp_path)})
        store = Store(redis.Redis.from_url(url), settings)
        ca_id, account = "ca-x", "123456789012"
        for serial in ("s1", "s2"):
            assert store.submit_certificate(ca_id, account, serial, b"{}", None)
        leased = store.claim_ready("w", 10)
        assert store.commit("w", [(m, True, b"der") for m, _ in leased]) == 2
        archiver = Archiver(store, settings, PostgresArchive(down, connect_timeout=1))
        assert not archiver.check_at_start()  # the alarm is up before anything is to be written
        assert store.retention_counts().last_failure > 0
        assert "archive: not reachable, records wait in Redis" in caplog.text
        with pytest.raises(ArchiveDown):
            archive_step(store, archiver.archive, settings)
        archiver.step()  # the loop's round: the write fails, the records stay queued
        counts = store.retention_counts()
        assert (counts.backlog, counts.archived, counts.retained) == (1, 0, 0)  # waits in Redis
        assert counts.last_failure > counts.last_ok == 0 and "PostgreSQL" in counts.error
        app = create_app(settings).test_client()
        assert "pcaq_archive_failing 1.0" in app.get("/metrics").data.decode()
        ready = app.get("/readyz")
        assert ready.status_code == 503 and json.loads(ready.data)["archive"] is False
        # Back: the same batch is archived, the alarm clears.
        files = archiver.archive = open_archive(load({"PCAQ_DATA_DIR": str(tmp_path)}))
        archiver.step()
        assert store.retention_counts().archived == 2 and "reachable again" in caplog.text
        assert "pcaq_archive_failing 0.0" in app.get("/metrics").data.decode()
        assert {r.serial_hex for r in files.issued(ca_id)} == {"s1", "s2"}


def test_retention_durations_and_the_archive_url_are_checked_at_start():
    assert (load({}).retention_after_expiry, load({}).failed_retention, load({}).archive_url) == (
        7 * 86400,
        7 * 86400,
        None,
    )
    given = {"PCAQ_RETENTION_AFTER_EXPIRY": "90s", "PCAQ_FAILED_RETENTION": "12h"}
    assert (load(given).retention_after_expiry, load(given).failed_retention) == (90, 12 * 3600)
    assert load({"PCAQ_RETENTION_AFTER_EXPIRY": "15m"}).retention_after_expiry == 900
    for name, bad in (
        ("PCAQ_RETENTION_AFTER_EXPIRY", "7"),
        ("PCAQ_FAILED_RETENTION", "1w"),
        ("PCAQ_RETENTION_AFTER_EXPIRY", "-1d"),
        ("PCAQ_ARCHIVE_URL", "mysql://db/pcaq"),
    ):
        with pytest.raises(SystemExit, match=name):
            load({name: bad})


def test_a_revocation_keeps_its_record_in_redis_until_the_archive_has_the_revocation(world):
    flow, clock = world
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    cert_arn, serial = issue_leaf(flow, arn)
    _archive_all(flow)
    not_after = _not_after(flow, arn, cert_arn)
    clock.offset = not_after + WINDOW + 5 - time.time()  # due for removal...
    store = flow.svc.store
    assert store.revoke(ca_id, serial, clock(), "SUPERSEDED", not_after, 10)[0] == 1  # ...and revoked now
    assert retention_step(store, flow.svc.settings) == 0  # not before the archive has the revocation
    _archive_all(flow)
    assert retention_step(store, flow.svc.settings) == 1
    archived = open_archive(flow.svc.settings).get(ca_id, serial)
    assert archived is not None and archived.reason == "SUPERSEDED"


def test_records_from_before_the_archive_are_queued_by_the_backfill_and_then_archived(
    redis_base_url, tmp_path, capsys
):
    with private_redis_db(redis_base_url) as url:
        settings = load({"REDIS_URL": url, "PCAQ_DATA_DIR": str(tmp_path)})
        store = Store(redis.Redis.from_url(url), settings)
        for serial in ("b1", "b2", "b3"):
            assert store.submit_certificate("ca-old", "123456789012", serial, b"{}", None)
        leased = store.claim_ready("w", 10)
        store.commit("w", [(m, m.endswith("b1"), b"der") for m, _ in leased if not m.endswith("b3")])
        store.r.delete(keys.ARCHIVE_QUEUE)  # as an installation from before the archive: nothing queued
        assert main(["archive-backfill", "--redis-url", url]) == 0
        assert "2 finished record(s) queued" in capsys.readouterr().out  # b3 is still pending
        files = open_archive(settings)
        assert archive_step(store, files, settings) == 2
        assert main(["archive-backfill", "--redis-url", url]) == 0  # archived: not queued again
        assert "0 finished record(s) queued" in capsys.readouterr().out
        assert files.get("ca-old", "b1").issued and not files.get("ca-old", "b2").issued


def test_the_audit_trail_leaves_redis_once_archived_and_reads_whole(world):
    flow, clock = world
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    issue_leaf(flow, arn)
    store, archive = flow.svc.store, open_archive(flow.svc.settings)
    before = [(e.entry_id, e.event) for e in AuditTrail(store).entries(arn)]
    assert _archive_audit(flow, arn) == len(before) > 4
    assert len(store.read_audit(ca_id)) == len(before)  # archived, but younger than the window: kept
    clock.offset = WINDOW + 5
    assert _archive_audit(flow, arn) == 0 and store.read_audit(ca_id) == []  # archived and old: gone
    issue_leaf(flow, arn)  # newer entries, not archived yet: they stay whatever their age
    now = [(e.entry_id, e.event) for e in AuditTrail(store, archive=archive).entries(arn)]
    assert now[: len(before)] == before and len(now) == len(before) + 2 and len(set(now)) == len(now)
    assert [e.entry_id for e in AuditTrail(store, archive=archive).entries(arn, 3)] == [
        i for i, _ in now[-3:]
    ]
    assert len(store.read_audit(ca_id)) == 2
