"""Secrets stay secret: a stack run with a known master key creates CAs and issues; then the whole log
of the run, every response body (successes and errors), the operator endpoints and every value in
Redis are searched for the master key and each CA private key, in every encoding. Only the encrypted
blobs may hold them, and those are checked by reading Redis directly (invariant 3 of docs/architecture.md)."""

from __future__ import annotations

import base64
import os
import urllib.request

import pytest
import redis
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pcaq.ca.vault import EncryptedRedisVault
from pcaq.errors import MasterKeyError
from pcaq.platform.settings import load
from pcaq.records import Store, keys
from tests.acmpca import activate_root, create_ca, fetch, issue, make_csr, pca_client
from tests.support import REPO, pcaq_argv, running_stack

pytestmark = pytest.mark.integration

KEK = os.urandom(32)
API_SECRET = "api-secret-" + os.urandom(12).hex()


class Recorder:
    """Keeps every raw HTTP response body a boto3 client received."""

    def __init__(self):
        self.bodies: list[bytes] = []

    def __call__(self, http_response=None, **_):
        if http_response is not None:
            self.bodies.append(http_response.content or b"")


@pytest.fixture(scope="module")
def run(tmp_path_factory, redis_base_url):
    """A stack with a known master key and debug logging, driven through a typical day."""
    env = {
        "PCAQ_MASTER_KEY": base64.b64encode(KEK).decode(),
        "PCAQ_LOG_LEVEL": "DEBUG",
        "PCAQ_CREDENTIALS": f"AKIDEXAMPLE:{API_SECRET}:111111111111",
    }
    with running_stack(tmp_path_factory.mktemp("secrets"), env=env, redis_base_url=redis_base_url) as stack:
        recorder = Recorder()
        pca = pca_client(stack.endpoint_url, secret=API_SECRET)
        pca.meta.events.register("after-call", recorder)
        ec_root, _ = activate_root(pca)
        rsa_root, _ = activate_root(pca, key="RSA_2048", signing="SHA256WITHRSA")
        pending = create_ca(pca, "SUBORDINATE", key="EC_secp384r1")
        for root, key in ((ec_root, None), (rsa_root, rsa.generate_private_key(65537, 2048))):
            signing = "SHA256WITHECDSA" if key is None else "SHA256WITHRSA"
            fetch(pca, root, issue(pca, root, make_csr(key), signing))
        for call in (  # errors must not leak either
            lambda: pca.issue_certificate(
                CertificateAuthorityArn=ec_root, Csr=b"junk", SigningAlgorithm="SHA256WITHECDSA",
                Validity={"Value": 1, "Type": "DAYS"},
            ),
            lambda: pca.import_certificate_authority_certificate(CertificateAuthorityArn=pending, Certificate=b"x"),
            lambda: pca.get_certificate(CertificateAuthorityArn=ec_root, CertificateArn=ec_root + "/certificate/ab"),
        ):  # fmt: skip
            with pytest.raises(ClientError):
                call()
        operator = [_get(stack.endpoint_url + path) for path in ("/healthz", "/readyz", "/metrics")]
        audit = [_pcaq(stack, "audit", "--ca", arn) for arn in (ec_root, rsa_root, pending)]
        client = redis.Redis.from_url(stack.redis_url)
        store = Store(client, load({"REDIS_URL": stack.redis_url}))
        cas = {arn: arn.rsplit("/", 1)[1] for arn in (ec_root, rsa_root, pending)}
        private_keys = {arn: EncryptedRedisVault(store, KEK).get(ca_id) for arn, ca_id in cas.items()}
        stack.stop()  # flush and close every log before reading it
        outputs = {
            "log": stack.log().encode(),
            "responses": b"\n".join(recorder.bodies),
            "operator endpoints": b"\n".join(operator),
            "pcaq audit": "\n".join(audit).encode(),
            "redis": redis_values(client, skip={keys.ca_private_key(i) for i in cas.values()}),
        }
        yield {"outputs": outputs, "private_keys": private_keys, "cas": cas, "client": client, "store": store}
        client.close()


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read()
    except Exception as exc:  # noqa: BLE001 - a closed endpoint is fine; its body is what is searched
        return getattr(exc, "read", lambda: b"")()


