"""The CA lifecycle (pcaq.ca.authorities; docs/wire-contract.md, "CA lifecycle") over a real record store.

Runs in database 14 of the test Redis, flushed before each test, with a fake queue that records what
would be sent to the workers and a fake clock patched into the modules that read the time.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
import redis

from pcaq.ca import authorities
from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.authorities import Authorities, effective_status
from pcaq.errors import (
    InProgress,
    InvalidArgument,
    InvalidNextToken,
    InvalidState,
    InvalidTag,
    NotFound,
    RequestFailed,
    TooManyTags,
)
from pcaq.platform import settings
from pcaq.platform.identity import Caller
from pcaq.platform.queue import CREATE_CA_KEY_TASK
from pcaq.records import Store
from tests.support import Clock, wakeups_failed

SETTINGS = settings.load({"PCAQ_IDEMPOTENCY_TTL": "300"})
ME = Caller(account="111122223333", region="us-east-1")
STRANGER = Caller(account="999988887777", region="us-east-1")
BEIJING = Caller(account=ME.account, region="cn-north-1")  # in the aws-cn partition
CHINESE_STANDARD = {"KeyStorageSecurityStandard": "CCPC_LEVEL_1_OR_HIGHER"}  # the one China accepts
T0 = 1_700_000_000.0
DAY = 86400


class FakeQueue:
    """Records the CA key generations that would be queued; can be told to fail like a broker that is down."""

    def __init__(self):
        self.created: list[str] = []
        self.down = False

    def create_ca_key(self, ca_id: str) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.created.append(ca_id)


@pytest.fixture
def clock(monkeypatch):
    c = Clock(T0)
    fake = SimpleNamespace(time=c)
    monkeypatch.setattr(authorities, "time", fake)
    return c


@pytest.fixture
def store(redis_base_url, clock):
    client = redis.Redis.from_url(f"{redis_base_url}/14")
    client.flushdb()
    yield Store(client, SETTINGS, clock=clock)
    client.close()


@pytest.fixture
def queue():
    return FakeQueue()


@pytest.fixture
def cas(store, queue):
    return Authorities(store, queue, SETTINGS)


def params(**extra) -> dict:
    p = {
        "CertificateAuthorityType": "ROOT",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Test Root"},
        },
    }
    p.update(extra)
    return p


def ca_id(arn: str) -> str:
    return arn.rsplit("/", 1)[1]


def force(cas, arn: str, **fields) -> None:
    """Put a CA straight into a state (the import path is covered by the integration tests)."""
    cas.store.update_ca(ca_id(arn), lambda d: {**d, **fields})


def ready(cas, status="ACTIVE", **extra) -> str:
    arn = cas.create(ME, params(**extra))
    cas.key_generated(ca_id(arn), "PUBLIC KEY PEM", "CSR PEM")
    if status != "PENDING_CERTIFICATE":
        force(cas, arn, Status=status, NotAfter=T0 + 365 * DAY)
    return arn


# -- create and key generation ---------------------------------------------------------------------


def test_create_records_creating_and_queues_key_generation(cas, queue):
    arn = cas.create(ME, params())
    assert arn.startswith("arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/")
    assert queue.created == [ca_id(arn)]
    view = cas.describe(ME, arn)
    assert view["Status"] == "CREATING" and view["Arn"] == arn
    assert view["CreatedAt"] == view["LastStateChangeAt"] == T0
    # No PKCS#11 token configured: a software key, which meets no FIPS level, so none is claimed.
    assert "KeyStorageSecurityStandard" not in view
    assert view["UsageMode"] == "GENERAL_PURPOSE"
    assert "internal" not in view


def test_create_with_the_same_token_answers_the_same_arn_and_queues_once(cas, queue):
    first = cas.create(ME, params(IdempotencyToken="tok"))
    assert cas.create(ME, params(IdempotencyToken="tok")) == first
    assert queue.created == [ca_id(first)]
    assert len(cas.list(ME, None, None, None)[0]) == 1


def test_same_token_in_another_region_answers_an_arn_that_exists(cas):
    cas.create(ME, params(IdempotencyToken="tok"))
    west = Caller(account=ME.account, region="us-west-2")
    arn = cas.create(west, params(IdempotencyToken="tok"))
    assert ":us-west-2:" in arn
    assert cas.describe(west, arn)["Arn"] == arn


def test_a_ca_made_in_a_china_region_has_an_aws_cn_arn_and_is_found_by_it(cas):
    arn = cas.create(BEIJING, params(**CHINESE_STANDARD))
    assert arn.startswith("arn:aws-cn:acm-pca:cn-north-1:111122223333:certificate-authority/")
    assert cas.describe(BEIJING, arn)["Arn"] == arn


def test_an_arn_of_another_partition_names_no_ca_of_the_caller(cas):
    arn = cas.create(BEIJING, params(**CHINESE_STANDARD))
    with pytest.raises(NotFound):  # an aws-cn CA is not reachable through an aws region
        cas.describe(ME, arn)
    with pytest.raises(NotFound):  # nor by its id under another partition
        cas.describe(BEIJING, arn.replace("arn:aws-cn:", "arn:aws:"))


def test_a_list_shows_the_cas_of_the_callers_partition_only(cas):
    here = cas.create(ME, params())
    there = cas.create(BEIJING, params(**CHINESE_STANDARD))
    assert [ca["Arn"] for ca in cas.list(ME, None, None, None)[0]] == [here]
    assert [ca["Arn"] for ca in cas.list(BEIJING, None, None, None)[0]] == [there]


@pytest.mark.parametrize("standard", [None, "FIPS_140_2_LEVEL_3_OR_HIGHER", "FIPS_140_2_LEVEL_2_OR_HIGHER"])
def test_a_china_region_refuses_the_fips_standards_and_so_the_default(cas, standard):
    extra = {"KeyStorageSecurityStandard": standard} if standard else {}
    with pytest.raises(InvalidArgument, match="cannot be created in this region"):
        cas.create(BEIJING, params(**extra))


def test_a_china_region_keeps_keys_to_the_chinese_standard(cas):
    arn = cas.create(BEIJING, params(**CHINESE_STANDARD))
    assert cas.describe(BEIJING, arn)["Status"] == "CREATING"  # (a software key: no standard claimed)
    with pytest.raises(InvalidArgument, match="cannot be created in this region"):
        cas.create(ME, params(**CHINESE_STANDARD))  # and only there


def test_create_survives_a_broker_outage_and_leaves_the_ca_for_the_sweeper(cas, queue, store):
    queue.down = True
    before = wakeups_failed(CREATE_CA_KEY_TASK)
    arn = cas.create(ME, params())
    assert cas.describe(ME, arn)["Status"] == "CREATING"
    assert store.stale_pending_cas(older_than=T0) == [ca_id(arn)]
    assert wakeups_failed(CREATE_CA_KEY_TASK) == before + 1  # counted for /metrics


# The empty change asks for a security standard this service does not offer.
BAD_CONFIGS = [{"KeyAlgorithm": "SM2"}, {"SigningAlgorithm": "SHA256WITHRSA"}, {"Subject": {}}, {}]


@pytest.mark.parametrize("change", BAD_CONFIGS)
def test_create_refuses_bad_configuration_and_stores_nothing(cas, queue, change):
    p = params(KeyStorageSecurityStandard="CCPC_LEVEL_1_OR_HIGHER") if not change else params()
    p["CertificateAuthorityConfiguration"].update(change)
    with pytest.raises(InvalidArgument):
        cas.create(ME, p)
    assert queue.created == [] and cas.list(ME, None, None, None) == ([], None)


def test_csr_in_progress_until_the_key_is_generated(cas, store, clock):
    arn = cas.create(ME, params())
    with pytest.raises(InProgress):
        cas.csr(ME, arn)
    clock.now += 5
    cas.key_generated(ca_id(arn), "PUBLIC KEY PEM", "CSR PEM")
    assert cas.csr(ME, arn) == "CSR PEM"
    view = cas.describe(ME, arn)
    assert view["Status"] == "PENDING_CERTIFICATE" and view["LastStateChangeAt"] == T0 + 5
    assert store.stale_pending_cas(older_than=T0 + 60) == []


def test_creation_failed_is_final(cas):
    arn = cas.create(ME, params())
    cas.creation_failed(ca_id(arn), "UNSUPPORTED_ALGORITHM")
    view = cas.describe(ME, arn)
    assert (view["Status"], view["FailureReason"]) == ("FAILED", "UNSUPPORTED_ALGORITHM")
    with pytest.raises(RequestFailed):
        cas.csr(ME, arn)
    cas.key_generated(ca_id(arn), "PUBLIC KEY PEM", "CSR PEM")  # a late, redelivered job
    assert cas.describe(ME, arn)["Status"] == "FAILED"


def test_a_late_failure_report_does_not_undo_a_generated_key(cas):
    arn = ready(cas, "PENDING_CERTIFICATE")
    cas.creation_failed(ca_id(arn), "REQUEST_TIMED_OUT")  # a redelivered job that gave up
    view = cas.describe(ME, arn)
    assert view["Status"] == "PENDING_CERTIFICATE" and "FailureReason" not in view
    assert cas.csr(ME, arn) == "CSR PEM"


# -- update ---------------------------------------------------------------------------------------


def test_update_switches_active_and_disabled(cas, clock):
    arn = ready(cas, "ACTIVE")
    clock.now += 10
    cas.update(ME, arn, "DISABLED", None)
    assert cas.describe(ME, arn)["Status"] == "DISABLED"
    assert cas.describe(ME, arn)["LastStateChangeAt"] == T0 + 10
    cas.update(ME, arn, "ACTIVE", None)
    assert cas.describe(ME, arn)["Status"] == "ACTIVE"


def test_update_replaces_the_revocation_configuration(cas):
    arn = ready(cas, "ACTIVE")
    cas.update(ME, arn, None, {"CrlConfiguration": {"Enabled": True}})
    crl = cas.describe(ME, arn)["RevocationConfiguration"]["CrlConfiguration"]
    assert crl["Enabled"] is True and crl["ExpirationInDays"] == 7


@pytest.mark.parametrize("status", ["PENDING_CERTIFICATE", "FAILED", "CREATING"])
def test_update_only_from_active_or_disabled(cas, status):
    arn = ready(cas, status)
    with pytest.raises(InvalidState):
        cas.update(ME, arn, "ACTIVE", None)
    assert cas.describe(ME, arn)["Status"] == status


def test_an_expired_ca_cannot_be_updated(cas):
    arn = ready(cas, "ACTIVE")
    force(cas, arn, NotAfter=T0 - 1)
    with pytest.raises(InvalidState, match="EXPIRED"):
        cas.update(ME, arn, "DISABLED", None)


@pytest.mark.parametrize("status", ["DELETED", "PENDING_CERTIFICATE", "EXPIRED"])
def test_update_can_only_set_active_or_disabled(cas, status):
    arn = ready(cas, "ACTIVE")
    with pytest.raises(InvalidArgument):
        cas.update(ME, arn, status, None)
    with pytest.raises(InvalidArgument):
        cas.update(ME, arn, None, None)


# -- delete and restore ---------------------------------------------------------------------------


def test_an_active_ca_cannot_be_deleted(cas):
    arn = ready(cas, "ACTIVE")
    with pytest.raises(InvalidState):
        cas.delete(ME, arn, 7)
    assert cas.describe(ME, arn)["Status"] == "ACTIVE"


@pytest.mark.parametrize("status", ["CREATING", "FAILED"])
def test_delete_while_creating_or_failed_is_immediate(cas, store, status):
    arn = cas.create(ME, params())
    if status == "FAILED":
        cas.creation_failed(ca_id(arn), "OTHER")
    cas.delete(ME, arn, 7)
    with pytest.raises(NotFound):
        cas.load(ME, parse_ca_arn(arn))
    with pytest.raises(NotFound):
        cas.restore(ME, arn)
    assert cas.list(ME, None, None, None) == ([], None)
    assert store.stale_pending_cas(older_than=T0 + 3600) == []


def test_delete_of_a_disabled_ca_is_restorable_within_the_window(cas):
    arn = ready(cas, "DISABLED")
    cas.delete(ME, arn, 7)
    view = cas.describe(ME, arn)
    assert view["Status"] == "DELETED" and view["RestorableUntil"] == T0 + 7 * DAY
    with pytest.raises(InvalidState):
        cas.delete(ME, arn, 7)
    with pytest.raises(InvalidState):
        cas.tag(ME, arn, [{"Key": "k", "Value": "v"}])
    cas.restore(ME, arn)
    view = cas.describe(ME, arn)
    assert view["Status"] == "DISABLED" and "RestorableUntil" not in view
    with pytest.raises(InvalidState):
        cas.restore(ME, arn)  # no longer deleted


@pytest.mark.parametrize("status", ["PENDING_CERTIFICATE", "DISABLED"])
def test_restore_returns_the_status_before_deletion(cas, status):
    arn = ready(cas, status)
    cas.delete(ME, arn, None)
    assert cas.describe(ME, arn)["RestorableUntil"] == T0 + 30 * DAY  # the default window
    cas.restore(ME, arn)
    assert cas.describe(ME, arn)["Status"] == status


def test_an_expired_ca_can_be_deleted_and_restored(cas):
    arn = ready(cas, "ACTIVE")
    force(cas, arn, NotAfter=T0 - 1)
    cas.delete(ME, arn, 7)
    assert cas.describe(ME, arn)["Status"] == "DELETED"  # DELETED wins over EXPIRED
    cas.restore(ME, arn)
    assert cas.describe(ME, arn)["Status"] == "EXPIRED"


def test_a_deleted_ca_past_its_window_is_gone(cas, store, clock):
    arn = ready(cas, "DISABLED")
    cas.delete(ME, arn, 7)
    clock.now += 7 * DAY + 1
    assert cas.list(ME, None, None, None) == ([], None)
    with pytest.raises(NotFound):
        cas.restore(ME, arn)
    with pytest.raises(NotFound):
        cas.describe(ME, arn)
    assert store.get_ca(ca_id(arn)) is None


# -- ownership ------------------------------------------------------------------------------------


def test_another_account_cannot_see_or_touch_a_ca(cas):
    arn = ready(cas, "DISABLED")
    stranger_arn = arn.replace(ME.account, STRANGER.account)
    for target in (arn, stranger_arn):
        with pytest.raises(NotFound):
            cas.describe(STRANGER, target)
        with pytest.raises(NotFound):
            cas.csr(STRANGER, target)
        with pytest.raises(NotFound):
            cas.update(STRANGER, target, "ACTIVE", None)
        with pytest.raises(NotFound):
            cas.delete(STRANGER, target, 7)
        with pytest.raises(NotFound):
            cas.tag(STRANGER, target, [{"Key": "k", "Value": "v"}])
    assert cas.list(STRANGER, None, None, None) == ([], None)
    assert cas.describe(ME, arn)["Status"] == "DISABLED"


# -- tags -----------------------------------------------------------------------------------------


def test_tags_add_overwrite_untag_and_stay_private(cas):
    arn = cas.create(ME, params(Tags=[{"Key": "team", "Value": "pki"}, {"Key": "env", "Value": "dev"}]))
    cas.tag(ME, arn, [{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "me"}])
    assert cas.list_tags(ME, arn, None, None)[0] == [
        {"Key": "team", "Value": "pki"},
        {"Key": "env", "Value": "prod"},
        {"Key": "owner", "Value": "me"},
    ]
    cas.untag(ME, arn, [{"Key": "team", "Value": "other"}, {"Key": "owner"}])
    expected = [{"Key": "team", "Value": "pki"}, {"Key": "env", "Value": "prod"}]
    assert cas.list_tags(ME, arn, None, None) == (expected, None)
    assert "Tags" not in cas.describe(ME, arn)


def test_list_tags_pages(cas):
    arn = cas.create(ME, params(Tags=[{"Key": f"k{i}", "Value": str(i)} for i in range(5)]))
    seen, token = [], None
    while True:
        page, token = cas.list_tags(ME, arn, 2, token)
        assert len(page) <= 2
        seen += page
        if token is None:
            break
    assert [t["Key"] for t in seen] == [f"k{i}" for i in range(5)]


def test_tag_limits(cas):
    arn = cas.create(ME, params(Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)]))
    with pytest.raises(TooManyTags):
        cas.tag(ME, arn, [{"Key": "one-more", "Value": "x"}])
    cas.tag(ME, arn, [{"Key": "k0", "Value": "overwrite is fine"}])
    with pytest.raises(InvalidTag):
        cas.tag(ME, arn, [{"Key": "aws:reserved", "Value": "x"}])
    with pytest.raises(TooManyTags):
        cas.create(ME, params(Tags=[{"Key": f"k{i}", "Value": ""} for i in range(51)]))
    assert len(cas.list_tags(ME, arn, 100, None)[0]) == 50


# -- list -----------------------------------------------------------------------------------------


def test_list_pages_oldest_first(cas, clock):
    arns = []
    for _ in range(5):
        clock.now += 1
        arns.append(cas.create(ME, params()))
    seen, token, pages = [], None, 0
    while True:
        page, token = cas.list(ME, 2, token, None)
        pages += 1
        seen += [v["Arn"] for v in page]
        assert all("internal" not in v for v in page)
        if token is None:
            break
    assert (seen, pages) == (arns, 3)
    assert cas.list(ME, None, None, "OTHER_ACCOUNTS") == ([], None)


# The run of nines once reached Redis's ZRANGE, which refused it: a 500 instead of InvalidNextToken.
FOREIGN = [b"pcaq-page:-1", b"other:5", b"pcaq-page:" + b"9" * 30, b"\xff\xfe"]
BAD_TOKENS = ["garbage", "!!!", *(base64.urlsafe_b64encode(t).decode() for t in FOREIGN)]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_list_refuses_tokens_it_did_not_issue(cas, token):
    cas.create(ME, params())
    with pytest.raises(InvalidNextToken):
        cas.list(ME, 2, token, None)
    arn = cas.list(ME, None, None, None)[0][0]["Arn"]
    with pytest.raises(InvalidNextToken):
        cas.list_tags(ME, arn, 2, token)


# -- effective status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "not_after", "seen"),
    [
        ("ACTIVE", T0 - 1, "EXPIRED"),
        ("DISABLED", T0 - 1, "EXPIRED"),
        ("ACTIVE", T0 + 1, "ACTIVE"),
        ("DELETED", T0 - 1, "DELETED"),
        ("PENDING_CERTIFICATE", None, "PENDING_CERTIFICATE"),
    ],
)
def test_effective_status(status, not_after, seen):
    assert effective_status({"Status": status, "NotAfter": not_after}, now=T0) == seen


def test_describe_and_list_report_expired(cas):
    arn = ready(cas, "ACTIVE")
    force(cas, arn, NotAfter=T0 - 1)
    assert cas.describe(ME, arn)["Status"] == "EXPIRED"
    assert cas.list(ME, None, None, None)[0][0]["Status"] == "EXPIRED"
    assert cas.store.get_ca(ca_id(arn))["Status"] == "ACTIVE"  # stored status is untouched
