"""`pcaq up` signs on every CPU but one by default: the API, Redis and the clients keep a core."""

from __future__ import annotations

import pytest

from pcaq.cli import main as cli


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_one_signing_process_per_cpu_but_one(cpus, workers):
    assert cli.default_workers(cpus) == workers


def test_pcaq_up_uses_it_unless_told(monkeypatch):
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli._parser().parse_args(["up"]).workers == 1
    assert cli._parser().parse_args(["up", "--workers", "2"]).workers == 2
    monkeypatch.setattr(cli.os, "cpu_count", lambda: None)  # unknown: one
    assert cli._parser().parse_args(["up"]).workers == 1
