"""The worker's functions with CA keys in a real PKCS#11 token, in process (Flask test client, real
Redis): token and software CAs side by side, and a key made for a CA deleted meanwhile destroyed."""

from __future__ import annotations

import os

import pytest
import redis

from pcaq.api.app import create_app
from pcaq.ca.authorities import Authorities
from pcaq.ca.key_store import CaKeys
from pcaq.ca.pkcs11_token import Token, TokenUnavailable
from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
from pcaq.platform.settings import load
from pcaq.records import Store, keys
from pcaq.worker.services import Services
from pcaq.worker.tasks import drain_outbox, generate_ca_key
from tests import issue_flow
from tests.hsm import ci_token, needs_token
from tests.support import private_redis_db

pytestmark = needs_token


@pytest.fixture
def flow(redis_base_url, tmp_path):
    """Services with the CI token and software keys allowed beside it, and the API's test client."""
    t = ci_token()
    with private_redis_db(redis_base_url) as url:
        settings = load(
            {
                "REDIS_URL": url,
                "PCAQ_PKCS11_MODULE": t.module,
                "PCAQ_PKCS11_TOKEN_LABEL": t.label,
                "PCAQ_PKCS11_PIN": t.pin,
                "PCAQ_ALLOW_SOFTWARE_KEYS": "true",
            }
        )
        store = Store(redis.Redis.from_url(url), settings)
        kek = os.urandom(32)
        verify_master_key(store, kek)
        queue = issue_flow.RecordingQueue()
        token = Token(settings.pkcs11_module, t.label, t.pin)
        vault = CaKeys(store, EncryptedRedisVault(store, kek), token)
        svc = Services(settings, store, queue, vault, Authorities(store, queue, settings))
        yield svc, create_app(settings).test_client(), token


def create(client, key_algorithm: str, signing: str) -> str:
    status, out = issue_flow.call(
        client,
        "CreateCertificateAuthority",
        {
            "CertificateAuthorityType": "ROOT",
            "CertificateAuthorityConfiguration": {
                "KeyAlgorithm": key_algorithm,
                "SigningAlgorithm": signing,
                "Subject": {"CommonName": key_algorithm},
            },
        },
    )
    assert status == 200, out
    return out["CertificateAuthorityArn"]


def test_token_and_software_cas_side_by_side(flow):
    svc, client, token = flow
    in_token = issue_flow.active_root(svc, client)  # EC P-256: made in the token
    in_software = create(client, "ML_DSA_65", "ML_DSA_65")  # allowed to stay in software here
    generate_ca_key(svc, in_software.rsplit("/", 1)[1])

    records = {
        arn: svc.store.r.get(keys.ca_private_key(arn.rsplit("/", 1)[1])) for arn in (in_token, in_software)
    }
    assert records[in_token][:1] == b"\x02" and records[in_software][:1] == b"\x01"
    described = {
        arn: issue_flow.call(client, "DescribeCertificateAuthority", {"CertificateAuthorityArn": arn})[1][
            "CertificateAuthority"
        ]
        for arn in (in_token, in_software)
    }
    assert described[in_token]["KeyStorageSecurityStandard"] == "FIPS_140_2_LEVEL_3_OR_HIGHER"
    assert "KeyStorageSecurityStandard" not in described[in_software]  # no FIPS level for a software key

    arns = [issue_flow.issue(client, in_token) for _ in range(3)]
    assert drain_outbox(svc) == 3
    for arn in arns:
        status, out = issue_flow.call(
            client, "GetCertificate", {"CertificateAuthorityArn": in_token, "CertificateArn": arn}
        )
        assert status == 200 and out["CertificateChain"]


def test_a_key_made_for_a_ca_deleted_meanwhile_is_destroyed_in_the_token(flow, monkeypatch):
    svc, client, token = flow
    arn = create(client, "EC_secp384r1", "SHA384WITHECDSA")
    ca_id = arn.rsplit("/", 1)[1]
    made = svc.vault.generate

    def generate_then_delete(*args):
        key = made(*args)  # the key exists in the token now; the CA goes before it is recorded
        status, out = issue_flow.call(client, "DeleteCertificateAuthority", {"CertificateAuthorityArn": arn})
        assert status == 200, out
        return key

    monkeypatch.setattr(svc.vault, "generate", generate_then_delete)
    generate_ca_key(svc, ca_id)
    assert svc.store.r.get(keys.ca_private_key(ca_id)) is None
    with pytest.raises(TokenUnavailable, match="not in the PKCS#11 token"):
        token.public_key(ca_id)
