"""The benchmark runs end to end at a tiny size and prints its figures (no timing is asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = [
    pytest.mark.integration,
    # Both benchmarks need a real redis-server: issuance.py starts its own, and pcaq up without one
    # falls back to fakeredis, too slow for figures worth printing.
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="the benchmarks need redis-server on PATH"
    ),
]


def run_quick(script: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``bench/<script> --quick``, which must succeed: the run and the rows of its last (JSON) line."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_quick_prints_every_figure():
    proc, rows = run_quick("issuance.py")
    (row,) = rows
    for figure in ("raw", "e2e", "submit", "p50_ms", "p99_ms", "drain1", "drain2", "record_key_bytes"):
        assert row[figure] > 0, figure
    assert row["count"] == 100 and row["drain_count"] == 200
    assert "e2e/raw" in proc.stdout and "targets:" in proc.stdout
    assert set(row["cpu_us_per_cert"]) == {"redis", "api", "worker", "clients"}  # where the time went
    assert row["cpu_us_per_cert"]["worker"] > 0 and row["polls_per_cert"] >= 1.0
    # The API application alone (called in the benchmark's process, no HTTP server), and the rate the
    # cores would allow if serving HTTP cost nothing.
    api = row["api_in_process_us"]
    assert set(api) == {"IssueCertificate", "GetCertificate"} and min(api.values()) > 0
    assert (
        f"ceiling {row['ceiling']:.0f}/s = {row['ceiling'] / row['raw']:.2f} of the raw loop" in proc.stdout
    )
    # The workers share the API's session, as under `pcaq up`: with autogroup scheduling a session of
    # their own would get half the CPU whatever their nice, and the figures would not be pcaq up's.
    assert set(row["targets"]) == {"e2e/raw", "d1/raw", "d2/d1", "p99", "B/rec"}  # each judged ...
    assert row["targets"]["d1/raw"] == (row["drain1"] / row["raw"] >= 0.85)  # ... by its own figures
    met = [name for name, ok in row["targets"].items() if ok]
    assert f"met: {', '.join(met) or '-'};" in proc.stdout
    assert row["one_session"] is True and "API and workers in one session: True" in proc.stdout


def test_bench_against_pcaq_up_quick_prints_each_run():
    proc, (row,) = run_quick("against_up.py")
    for figure in ("raw", "e2e", "submit", "p50_ms", "p99_ms"):
        assert row[figure] > 0, figure
    assert row["count"] == 100 and row["polls_per_cert"] >= 1.0
    assert set(row["targets"]) == {"e2e/raw", "p99"}
    assert row["targets"]["p99"] == (row["p99_ms"] < 10.0)  # judged by its own figures
    assert f"= {row['e2e'] / row['raw']:.2f} of it" in proc.stdout and "(defaults)" in proc.stdout
    # pcaq bulk-issue against the same service right after: its rate beside the load client's, its CPU.
    assert row["bulk"] > 0 and row["bulk_user_us"] > 0 and row["bulk_system_us"] >= 0
    assert (
        f"{row['bulk']:.0f}/s = {row['bulk'] / row['e2e']:.2f} of the load client's end to end" in proc.stdout
    )
    # The load client's own CPU beside the tool's, and which went first.
    # (>= 0: at the quick size the load client's few ms of CPU can fall under the kernel's accounting tick)
    assert row["load_user_us"] >= 0 and row["order"] == "load client first"
    assert f"(load client: {row['load_user_us']:.0f} us," in proc.stdout


def test_bulk_ceiling_quick_prints_the_tools_own_rate_for_each_output():
    proc, rows = run_quick("bulk_ceiling.py")
    assert [row["output"] for row in rows] == ["files", "jsonl"]
    for row in rows:
        assert row["count"] == 200 and row["rate"] > 0 and row["user_us"] > 0
        assert f"--output-format {row['output']}: {row['rate']:.0f}/s on one core" in proc.stdout


def test_archive_rate_bench_prints_its_figures():
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "archive_rate.py"), "--records", "300", "--batch", "100"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "files: 300 records in" in proc.stdout and "bytes per record on disk" in proc.stdout
