"""Key algorithms, signing algorithms and key PEM handling (shared/pki/keys.py)."""

from __future__ import annotations

import datetime

import botocore.session
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from pcaq.errors import InvalidArgument
from pcaq.pki import keys

_MODEL = botocore.session.get_session().get_service_model("acm-pca")
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keys test")])

# Every (key algorithm, signing algorithm) pair that must work.
_RSA_SIGNERS = [f"SHA{n}WITHRSA{p}" for n in (256, 384, 512) for p in ("", "_PSS")]
_EC_SIGNERS = [f"SHA{n}WITHECDSA" for n in (256, 384, 512)]
_PAIRS = (
    [(k, s) for k in ("RSA_2048", "RSA_3072", "RSA_4096") for s in _RSA_SIGNERS]
    + [(k, s) for k in ("EC_prime256v1", "EC_secp384r1", "EC_secp521r1") for s in _EC_SIGNERS]
    + [(k, k) for k in ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")]
)


@pytest.fixture(scope="module")
def key_cache():
    """One generated key per algorithm for the whole module (RSA-4096 generation is slow)."""
    cache: dict[str, object] = {}

    def get(alg: str):
        if alg not in cache:
            cache[alg] = keys.generate_private_key(alg)
        return cache[alg]

    return get


def test_key_algorithms_are_the_model_enum_without_sm2():
    assert list(keys.KEY_ALGORITHMS) == [a for a in _MODEL.shape_for("KeyAlgorithm").enum if a != "SM2"]


def test_signing_algorithms_are_the_model_enum_without_sm2():
    enum = _MODEL.shape_for("SigningAlgorithm").enum
    assert list(keys.SIGNING_ALGORITHMS) == [a for a in enum if a != "SM3WITHSM2"]


@pytest.mark.parametrize("alg", keys.KEY_ALGORITHMS)
def test_generated_key_has_the_named_algorithm(key_cache, alg):
    key = key_cache(alg)
    assert keys.key_algorithm_of(key.public_key()) == alg
    if alg.startswith("RSA_"):
        assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize(("key_alg", "sig_alg"), _PAIRS)
def test_every_fitting_pair_signs_a_csr_that_verifies(key_cache, key_alg, sig_alg):
    keys.check_signing_algorithm(key_alg, sig_alg)
    key = key_cache(key_alg)
    csr = x509.CertificateSigningRequestBuilder().subject_name(_NAME).sign(key, **keys.sign_kwargs(sig_alg))
    assert csr.is_signature_valid
    if sig_alg.startswith("SHA"):
        assert csr.signature_hash_algorithm.name == sig_alg[:6].lower()
    else:
        assert csr.signature_hash_algorithm is None


@pytest.mark.parametrize("sig_alg", ["SHA256WITHRSA_PSS", "SHA384WITHRSA_PSS", "SHA512WITHRSA_PSS"])
def test_pss_uses_mgf1_with_the_same_hash_and_digest_long_salt(key_cache, sig_alg):
    key = key_cache("RSA_2048")
    kw = keys.sign_kwargs(sig_alg)
    digest = kw["algorithm"]
    csr = x509.CertificateSigningRequestBuilder().subject_name(_NAME).sign(key, **kw)
    assert csr.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    # Verification with exactly these parameters passes; another salt length does not.
    key.public_key().verify(
        csr.signature,
        csr.tbs_certrequest_bytes,
        padding.PSS(mgf=padding.MGF1(type(digest)()), salt_length=digest.digest_size),
        type(digest)(),
    )
    with pytest.raises(InvalidSignature):
        key.public_key().verify(
            csr.signature,
            csr.tbs_certrequest_bytes,
            padding.PSS(mgf=padding.MGF1(type(digest)()), salt_length=digest.digest_size + 1),
            type(digest)(),
        )


def test_plain_rsa_and_ecdsa_kwargs_carry_no_padding():
    assert set(keys.sign_kwargs("SHA256WITHRSA")) == {"algorithm"}
    assert isinstance(keys.sign_kwargs("SHA384WITHECDSA")["algorithm"], hashes.SHA384)
    assert keys.sign_kwargs("ML_DSA_65") == {"algorithm": None}


@pytest.mark.parametrize(
    ("key_alg", "sig_alg"),
    [("RSA_2048", "SHA256WITHRSA_PSS"), ("ML_DSA_44", "ML_DSA_44"), ("EC_secp384r1", "SHA384WITHECDSA")],
)
def test_same_kwargs_sign_certificates_and_crls(key_cache, key_alg, sig_alg):
    key = key_cache(key_alg)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_NAME)
        .issuer_name(_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, **keys.sign_kwargs(sig_alg))
    )
    cert.verify_directly_issued_by(cert)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_NAME)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .sign(key, **keys.sign_kwargs(sig_alg))
    )
    assert crl.is_signature_valid(key.public_key())
    assert crl.signature_algorithm_oid == cert.signature_algorithm_oid