def _pcaq(stack, *args) -> str:
    import subprocess

    env = {**stack.env, "REDIS_URL": stack.redis_url}
    proc = subprocess.run(pcaq_argv(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def redis_values(client: redis.Redis, skip: set[str]) -> bytes:
    """Every key name and value in the database, whatever its type (the encrypted CA keys aside)."""
    out = []
    for name in client.scan_iter(count=1000):
        out.append(name)
        if name.decode() in skip:
            continue
        kind = client.type(name).decode()
        if kind == "string":
            out.append(client.get(name) or b"")
        elif kind == "hash":
            out += [b for kv in client.hgetall(name).items() for b in kv]
        elif kind == "list":
            out += client.lrange(name, 0, -1)
        elif kind == "set":
            out += list(client.smembers(name))
        elif kind == "zset":
            out += client.zrange(name, 0, -1)
        elif kind == "stream":
            out += [b for _, fields in client.xrange(name) for kv in fields.items() for b in kv]
    return b"\n".join(out)


def encodings(secret: bytes) -> dict[str, bytes]:
    """The forms a secret could leak in."""
    b64 = base64.b64encode(secret)
    return {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": b64,
        "base64 unpadded": b64.rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(secret).rstrip(b"="),
        "base64 of base64": base64.b64encode(b64),
    }


def key_material(private_key) -> dict[str, bytes]:
    """A CA key in every form: PEM (PKCS#8 and traditional), DER, and its secret numbers."""
    forms: dict[str, bytes] = {}
    for label, fmt in (
        ("PKCS8", serialization.PrivateFormat.PKCS8),
        ("traditional", serialization.PrivateFormat.TraditionalOpenSSL),
    ):
        pem = private_key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        forms[f"{label} PEM"] = pem
        forms[f"{label} PEM body line"] = pem.splitlines()[2]  # a line of pure key base64
        der = private_key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        for name, value in encodings(der).items():
            forms[f"{label} DER {name}"] = value
    numbers = private_key.private_numbers()
    secrets = [numbers.private_value] if isinstance(private_key, ec.EllipticCurvePrivateKey) else [
        numbers.d, numbers.p, numbers.q
    ]  # fmt: skip
    for i, value in enumerate(secrets):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        forms[f"secret number {i} decimal"] = str(value).encode()
        forms[f"secret number {i} hex"] = format(value, "x").encode()
        forms[f"secret number {i} base64"] = base64.b64encode(raw)
    return forms


def leaks(outputs: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{what} in {where}"
        for what, needle in needles.items()
        for where, hay in outputs.items()
        if needle in hay
    ]


def test_the_run_produced_output_to_search(run):
    outputs = run["outputs"]
    assert b"CertificateIssued" in outputs["pcaq audit"]
    assert b"-----BEGIN CERTIFICATE-----" in outputs["responses"]
    assert b"MalformedCSRException" in outputs["responses"]
    assert len(outputs["log"]) > 2000 and b"DEBUG" in outputs["log"]
    assert len(run["private_keys"]) == 3
    # The search itself finds a key where there is one.
    some_key = next(iter(run["private_keys"].values()))
    pem = some_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert leaks({"a log line": b"oops " + pem.splitlines()[2] + b"\n"}, key_material(some_key))


def test_the_master_key_appears_nowhere(run):
    assert leaks(run["outputs"], encodings(KEK)) == []


def test_the_api_secret_appears_nowhere(run):
    assert leaks(run["outputs"], {"secret": API_SECRET.encode()}) == []


def test_no_ca_private_key_appears_anywhere(run):
    found = []
    for arn, private_key in run["private_keys"].items():
        found += [f"{arn}: {leak}" for leak in leaks(run["outputs"], key_material(private_key))]
    assert found == []


def test_ca_keys_are_encrypted_at_rest(run):
    """Read Redis directly: each CA key is an AES-GCM blob bound to its CA, opened only by the master key."""
    client, store = run["client"], run["store"]
    for arn, ca_id in run["cas"].items():
        blob = client.get(keys.ca_private_key(ca_id))
        assert blob is not None and blob[:1] == b"\x01"
        assert leaks({"blob": blob}, key_material(run["private_keys"][arn])) == []
        assert b"PRIVATE KEY" not in blob
        with pytest.raises(ValueError):
            serialization.load_der_private_key(blob, None)
        opened = EncryptedRedisVault(store, KEK).get(ca_id)
        expected = run["private_keys"][arn].public_key().public_numbers()
        assert opened.public_key().public_numbers() == expected
        with pytest.raises(MasterKeyError):
            EncryptedRedisVault(store, os.urandom(32)).get(ca_id)
    # A blob copied onto another CA does not open there (the CA id is bound in as associated data).
    first, second = list(run["cas"].values())[:2]
    original = client.get(keys.ca_private_key(second))
    client.set(keys.ca_private_key(second), client.get(keys.ca_private_key(first)))
    try:
        with pytest.raises(MasterKeyError):
            EncryptedRedisVault(store, KEK).get(second)
    finally:
        client.set(keys.ca_private_key(second), original)
