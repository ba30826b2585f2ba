"""CA keys in a PKCS#11 token, end to end on ``pcaq up`` configured with the token's variables only:
a CA of every key type made in the token, its certificate, leaves, CRL and OCSP answers signed there
(pkilint and ``openssl verify``), the private key in the token sensitive and never extractable, and
nothing of it in Redis."""

from __future__ import annotations

import json

import pytest
import redis
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pcaq.ca.pkcs11_token import Token, key_label
from pcaq.platform.settings import load
from pcaq.records import Store, keys
from tests.acmpca import ALGS, activate_root, create_ca, error_code, fetch, issue, make_csr, pca_client
from tests.hsm import ci_token, needs_token
from tests.integration.test_revocation import crl_url, http_get, ocsp_url, openssl_ocsp
from tests.pki import lint_crl, openssl_crl_verifies, openssl_verify, pkilint_findings
from tests.support import running_stack, wait_until

pytestmark = [pytest.mark.integration, needs_token]

TOKEN_KEYS = ["RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]
REVOCATION = {
    "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 2},
    "OcspConfiguration": {"Enabled": True},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_base_url):
    """``pcaq up`` with two workers and the CI token, given as the documented variables only."""
    tmp = tmp_path_factory.mktemp("hsm")
    env = ci_token().stack_env(tmp / "pin")
    with running_stack(tmp, env=env, redis_base_url=redis_base_url, workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def pca(stack):
    return pca_client(stack.endpoint_url)


@pytest.fixture(scope="module")
def token():
    t = ci_token()
    return Token(t.module, t.label, t.pin)  # this test process's own session, to look into the token


def redis_values(url: str) -> list[bytes]:
    """Every string, hash field and stream field value in the stack's Redis database."""
    r = redis.Redis.from_url(url)
    values: list[bytes] = []
    for name in r.scan_iter(count=1000):
        kind = r.type(name)
        if kind == b"string":
            values.append(r.get(name) or b"")
        elif kind == b"hash":
            values += list(r.hgetall(name).values())
        elif kind == b"stream":
            values += [v for _, entry in r.xrange(name) for v in entry.values()]
    return values


@pytest.mark.parametrize("key", TOKEN_KEYS)
def test_a_ca_of_each_key_type_keeps_its_key_in_the_token_and_signs_there(stack, pca, token, key):
    arn, root_pem = activate_root(pca, key=key, signing=ALGS[key])
    ca_id = arn.rsplit("/", 1)[1]
    _, leaf_pem, chain = fetch(pca, arn, issue(pca, arn, make_csr(), signing=ALGS[key]))
    assert chain is not None
    openssl_verify(leaf_pem, [], root_pem)
    assert pkilint_findings(root_pem) == [] and pkilint_findings(leaf_pem) == []

    # The key pair is in the token under the documented label and id, made there, never extractable.
    attributes = token.private_key_attributes(ca_id)
    assert attributes == {
        "label": key_label(ca_id),
        "sensitive": True,
        "extractable": False,
        "always_sensitive": True,
        "never_extractable": True,
        "local": True,
    }
    root = x509.load_pem_x509_certificate(root_pem.encode())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert token.public_key(ca_id).public_bytes(serialization.Encoding.DER, spki) == root.public_key(
    ).public_bytes(serialization.Encoding.DER, spki)  # fmt: skip

    # Redis holds a reference only, and no private key anywhere.
    r = redis.Redis.from_url(stack.redis_url)
    ref = r.get(keys.ca_private_key(ca_id))
    assert ref[:1] == b"\x02" and json.loads(ref[1:]) == {"token": token.label, "id": ca_id.replace("-", "")}
    assert not any(b"PRIVATE KEY" in v for v in redis_values(stack.redis_url))

    # Described as kept to the standard asked (AWS's default), and the audit trail says where.
    ca = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert ca["KeyStorageSecurityStandard"] == "FIPS_140_2_LEVEL_3_OR_HIGHER"
    store = Store(r, load({"REDIS_URL": stack.redis_url}))
    generated = [f for _, f in store.read_audit(ca_id) if f["event"] == "CertificateAuthorityKeyGenerated"]
    assert [json.loads(f["details"])["KeyStorage"] for f in generated] == [
        f"PKCS#11 token {token.label}, CKA_LABEL {key_label(ca_id)}, CKA_ID {ca_id.replace('-', '')}"
    ]


def test_crl_and_ocsp_answers_are_signed_by_the_token(stack, pca, tmp_path):
    arn = create_ca(pca, key="RSA_2048", RevocationConfiguration=REVOCATION)
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"].encode()
    own = issue(pca, arn, csr, "SHA256WITHRSA_PSS", "RootCACertificate", {"Value": 5, "Type": "YEARS"})
    _, root_pem, _ = fetch(pca, arn, own)
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=root_pem.encode())
    leaf, leaf_pem, _ = fetch(pca, arn, issue(pca, arn, make_csr(), signing="SHA256WITHRSA"))
    pca.revoke_certificate(
        CertificateAuthorityArn=arn,
        CertificateSerial=format(leaf.serial_number, "x"),
        RevocationReason="KEY_COMPROMISE",
    )

    def revoked_crl() -> bytes | None:
        der = http_get(crl_url(leaf))[1]
        crl = x509.load_der_x509_crl(der)
        return der if crl.get_revoked_certificate_by_serial_number(leaf.serial_number) else None

    der = wait_until(revoked_crl, timeout=15, interval=0.1, what="the revoked serial in the CRL")
    assert openssl_crl_verifies(der, root_pem.encode()) and lint_crl(der) == []
    openssl_ocsp(tmp_path, root_pem, leaf_pem, ocsp_url(leaf), root_pem, "leaf")  # verified and linted


def test_an_ml_dsa_ca_is_refused_while_software_keys_are_not_allowed(pca):
    with pytest.raises(ClientError) as exc:
        create_ca(pca, key="ML_DSA_65", wait=False)
    assert error_code(exc) == "InvalidArgsException"
    assert "PCAQ_ALLOW_SOFTWARE_KEYS" in exc.value.response["Error"]["Message"]


def test_readyz_reports_the_token_and_no_process_logged_the_pin(stack):
    status, body = http_get(stack.endpoint_url + "/readyz")
    assert status == 200 and json.loads(body)["token"] is True
    pin = ci_token().pin
    if len(pin) < 8:
        pytest.skip("a PIN this short may appear in a log by chance (CI's has 16 characters)")
    assert pin not in stack.log()
