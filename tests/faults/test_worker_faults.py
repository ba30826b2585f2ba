"""Workers killed or stopped in the middle of a bulk, and wake-ups that never arrive: every ARN handed
out still ends ISSUED with exactly one certificate (invariants 1, 2 and 5 of docs/architecture.md).

Each test runs ``pcaq up`` (two signing processes) on a Redis of its own with the append-only file,
sends a bulk from 8 clients and audits Redis afterwards (``tests.faults.harness.Audit``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest

from pcaq.records import keys
from pcaq.worker.tasks import DRAIN_SLICE_SECONDS
from tests.faults.harness import (
    BULK,
    Audit,
    Load,
    ca_records,
    env_with,
    owners,
    root_ca,
    scrape,
    wait_all_finished,
)
from tests.support import alive, descendants, running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _port(stack) -> int:
    return int(stack.endpoint_url.rsplit(":", 1)[1])


def _held_by(r, pool: set[str]) -> list[str]:
    """Lease owners (``host:pid:...``) in the outbox that belong to one of the ``pool`` pids."""
    return [o for o in owners(r) if o.split(":")[1] in pool]


class _Bulk(NamedTuple):
    stack: object
    port: int
    r: object
    ca_arn: str
    before: set
    load: Load


@contextmanager
def _bulk_under_way(tmp_path, server, bulk_csrs) -> Iterator[_Bulk]:
    """``pcaq up`` with two signing processes on ``server``, a quarter of a bulk already answered."""
    with running_stack(tmp_path, env=env_with(REDIS_URL=server.url), workers=2) as stack:
        port, r = _port(stack), server.client()
        ca_arn = root_ca(port)
        before = set(ca_records(r, ca_arn))
        load = Load(port, ca_arn, bulk_csrs).start()
        wait_until(lambda: load.answered >= BULK // 4, what="a quarter of the bulk answered")
        yield _Bulk(stack, port, r, ca_arn, before, load)


def test_sigkill_every_worker_mid_bulk_loses_and_doubles_nothing(tmp_path, redis_server, bulk_csrs):
    with _bulk_under_way(tmp_path, redis_server("everysec"), bulk_csrs) as bulk:
        stack, port, r, ca_arn, before, load = bulk
        orphaned: list[str] = []
        kills = 0
        while not orphaned and kills < 3:  # until a kill lands on a batch in flight
            worker = stack.child_pids()["worker"]
            pool = {str(p.pid) for p in wait_until(lambda w=worker: descendants(w), what="pool processes")}
            wait_until(lambda p=pool: _held_by(r, p), what="a batch in flight")
            os.killpg(worker, signal.SIGKILL)  # the Celery main process and every pool process at once
            killed_at, kills = time.monotonic(), kills + 1
            # What the dead pool had leased stays leased to it: no one may take it before the lease ends.
            orphaned = _held_by(r, pool)
            wait_until(
                lambda w=worker: stack.child_pids().get("worker") not in (None, w),
                what="pcaq up to restart it",
            )

        load.wait()
        wait_all_finished(r)
        recovered_in = time.monotonic() - killed_at
        audit = Audit.of(r, ca_arn, list(load.arns.values()), before)

        assert load.unexpected == [] and load.retried == [], (load.unexpected[:3], load.retried[:3])
        assert len(load.arns) == BULK
        # One audit entry per certificate, even for the batches whose worker was killed: the commit
        # appends them in the same step as the results.
        assert audit.problems() == []
        assert orphaned, "no kill landed on leased work: the test proved nothing"
        retried = [m for m, h in audit.records.items() if int(h.get(b"a", b"0")) >= 2]
        assert retried, "the orphaned leases must have been signed again by the new worker"
        metrics = scrape(port)
        requests = 'pcaq_api_requests_total{operation="IssueCertificate",outcome="success"}'
        counted, files = metrics[requests], sorted(stack.data_dir.glob("metrics/*"))
        assert BULK + 1 <= counted <= BULK + 1 + load.broken_connections, (
            counted,
            load.broken_connections,
            files,
        )
        # Counted once each, by the commit that wrote it: a killed worker loses no count.
        assert metrics["pcaq_certificates_issued_total"] == BULK + 1  # and the root's own certificate
        assert metrics["pcaq_issuance_latency_seconds_count"] == BULK + 1
        print(
            f"\nSIGKILL: {kills} kill(s), {len(orphaned)} leased requests orphaned, {len(retried)} signed "
            f"again; all {BULK} ISSUED {recovered_in:.1f} s after the kill"
        )


def test_sigterm_mid_batch_finishes_or_hands_back_its_work(tmp_path, redis_server, bulk_csrs):
    with _bulk_under_way(tmp_path, redis_server("everysec"), bulk_csrs) as bulk:
        stack, port, r, ca_arn, before, load = bulk

        worker = stack.child_pids()["worker"]
        pool = {str(p.pid) for p in descendants(worker)}
        held = wait_until(lambda: _held_by(r, pool), what="a batch in flight")
        os.kill(worker, signal.SIGTERM)  # what docker stop, systemd and a Procfile runner send
        stopped_at = time.monotonic()
        wait_until(lambda: not alive(worker), timeout=60, what="the warm shutdown")
        stop_seconds = time.monotonic() - stopped_at

        # Nothing it had taken is left leased to it: each batch was committed (or given back).
        left = _held_by(r, pool)
        assert left == [], f"{len(left)} requests still leased to the stopped worker"
        assert f"worker (pid {worker}) exited with status 0" in stack.log()
        assert stop_seconds < DRAIN_SLICE_SECONDS + 15, "a warm shutdown waits for one drain slice at most"

        load.wait()
        wait_all_finished(r)
        audit = Audit.of(r, ca_arn, list(load.arns.values()), before)
        assert load.unexpected == [] and len(load.arns) == BULK
        assert audit.problems() == []
        print(
            f"\nSIGTERM: {len(held)} requests leased at the signal; the worker stopped in {stop_seconds:.1f} s"
        )


def test_lost_wakeups_are_found_by_the_sweeper_after_stale_after(tmp_path, redis_server, bulk_csrs):
    stale_after, sweep_interval = 3, 1
    server = redis_server("everysec")
    env = env_with(
        REDIS_URL=server.url, PCAQ_STALE_AFTER=str(stale_after), PCAQ_SWEEP_INTERVAL=str(sweep_interval)
    )
    with running_stack(tmp_path, env=env, workers=2) as stack:
        port, r = _port(stack), server.client()
        ca_arn = root_ca(port)
        before = set(ca_records(r, ca_arn))
        # Wait until no task runs or waits (kombu keeps delivered, unacknowledged messages in "unacked"),
        # then hold the drain kick: from now on no IssueCertificate publishes a wake-up, as if every
        # message were lost on the way. Only the sweeper can find the requests.
        wait_until(lambda: r.hlen("unacked") == 0 and r.llen(keys.CELERY_QUEUE) == 0, what="idle workers")
        r.set(keys.DRAIN_KICK, "1", px=600_000)
        load = Load(port, ca_arn, bulk_csrs[:300]).start()
        load.wait()
        wait_all_finished(r, timeout=60)

        records = [h for m, h in ca_records(r, ca_arn).items() if m not in before]
        created = [float(h[b"t"]) for h in records]
        done = [float(h[b"d"]) for h in records]
        audit = Audit.of(r, ca_arn, list(load.arns.values()), before)
        assert load.unexpected == [] and len(load.arns) == 300
        assert audit.problems() == []
        # None was taken before the oldest had waited stale_after; all were found soon after that.
        assert min(done) - min(created) >= stale_after - 0.05, min(done) - min(created)
        assert max(done) - min(created) <= stale_after + 2 * sweep_interval + 5, max(done) - min(created)
        assert "request(s) waiting too long" in stack.log()
        print(
            f"\nsweeper: first issued {min(done) - min(created):.2f} s after the first submit (stale_after {stale_after} s)"
        )
