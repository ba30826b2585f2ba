"""The ``pcaq`` commands on a service's Redis (cli/store_commands.py) say what stopped them in one line
and exit 1 when that Redis does not answer, 2 for a bad request: never a traceback."""

from __future__ import annotations

import socket

import pytest

from pcaq.cli import main as cli

CA = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555"


@pytest.fixture
def nobody_listens() -> str:
    """A Redis URL on a port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize(
    "command",
    [["audit", "--ca", CA], ["blocklist", "list"], ["console-index"], ["archive-backfill"]],
    ids=lambda c: c[0],
)
def test_a_redis_that_does_not_answer_is_one_line_and_status_1(nobody_listens, capsys, command):
    assert cli.main([*command, "--redis-url", nobody_listens]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pcaq: Redis at redis://127.0.0.1:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_arn_that_is_not_one_is_status_2(nobody_listens, capsys):
    assert cli.main(["console-index", "--ca", "arn:aws:acm-pca:nowhere", "--redis-url", nobody_listens]) == 2
    assert capsys.readouterr().err.startswith("pcaq: ")
