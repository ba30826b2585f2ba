"""Weak and blocklisted keys (shared/pki/key_checks.py) are refused before signing, with the reason.

The weak RSA keys are made here from chosen primes: close primes (Fermat), primes of the form
k*M + 65537^a mod M (ROCA, the Infineon structure) and a small prime factor, by tests/weak_keys.py (the
integration tests use them too).
"""

from __future__ import annotations

import time

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pcaq.errors import InvalidArgument, MalformedCSR
from pcaq.pki import certificates, key_checks
from pcaq.pki.key_checks import KeyBlocklist, fingerprints_in_text, spki_fingerprint
from pcaq.platform.settings import load
from pcaq.records import Store
from tests.support import private_redis_db
from tests.weak_keys import E, fermat_key, roca_key, small_factor_key


def csr_for(key, cn: str = "weak.example.com") -> x509.CertificateSigningRequest:
    """A CSR signed by ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    return builder.sign(key, hashes.SHA256())


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test starts with an empty operator blocklist and an empty verdict cache."""
    monkeypatch.setattr(key_checks, "_operator_blocklist", KeyBlocklist())
    monkeypatch.setattr(key_checks, "_verdicts", {})


@pytest.fixture(scope="module")
def weak_keys():
    return {"fermat": fermat_key(), "roca": roca_key(), "smallfactors": small_factor_key()}


@pytest.fixture(scope="module")
def good_rsa():
    return rsa.generate_private_key(E, 2048)


# -- badkeys -----------------------------------------------------------------------------------


def test_good_keys_pass(good_rsa):
    key_checks.check_public_key(good_rsa.public_key())
    key_checks.check_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    certificates.check_csr(csr_for(good_rsa))


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("fermat", "Fermat factorization / close prime vulnerability (fermat)"),
        ("roca", "Return of the Coopersmith Attack (ROCA) vulnerability (roca)"),
        ("smallfactors", "Small prime factors"),
    ],
)
def test_weak_rsa_keys_are_refused_with_the_reason(weak_keys, kind, reason):
    with pytest.raises(InvalidArgument) as caught:
        certificates.check_csr(csr_for(weak_keys[kind]))
    assert "The CSR's public key is known to be weak" in caught.value.message
    assert reason in caught.value.message
    assert "Generate a new key pair" in caught.value.message


