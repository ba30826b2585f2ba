"""bench/replicated.py runs end to end at a tiny size and prints its figures (no timing is asserted)."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.test_bench_smoke import run_quick

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="it starts its own redis-server processes"
    ),
]


def test_replicated_bench_prints_the_three_setups():
    proc, rows = run_quick("replicated.py")
    assert [row["setup"] for row in rows] == ["single", "sentinel, 0", "sentinel, 1"]
    for row in rows:
        assert row["count"] == 100 and row["e2e"] > 0 and row["p99_ms"] > 0
        assert row["redis_us"] >= 0 and row["api_us"] > 0 and row["worker_us"] >= 0
        assert f"{row['setup']} run 1: raw" in proc.stdout
    single, replicated, waiting = rows
    # The replicas are real: the stream to them is counted, and only where there are replicas.
    assert single["stream_bytes"] == 0 and single["replicas_us"] == 0
    assert replicated["stream_bytes"] > 1000 and waiting["stream_bytes"] > 1000