@pytest.mark.parametrize(
    ("key_alg", "sig_alg", "hint"),
    [
        ("RSA_2048", "SHA256WITHECDSA", "SHA256WITHRSA"),
        ("EC_prime256v1", "SHA256WITHRSA", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA256WITHRSA_PSS", "SHA384WITHECDSA"),
        ("ML_DSA_44", "ML_DSA_65", "ML_DSA_44"),
        ("ML_DSA_87", "SHA512WITHRSA", "ML_DSA_87"),
        ("RSA_4096", "ML_DSA_87", "SHA512WITHRSA_PSS"),
    ],
)
def test_family_mismatch_is_refused_and_names_what_fits(key_alg, sig_alg, hint):
    with pytest.raises(InvalidArgument) as err:
        keys.check_signing_algorithm(key_alg, sig_alg)
    assert key_alg in err.value.message and hint in err.value.message


def test_ml_dsa_mismatch_message_lists_only_the_same_level():
    with pytest.raises(InvalidArgument) as err:
        keys.check_signing_algorithm("ML_DSA_44", "ML_DSA_65")
    assert "ML_DSA_87" not in err.value.message.split("use one of")[1]


def test_sm2_is_refused():
    with pytest.raises(InvalidArgument, match="SM2"):
        keys.generate_private_key("SM2")
    with pytest.raises(InvalidArgument, match="SM2 is not"):
        keys.check_signing_algorithm("RSA_2048", "SM3WITHSM2")
    with pytest.raises(InvalidArgument, match="SM2"):
        keys.check_signing_algorithm("SM2", "SHA256WITHRSA")
    with pytest.raises(InvalidArgument, match="SM2"):
        keys.sign_kwargs("SM3WITHSM2")


@pytest.mark.parametrize("bad", ["RSA_1024", "EC_secp256k1", "", "rsa_2048"])
def test_unknown_key_algorithms_are_refused(bad):
    with pytest.raises(InvalidArgument):
        keys.generate_private_key(bad)


@pytest.mark.parametrize("bad", ["SHA1WITHRSA", "SHA256WITHDSA", "MD5WITHRSA", ""])
def test_unknown_signing_algorithms_are_refused(bad):
    with pytest.raises(InvalidArgument):
        keys.sign_kwargs(bad)
    with pytest.raises(InvalidArgument):
        keys.check_signing_algorithm("RSA_2048", bad)


def test_key_algorithm_of_names_keys_outside_the_enum():
    assert keys.key_algorithm_of(rsa.generate_private_key(65537, 1024).public_key()) == "RSA_1024"
    assert keys.key_algorithm_of(ec.generate_private_key(ec.SECP256K1()).public_key()) == "EC_secp256k1"
    with pytest.raises(InvalidArgument, match="Ed25519"):
        keys.key_algorithm_of(ed25519.Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize("alg", ["RSA_2048", "EC_secp521r1", "ML_DSA_65"])
def test_pem_round_trips(key_cache, alg):
    key = key_cache(alg)
    pem = keys.private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    again = keys.load_private_key_pem(pem)
    assert keys.private_key_to_pem(again) == pem
    text = keys.public_key_pem(key)
    assert text.startswith("-----BEGIN PUBLIC KEY-----")
    assert text == keys.public_key_pem(key.public_key())
    assert keys.public_key_pem(keys.load_public_key_pem(text)) == text


def test_loading_garbage_raises_invalid_argument():
    with pytest.raises(InvalidArgument):
        keys.load_private_key_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InvalidArgument):
        keys.load_public_key_pem("not a key")
