"""A PKCS#11 token lost in the middle of a bulk and then restored: signing fails with a retryable
error, the requests wait (none FAILED, none abandoned), ``/readyz`` says the token is gone, and once it
is back every ARN handed out ends ISSUED with exactly one certificate signed by the token.

The token is a private SoftHSM2 token; "lost" is its folder moved away, which SoftHSM2 answers as a
real device would that is gone: every session's objects vanish and the slot errors.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from pcaq.records import keys
from tests.faults.harness import BULK, Audit, Load, ca_records, env_with, root_ca, wait_all_finished
from tests.hsm import needs_token, private_softhsm_token
from tests.integration.test_revocation import http_get
from tests.support import running_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults, needs_token]


def _states(r: redis.Redis, ca_arn: str, before: set[str]) -> dict[bytes, int]:
    """How many of the bulk's records are in each state (b"P", b"I", b"F")."""
    out: dict[bytes, int] = {}
    for member, record in ca_records(r, ca_arn).items():
        if member not in before:
            out[record.get(b"s", b"?")] = out.get(record.get(b"s", b"?"), 0) + 1
    return out


def test_a_token_lost_mid_drain_and_restored_loses_and_doubles_nothing(tmp_path, redis_base_url, bulk_csrs):
    token = private_softhsm_token(tmp_path / "hsm")
    tokens, away = tmp_path / "hsm" / "tokens", tmp_path / "hsm" / "tokens-away"
    # Small batches: a drain is many batches, so the token goes while one is under way.
    env = env_with(**token.stack_env(tmp_path / "pin"), PCAQ_BATCH_SIZE="20")
    with running_stack(tmp_path, env=env, redis_base_url=redis_base_url, workers=2) as stack:
        port, r = int(stack.endpoint_url.rsplit(":", 1)[1]), redis.Redis.from_url(stack.redis_url)
        ca_arn = root_ca(port)  # its key made, and its certificate signed, in the token
        before = set(ca_records(r, ca_arn))
        load = Load(port, ca_arn, bulk_csrs).start()
        wait_until(lambda: _states(r, ca_arn, before).get(b"I", 0) >= 50, interval=0.01, what="signing")

        tokens.rename(away)  # the token is gone mid-drain
        status, body = wait_until(
            lambda: (s := http_get(stack.endpoint_url + "/readyz"))[0] == 503 and s,
            what="/readyz to report the token gone",
        )
        assert json.loads(body)["token"] is False
        load.wait()  # the API takes requests all the while: it needs no token
        # Every lease taken before the loss has ended, and drains woken since found the token gone and
        # claimed nothing: the requests wait, none is FAILED or abandoned.
        wait_until(
            lambda: (
                r.zcount(keys.PENDING_CERTS, time.time(), "+inf") == 0
                and "requests wait in the outbox" in stack.log()
            ),
            timeout=60,
            interval=0.2,
            what="the leases to end and a drain to find the token gone",
        )
        waiting = _states(r, ca_arn, before)
        assert waiting.get(b"F", 0) == 0 and waiting.get(b"P", 0) > 0, waiting

        away.rename(tokens)  # restored
        wait_all_finished(r, timeout=120)
        audit = Audit.of(r, ca_arn, list(load.arns.values()), before)
        assert load.unexpected == [] and len(load.arns) == BULK
        assert audit.problems() == []
        assert http_get(stack.endpoint_url + "/readyz")[0] == 200
        print(f"\ntoken outage: {waiting} while away; all {BULK} ISSUED after the token came back")