def test_a_weak_key_is_named_even_when_the_csr_signature_is_bad(weak_keys, good_rsa):
    """A CSR carrying a published weak public key (whose private key the sender lacks) is refused for
    the key, not only for its signature."""
    csr = csr_for(good_rsa)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    good_spki = good_rsa.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    weak_spki = (
        weak_keys["roca"]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert len(good_spki) == len(weak_spki)
    swapped = bytes(der).replace(good_spki, weak_spki)
    with pytest.raises(InvalidArgument, match="ROCA"):
        certificates.check_csr(certificates.parse_csr(swapped))
    # The same CSR with a sound key is still refused, for its signature.
    fresh = (
        rsa.generate_private_key(E, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(MalformedCSR, match="signature"):
        certificates.check_csr(certificates.parse_csr(bytes(der).replace(good_spki, fresh)))


def test_verdicts_are_cached_per_key(weak_keys, good_rsa, monkeypatch):
    import badkeys

    calls = []
    real = badkeys.checkrsa
    monkeypatch.setattr(badkeys, "checkrsa", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        key_checks.check_public_key(good_rsa.public_key())
        with pytest.raises(InvalidArgument):
            key_checks.check_public_key(weak_keys["fermat"].public_key())
    assert len(calls) == 2


def test_a_damaged_badkeys_blocklist_never_ends_the_process(monkeypatch, tmp_path, weak_keys):
    """badkeys calls sys.exit when its blocklist files are missing; the checks carry on without it."""
    from badkeys.allkeys import block
    from badkeys.utils import _cachedir

    _cachedir.cache_clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where badkeys looks: nothing there
    monkeypatch.setattr(block, "_blmeta", False)  # nothing loaded yet
    monkeypatch.setattr(block, "_bldata", False)
    monkeypatch.setattr(key_checks, "_badkeys_blocklist", True)  # as if the files had been there
    try:
        key_checks.check_public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
        with pytest.raises(InvalidArgument, match="fermat"):
            key_checks.check_public_key(weak_keys["fermat"].public_key())
    finally:
        _cachedir.cache_clear()
    assert key_checks._badkeys_blocklist is False


def test_without_the_downloaded_blocklist_a_warning_is_logged_once(monkeypatch, tmp_path, caplog):
    from badkeys.utils import _cachedir

    monkeypatch.setattr(key_checks, "_badkeys_blocklist", None)
    _cachedir.cache_clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        assert key_checks.badkeys_blocklist_available() is False
        assert key_checks.badkeys_blocklist_available() is False
    finally:
        _cachedir.cache_clear()
    assert sum("badkeys --update-bl" in r.getMessage() for r in caplog.records) == 1


def test_cost_per_key(good_rsa):
    """Prints what the checks cost on the worker's hot path."""
    rsa_keys = [rsa.generate_private_key(E, 2048).public_key() for _ in range(8)]
    ec_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(100)]
    start = time.perf_counter()
    for key in rsa_keys:
        key_checks.check_public_key(key)
    per_rsa = (time.perf_counter() - start) / len(rsa_keys)
    start = time.perf_counter()
    for key in ec_keys:
        key_checks.check_public_key(key)
    per_ec = (time.perf_counter() - start) / len(ec_keys)
    start = time.perf_counter()
    for _ in range(200):
        key_checks.check_public_key(rsa_keys[0])
    per_seen = (time.perf_counter() - start) / 200
    print(
        f"key checks: RSA-2048 {per_rsa * 1e6:.0f} us, P-256 {per_ec * 1e6:.0f} us, key seen before {per_seen * 1e6:.1f} us"
    )
    assert per_rsa < 0.05 and per_ec < 0.005


# -- the operator's blocklist --------------------------------------------------------------------


def _pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_fingerprints_from_hex_and_every_pem_kind(good_rsa):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    fp_rsa, fp_ec = spki_fingerprint(good_rsa.public_key()), spki_fingerprint(ec_key.public_key())
    colons = ":".join(fp_ec[i : i + 2] for i in range(0, 64, 2)).upper()
    assert fingerprints_in_text(f"# comment\n{fp_rsa}\n\n{colons}  # the EC key\n") == {fp_rsa, fp_ec}
    csr_pem = csr_for(ec_key).public_bytes(serialization.Encoding.PEM).decode()
    private_pem = good_rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert fingerprints_in_text(_pem(good_rsa)) == {fp_rsa}
    assert fingerprints_in_text(csr_pem + private_pem) == {fp_rsa, fp_ec}


@pytest.mark.parametrize(
    "text",
    ["not a fingerprint", "ab" * 31, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
)
def test_unreadable_blocklist_text_is_refused(text):
    with pytest.raises(ValueError):
        fingerprints_in_text(text)


def test_a_key_in_the_blocklist_file_is_refused(tmp_path, good_rsa):
    path = tmp_path / "blocked"
    path.write_text(spki_fingerprint(good_rsa.public_key()) + "\n")
    key_checks.refresh_blocklist(path, None)
    with pytest.raises(InvalidArgument, match="blocklist of compromised keys"):
        certificates.check_csr(csr_for(good_rsa))
    key_checks.check_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())


def test_a_changed_file_is_read_again(tmp_path, good_rsa):
    path = tmp_path / "blocked"
    path.write_text("")
    key_checks.refresh_blocklist(path, None)
    key_checks.check_public_key(good_rsa.public_key())
    path.write_text(_pem(good_rsa))
    key_checks.refresh_blocklist(path, None)
    with pytest.raises(InvalidArgument, match="blocklist"):
        key_checks.check_public_key(good_rsa.public_key())


def test_an_unreadable_file_refuses_every_key_until_fixed(tmp_path, good_rsa):
    path = tmp_path / "blocked"
    path.write_text("garbage\n")
    key_checks.refresh_blocklist(path, None)
    with pytest.raises(InvalidArgument, match="cannot be read"):
        key_checks.check_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    path.write_text("")
    key_checks.refresh_blocklist(path, None)
    key_checks.check_public_key(good_rsa.public_key())


@pytest.fixture
def store(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        client = redis.Redis.from_url(url)
        yield Store(client, load({"REDIS_URL": url}))
        client.close()


def test_the_redis_blocklist_is_picked_up_when_its_version_moves(store, good_rsa, monkeypatch):
    key_checks.refresh_blocklist(None, store)
    key_checks.check_public_key(good_rsa.public_key())
    fingerprint = spki_fingerprint(good_rsa.public_key())
    assert store.blocklist_add([fingerprint]) == 1
    assert store.blocklist_add([fingerprint]) == 0
    reads = []
    real = store.blocklist_members
    monkeypatch.setattr(store, "blocklist_members", lambda: reads.append(1) or real())
    key_checks.refresh_blocklist(None, store)
    key_checks.refresh_blocklist(None, store)  # version unchanged: the set is not read again
    assert len(reads) == 1
    with pytest.raises(InvalidArgument, match=fingerprint):
        key_checks.check_public_key(good_rsa.public_key())
    assert store.blocklist_remove([fingerprint]) == 1
    key_checks.refresh_blocklist(None, store)
    key_checks.check_public_key(good_rsa.public_key())
    assert store.blocklist_members() == set()


def test_pcaq_blocklist_command(store, tmp_path, good_rsa, capsys):
    from pcaq.cli import main as cli

    pem = tmp_path / "compromised.pem"
    pem.write_text(_pem(good_rsa))
    url = store.settings.effective_redis_url
    assert cli.main(["blocklist", "add", str(pem), "--redis-url", url]) == 0
    fingerprint = spki_fingerprint(good_rsa.public_key())
    assert store.blocklist_members() == {fingerprint}
    capsys.readouterr()
    assert cli.main(["blocklist", "list", "--redis-url", url]) == 0
    assert capsys.readouterr().out.split() == [fingerprint]
    assert cli.main(["blocklist", "remove", str(pem), "--redis-url", url]) == 0
    assert store.blocklist_members() == set()
    bad = tmp_path / "bad.txt"
    bad.write_text("nonsense\n")
    assert cli.main(["blocklist", "add", str(bad), "--redis-url", url]) == 2
    assert "line 1" in capsys.readouterr().err


def test_no_fingerprint_is_taken_when_no_list_could_name_the_key(monkeypatch, tmp_path, good_rsa):
    """Without the operator's list and badkeys' blocklist, an EC key has nothing to be looked up in;
    an RSA key still goes through badkeys' checks, and a listed EC key is still refused."""
    monkeypatch.setattr(key_checks, "_badkeys_blocklist", False)
    taken = []
    fingerprint = key_checks.spki_fingerprint
    monkeypatch.setattr(key_checks, "spki_fingerprint", lambda key: taken.append(key) or fingerprint(key))
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    key_checks.check_public_key(ec_key)
    assert taken == []
    key_checks.check_public_key(good_rsa.public_key())
    assert taken == [good_rsa.public_key()]
    path = tmp_path / "blocked"
    path.write_text(fingerprint(ec_key) + "\n")
    key_checks.refresh_blocklist(path, None)
    with pytest.raises(InvalidArgument, match="blocklist of compromised keys"):
        key_checks.check_public_key(ec_key)
    key_checks.check_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())  # others pass
