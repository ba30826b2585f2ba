"""`pcaq up` signs on every CPU but one by default: the API, Redis and the clients keep a core."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pcaq.cli import children, embedded_redis
from pcaq.cli import main as cli


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_one_signing_process_per_cpu_but_one(cpus, workers):
    assert children.default_workers(cpus) == workers


def test_pcaq_up_uses_it_unless_told(monkeypatch):
    monkeypatch.setattr(children.os, "cpu_count", lambda: 2)
    assert cli._parser().parse_args(["up"]).workers == 1
    assert cli._parser().parse_args(["up", "--workers", "2"]).workers == 2
    monkeypatch.setattr(children.os, "cpu_count", lambda: None)  # unknown: one
    assert cli._parser().parse_args(["up"]).workers == 1


def test_the_embedded_redis_choices_are_the_embedded_redis_kinds():
    # The parser names them without importing cli/embedded_redis.py (it loads redis-py).
    assert cli.EMBEDDED_REDIS_CHOICES == embedded_redis.CHOICES


def test_bulk_issue_starts_without_loading_redis_the_ca_or_the_archive():
    # Each command loads its own code when it runs: bulk-issue, a client of the API, needs none of these.
    probe = (
        "import sys; from pcaq.cli import main; main._parser(); import pcaq.cli.bulk_issue;"
        "print(sorted(m for m in ('redis', 'celery', 'flask', 'pcaq.records', 'pcaq.ca.vault',"
        " 'pcaq.archive') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
