"""A CA ARN is parsed once where a request enters and once per worker batch, then passed down parsed
(shared/ca/arns.py, shared/ca/authority.py). Real Redis, the API in-process, worker functions in-process.
"""

from __future__ import annotations

import re

import pytest

from pcaq.ca import arns
from pcaq.worker.tasks import drain_outbox
from tests.issue_flow import active_root, issue


class CountingPattern:
    """The CA/certificate ARN pattern, counting how often an ARN is parsed with it."""

    def __init__(self, pattern: re.Pattern):
        self.pattern = pattern
        self.calls = 0

    def match(self, text: str):
        self.calls += 1
        return self.pattern.match(text)


@pytest.fixture
def parses(monkeypatch) -> CountingPattern:
    counting = CountingPattern(arns._CA_RE)
    monkeypatch.setattr(arns, "_CA_RE", counting)
    return counting


def test_issue_certificate_parses_the_ca_arn_once(env, parses):
    svc, client = env
    arn = active_root(svc, client)
    issue(client, arn)  # this API process now has the CA read (IssueCertificate's hot path)
    parses.calls = 0
    issue(client, arn)
    assert parses.calls == 1


def test_a_batch_parses_its_ca_arn_once_not_per_certificate(env, parses):
    svc, client = env
    arn = active_root(svc, client)
    for _ in range(3):
        issue(client, arn)
    parses.calls = 0
    assert drain_outbox(svc) == 3  # one batch (PCAQ_BATCH_SIZE is larger)
    assert parses.calls == 1  # when the batch reads the CA
