"""The console's access rules and error pages through Flask's test client on a real Redis (the browser
tests in tests/integration/test_console.py drive the pages themselves)."""

from __future__ import annotations

import json
import re

import pytest
import redis

from pcaq.api.app import create_app
from pcaq.api.console.pages_certificates import PAGE_SIZE
from pcaq.ca.audit_trail import AuditTrail
from pcaq.platform.settings import load
from pcaq.records import keys
from pcaq.worker.tasks import drain_outbox
from tests.revocation_flow import issue_leaf, make_root
from tests.support import private_redis_db

CREDENTIALS = "AKIDONE:first-secret:111111111111,AKIDTWO:second-secret:222222222222"


@pytest.fixture
def redis_url(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        yield url


def _client(url: str, **env: str):
    return create_app(load({"REDIS_URL": url, **env})).test_client()


def _error(response) -> str:
    found = re.search(rb'id="error"[^>]*>([^<]*)<', response.data)
    return found.group(1).decode() if found else ""


def test_open_development_mode_is_open_and_says_so_on_every_page(redis_url):
    client = _client(redis_url)
    for path in ("/console/", "/console/issuance", "/console/cas/0b5c3a1e-1111-4222-8333-444455556666"):
        page = client.get(path)
        assert b'id="open-mode"' in page.data, path
    assert client.get("/console/sign-in").status_code == 302  # nothing to sign in with
    remote = client.get("/console/", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert remote.status_code == 403 and "this machine only" in _error(remote)


def test_sign_in_checks_the_secret_and_sets_a_strict_http_only_expiring_cookie(redis_url):
    client = _client(redis_url, PCAQ_CREDENTIALS=CREDENTIALS, PCAQ_CONSOLE_SESSION_SECONDS="600")
    assert client.get("/console/").headers["Location"].startswith("/console/sign-in")
    wrong = client.post("/console/sign-in", data={"access_key": "AKIDONE", "secret": "second-secret"})
    assert wrong.status_code == 401 and "do not match" in _error(wrong)
    forged = client.post(
        "/console/sign-in",
        data={"access_key": "AKIDONE", "secret": "first-secret"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403 and "Set-Cookie" not in forged.headers
    unknown = client.post("/console/sign-in", data={"access_key": "NOPE", "secret": "first-secret"})
    assert unknown.status_code == 401
    right = client.post(
        "/console/sign-in",
        data={"access_key": "AKIDONE", "secret": "first-secret", "next": "https://evil.test/"},
    )
    assert right.status_code == 303 and right.headers["Location"] == "/console/"  # never to another site
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=600" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure (below)
    assert b"AKIDONE" in client.get("/console/").data
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    stored = redis.Redis.from_url(redis_url).keys(keys.console_session("*"))
    assert len(stored) == 1 and token.encode() not in stored[0]  # only its digest is kept
    assert 0 < redis.Redis.from_url(redis_url).ttl(stored[0]) <= 600


def test_sign_in_attempts_are_limited_per_access_key(redis_url):
    from pcaq.api.console.access import SIGN_IN_RATE

    client = _client(redis_url, PCAQ_CREDENTIALS=CREDENTIALS)
    for _ in range(SIGN_IN_RATE.burst):
        assert (
            client.post("/console/sign-in", data={"access_key": "AKIDONE", "secret": "guess"}).status_code
            == 401
        )
    limited = client.post("/console/sign-in", data={"access_key": "AKIDONE", "secret": "first-secret"})
    assert limited.status_code == 429 and "Too many sign-in attempts" in _error(limited)
    other = client.post("/console/sign-in", data={"access_key": "AKIDTWO", "secret": "second-secret"})
    assert other.status_code == 303  # another key is not held back


def test_the_cookie_is_secure_over_tls(redis_url):
    client = _client(redis_url, PCAQ_CREDENTIALS=CREDENTIALS)
    answer = client.post(
        "/console/sign-in",
        data={"access_key": "AKIDTWO", "secret": "second-secret"},
        base_url="https://pcaq.test",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


def test_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session(redis_url):
    client = _client(redis_url, PCAQ_CREDENTIALS=CREDENTIALS)
    client.post("/console/sign-in", data={"access_key": "AKIDONE", "secret": "first-secret"})
    page = client.get("/console/").data
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    refused = client.post("/console/sign-out", data={"csrf": csrf[:-1] + "x"})
    assert refused.status_code == 403 and "did not come from this console" in _error(refused)
    assert client.post("/console/sign-out").status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in
    assert client.post("/console/sign-out", data={"csrf": csrf}).status_code == 303
    assert client.get("/console/").status_code == 302  # signed out: back to the sign-in page


def test_a_session_made_without_credentials_opens_nothing_once_they_are_configured(redis_url):
    open_client = _client(redis_url)
    open_client.get("/console/")
    cookie = open_client.get_cookie("pcaq_console", path="/console/")
    guarded = _client(redis_url, PCAQ_CREDENTIALS=CREDENTIALS)
    guarded.set_cookie("pcaq_console", cookie.value, path="/console/")
    assert guarded.get("/console/").status_code == 302


def test_failures_are_pages_with_a_message_never_a_trace(redis_url, monkeypatch):
    client = _client(redis_url)
    missing = client.get("/console/no/such/page")
    assert missing.status_code == 404 and "no such page" in _error(missing)
    assert client.get("/not-the-console").status_code == 404  # other paths keep Flask's own answer

    from pcaq.records import Store

    def broken(self, accounts):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Store, "index_counts", broken)
    failed = client.get("/console/")
    assert (
        failed.status_code == 500
        and b"secret internals" not in failed.data
        and b"Traceback" not in failed.data
    )

    def down(self, accounts):
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(Store, "index_counts", down)
    unavailable = client.get("/console/")
    assert unavailable.status_code == 503 and "not reachable" in _error(unavailable)


def test_the_console_can_be_turned_off(redis_url):
    assert _client(redis_url, PCAQ_CONSOLE="off").get("/console/").status_code == 404
    with pytest.raises(SystemExit, match="PCAQ_CONSOLE"):
        load({"PCAQ_CONSOLE": "maybe"})
    with pytest.raises(SystemExit, match="PCAQ_CONSOLE_SESSION_SECONDS"):
        load({"PCAQ_CONSOLE_SESSION_SECONDS": "10"})


def test_a_ca_without_a_certificate_yet_is_listed_and_shown(redis_url):
    client = _client(redis_url)
    created = client.post(
        "/",
        json={
            "CertificateAuthorityType": "ROOT",
            "CertificateAuthorityConfiguration": {
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": "x" * 64},
            },
        },
        headers={
            "X-Amz-Target": "ACMPrivateCA.CreateCertificateAuthority",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    ca_id = json.loads(created.data)["CertificateAuthorityArn"].rsplit("/", 1)[1]
    listed = client.get("/console/")
    assert listed.status_code == 200 and b"x" * 64 in listed.data and b"CREATING" in listed.data
    page = client.get(f"/console/cas/{ca_id}")
    assert page.status_code == 200 and b"No certificate yet" in page.data
    assert client.get(f"/console/cas/{ca_id}/certificates?status=pending").status_code == 200


@pytest.fixture
def flow_with_limits(redis_base_url, tmp_path):
    """The in-process revocation flow (tests/revocation_flow.py) with RevokeCertificate limited to one
    call, then one per 1000 s, per caller."""
    import os

    from pcaq.ca.authorities import Authorities
    from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
    from pcaq.records import Store
    from pcaq.worker.services import Services
    from tests.revocation_flow import Flow, RecordingQueue

    with private_redis_db(redis_base_url) as url:
        settings = load(
            {
                "REDIS_URL": url,
                "PCAQ_RATE_LIMITS": "RevokeCertificate=0.001/1",
                "PCAQ_AUDIT_DIR": str(tmp_path),
            }
        )
        store = Store(redis.Redis.from_url(url), settings)
        kek = os.urandom(32)
        verify_master_key(store, kek)
        queue = RecordingQueue()
        authorities = Authorities(store, queue, settings)
        svc = Services(settings, store, queue, EncryptedRedisVault(store, kek), authorities)
        yield Flow(svc, create_app(settings).test_client())


def test_revoking_in_the_console_is_revoke_certificate_audited_and_throttled_as_the_api(flow_with_limits):
    flow = flow_with_limits
    arn, _ = make_root(flow)
    ca_id = arn.rsplit("/", 1)[1]
    serials = [issue_leaf(flow, arn)[1] for _ in range(2)]
    client = flow.client

    def revoke(serial: str):
        form = client.get(f"/console/cas/{ca_id}/certificates/{serial}/revoke").data
        csrf = re.search(rb'id="revoke-form".*?name="csrf" value="([^"]+)"', form, re.S).group(1).decode()
        return client.post(
            f"/console/cas/{ca_id}/certificates/{serial}/revoke", data={"csrf": csrf, "reason": "SUPERSEDED"}
        )

    assert revoke(serials[0]).status_code == 303
    entry = AuditTrail(flow.svc.store).entries(arn)[-1]
    assert entry.event == "RevokeCertificate" and entry.details["CertificateSerial"] == serials[0]
    assert entry.details["RevocationReason"] == "SUPERSEDED" and len(entry.request_id) == 36
    throttled = revoke(serials[1])  # the bucket of one is empty
    assert throttled.status_code == 429 and "Rate exceeded" in _error(throttled)
    assert flow.svc.store.certificate_rows(ca_id, [serials[1]])[0].revoked_at is None


def test_a_long_list_pages_forward_from_a_cursor(flow_with_limits):
    flow = flow_with_limits
    arn, _ = make_root(flow)
    ca_id = arn.rsplit("/", 1)[1]
    for _ in range(PAGE_SIZE + 1):  # with the root's own: PAGE_SIZE + 2 issued
        issue_leaf(flow, arn, signed=False)
    drain_outbox(flow.svc)
    first = flow.client.get(f"/console/cas/{ca_id}/certificates").data.decode()
    serials = re.findall(r'<td class="serial"><a [^>]*>([0-9a-f]+)</a>', first)
    assert len(serials) == PAGE_SIZE and 'id="first-page"' not in first
    following = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = flow.client.get(following).data.decode()
    more = re.findall(r'<td class="serial"><a [^>]*>([0-9a-f]+)</a>', second)
    assert len(more) == 2 and not set(more) & set(serials)
    assert 'id="first-page"' in second and 'id="next-page"' not in second
