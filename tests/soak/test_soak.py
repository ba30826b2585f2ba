"""Two minutes at a steady 100 IssueCertificate/s against ``pcaq up``: no error answer, every ARN
ISSUED exactly once, the outbox keeps up, and no process of the service grows in memory.

The bound: after a 30 s warm-up, no API or worker process's resident memory (VmRSS, sampled every
5 s) may grow by more than ``RSS_GROWTH_BOUND``, 8 MiB, past its working set (see ``Sampler.growth``). About 9,000 requests follow the warm-up, so
a leak of 2 KiB or more per request (keeping each certificate and its request, say) breaks it even
when the two signing processes share the work evenly; the growth measured here is under 0.5 MiB.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from bench.issuance import make_csrs
from pcaq.records import keys
from tests.faults.harness import (
    Audit,
    Load,
    RedisServer,
    ca_records,
    env_with,
    root_ca,
    rss_kib,
    wait_all_finished,
)
from tests.support import descendants, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.soak]

RATE = 100  # requests per second
SECONDS = 120
WARM_UP = 30  # seconds before the reference sample
SAMPLE_EVERY = 5.0
RSS_GROWTH_BOUND = 8 * 1024  # KiB
MAX_BACKLOG = 500  # unfinished requests at any sample: the workers keep up with the load


class Sampler:
    """Every few seconds: VmRSS of each API and worker process, and the outbox depth."""

    def __init__(self, stack, redis_client):
        self.stack = stack
        self.r = redis_client
        self.samples: list[tuple[float, dict[str, int], int]] = []  # (elapsed, {process: KiB}, outbox)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> dict[str, int]:
        roles = self.stack.child_pids()
        found = {}
        for role in ("api", "worker"):
            found[f"{role} {roles[role]}"] = roles[role]
            for child in descendants(roles[role]):
                found[f"{role} child {child.pid}"] = child.pid
        return found

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(SAMPLE_EVERY):
            rss = {name: kib for name, pid in self._processes().items() if (kib := rss_kib(pid)) is not None}
            self.samples.append((time.monotonic() - start, rss, int(self.r.zcard(keys.PENDING_CERTS))))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def growth(self) -> dict[str, int]:
        """KiB each process grew past its working set after the warm-up.

        The reference is the first sample after the warm-up, or the largest peer doing the same job
        (the API's processes, the pool processes) if that is larger: a pool process that took little
        work during the warm-up grows to its peers' size once it does, and that is not a leak.
        """
        after = [rss for elapsed, rss, _ in self.samples if elapsed >= WARM_UP]
        assert len(after) >= 2, "too few samples after the warm-up"
        first = after[0]

        def role(name: str) -> str:
            return name.rsplit(" ", 1)[0]

        peers = {role(n): max(kib for m, kib in first.items() if role(m) == role(n)) for n in first}
        return {
            n: max(0, max(s.get(n, kib) for s in after) - max(kib, peers[role(n)]))
            for n, kib in first.items()
        }


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the soak test starts its own redis-server")
def test_two_minutes_at_a_steady_rate(tmp_path):
    server = RedisServer(tmp_path / "redis", "everysec")
    server.start()
    try:
        with running_stack(tmp_path, env=env_with(REDIS_URL=server.url), workers=2) as stack:
            port, r = int(stack.endpoint_url.rsplit(":", 1)[1]), server.client()
            ca_arn = root_ca(port)
            before = set(ca_records(r, ca_arn))
            pool = make_csrs(1000)
            csrs = [pool[i % len(pool)] for i in range(RATE * SECONDS)]  # distinct tokens, CSRs reused
            with Sampler(stack, r) as sampler:
                load = Load(port, ca_arn, csrs, threads=8, rate=RATE, deadline=SECONDS + 60).start()
                load.wait()
                wait_all_finished(r, timeout=60)
            audit = Audit.of(r, ca_arn, list(load.arns.values()), before)
    finally:
        server.stop()

    assert load.unexpected == [] and load.retried == [] and load.broken_connections == 0
    assert len(load.arns) == RATE * SECONDS
    assert audit.problems() == []
    growth = sampler.growth()
    backlog = max(depth for _, _, depth in sampler.samples)
    first = next(rss for elapsed, rss, _ in sampler.samples if elapsed >= WARM_UP)
    print(
        f"\nsoak: {len(load.arns)} requests at {RATE}/s, max backlog {backlog}; RSS after warm-up (KiB) "
        f"{first}; growth (KiB) {growth}"
    )
    assert backlog <= MAX_BACKLOG, backlog
    assert all(kib <= RSS_GROWTH_BOUND for kib in growth.values()), growth
