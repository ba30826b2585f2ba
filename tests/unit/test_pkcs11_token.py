"""The token session and the key objects that sign through it, on a real PKCS#11 token (SoftHSM2 in CI):
signatures of every padding and hash verify, nothing of the private key comes out, one session per
process kept across signatures, a fork's child opens its own, and a broken session is reopened."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from pkcs11 import Attribute

from pcaq.ca.pkcs11_keys import token_key
from pcaq.ca.pkcs11_token import Token, TokenUnavailable, key_id
from tests.hsm import ci_token, needs_token

pytestmark = needs_token

DATA = b"to be signed by the token"


@pytest.fixture(scope="module")
def token():
    t = ci_token()
    return Token(t.module, t.label, t.pin)


@pytest.fixture(scope="module")
def rsa_key(token):
    ca_id = str(uuid.uuid4())
    return token_key(token, ca_id, token.generate(ca_id, "RSA_2048"))


@pytest.mark.parametrize("digest", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_rsa_signatures_of_both_paddings_verify(rsa_key, digest):
    pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    for pad in (padding.PKCS1v15(), pss):
        rsa_key.public_key().verify(rsa_key.sign(DATA, pad, digest), DATA, pad, digest)


@pytest.mark.parametrize("algorithm", ["EC_prime256v1", "EC_secp384r1", "EC_secp521r1"])
def test_ec_signatures_verify(token, algorithm):
    ca_id = str(uuid.uuid4())
    key = token_key(token, ca_id, token.generate(ca_id, algorithm))
    key.public_key().verify(key.sign(DATA, ec.ECDSA(hashes.SHA384())), DATA, ec.ECDSA(hashes.SHA384()))


def test_nothing_of_the_private_key_comes_out(rsa_key):
    with pytest.raises(TypeError, match="cannot be exported"):
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    with pytest.raises(TypeError, match="cannot be exported"):
        rsa_key.private_numbers()
    assert rsa_key.ca_id in repr(rsa_key) and "token" in repr(rsa_key)


def test_one_session_kept_across_signatures_and_a_forked_child_opens_its_own(token, rsa_key):
    rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    session = token._session
    for _ in range(20):
        rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    assert token._session is session  # no new session, so no new login, per signature

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not use its parent's session, and signs with one of its own
        try:  # no forget(): the token itself must see that its session was opened in another process
            signature = rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
            rsa_key.public_key().verify(signature, DATA, padding.PKCS1v15(), hashes.SHA256())
            os.write(write, b"ok" if token._session is not session else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"ok"
    os.close(read)


def test_a_session_broken_under_the_token_fails_retryably_and_is_reopened(token, rsa_key):
    rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    token._session.close()  # as a token restart or a dropped network session would
    with pytest.raises(TokenUnavailable):
        rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    signature = rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())  # a new session, logged in again
    rsa_key.public_key().verify(signature, DATA, padding.PKCS1v15(), hashes.SHA256())
    assert token.reachable()


def test_one_key_pair_per_ca_and_a_discarded_one_is_gone_from_the_token(token):
    ca_id = str(uuid.uuid4())
    token.generate(ca_id, "EC_prime256v1")  # an attempt cut short before the CA left CREATING
    second = token.generate(ca_id, "EC_prime256v1")
    count = token.run("count", lambda s: len(list(s.get_objects({Attribute.ID: key_id(ca_id)}))))
    assert count == 2  # the second attempt's public and private key only
    assert token.public_key(ca_id) == second
    token.destroy(ca_id)
    with pytest.raises(TokenUnavailable, match="not in the PKCS#11 token"):
        token.public_key(ca_id)
