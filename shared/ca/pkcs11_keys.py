"""Private-key objects whose signatures are made by the PKCS#11 token (docs/hsm.md).

cryptography stays the certificate, CSR, CRL and OCSP builder: its ``sign()`` takes any subclass of
its private-key ABCs and calls the key's own ``sign()``. These subclasses hash the data here (a
network HSM then receives 32-64 bytes, not the whole TBS structure) and have the token sign the digest:
``CKM_ECDSA`` for EC keys, ``CKM_RSA_PKCS`` over a DigestInfo or ``CKM_RSA_PKCS_PSS`` for RSA keys.
They hold the CA id and the public key only; every method that would reveal the private key refuses.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import MGF, Mechanism

from pcaq.ca.pkcs11_token import Token

# DER of DigestInfo up to the digest (RFC 8017, section 9.2, note 1): CKM_RSA_PKCS signs what it is
# given, so the caller supplies the algorithm identifier a PKCS#1 v1.5 signature carries.
_DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_PARAMS = {
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}


def _digest(data: bytes, algorithm: Any) -> tuple[bytes, hashes.HashAlgorithm]:
    """The digest of ``data`` (already one if ``algorithm`` is Prehashed) and its hash algorithm."""
    if isinstance(algorithm, utils.Prehashed):
        return data, algorithm._algorithm  # noqa: SLF001 - Prehashed names its hash only there
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm


def _refuse() -> NoReturn:
    raise TypeError("this CA's private key stays in its PKCS#11 token and cannot be exported")


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """An EC private key in the token, for cryptography's builders."""

    def __init__(self, token: Token, ca_id: str, public: ec.EllipticCurvePublicKey):
        self.token, self.ca_id, self._public = token, ca_id, public

    def __repr__(self) -> str:
        return f"<TokenEcKey ca={self.ca_id} token={self.token.label!r}>"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half (read from the token when the key was found)."""
        return self._public

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """A DER ECDSA signature of ``data``, made by the token."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("only ECDSA signatures are made with a token's EC key")
        digest, _ = _digest(data, signature_algorithm.algorithm)
        raw = self.token.sign(self.ca_id, digest, Mechanism.ECDSA)
        half = len(raw) // 2  # CKM_ECDSA answers r || s, each as long as the curve's order
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Refused: CA keys sign only."""
        raise TypeError("a CA key in a PKCS#11 token signs only")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        """Refused: the key is not extractable."""
        _refuse()

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:  # noqa: A002
        """Refused: the key is not extractable."""
        _refuse()

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict) -> TokenEcKey:
        return self


class TokenRsaKey(rsa.RSAPrivateKey):
    """An RSA private key in the token, for cryptography's builders."""

    def __init__(self, token: Token, ca_id: str, public: rsa.RSAPublicKey):
        self.token, self.ca_id, self._public = token, ca_id, public

    def __repr__(self) -> str:
        return f"<TokenRsaKey ca={self.ca_id} token={self.token.label!r}>"

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        """The public half (read from the token when the key was found)."""
        return self._public

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm: Any) -> bytes:
        """A PKCS#1 v1.5 or PSS signature of ``data``, made by the token."""
        digest, hash_algorithm = _digest(data, algorithm)
        name = hash_algorithm.name
        if name not in _DIGEST_INFO_PREFIX:
            raise TypeError(f"the token signs with SHA-256, SHA-384 or SHA-512, not {name}")
        if isinstance(padding_, padding.PKCS1v15):
            return self.token.sign(self.ca_id, _DIGEST_INFO_PREFIX[name] + digest, Mechanism.RSA_PKCS)
        if isinstance(padding_, padding.PSS):
            # pcaq signs PSS with MGF1 over the signature's hash and a salt as long as the digest
            # (keys.sign_kwargs); the salt length is not public on PSS, hence the private read.
            salt = padding_._salt_length  # noqa: SLF001
            if salt is padding.PSS.DIGEST_LENGTH:
                salt = hash_algorithm.digest_size
            if not isinstance(salt, int):
                raise TypeError("the token signs PSS with an explicit salt length only")
            mechanism, mgf = _PSS_PARAMS[name]
            return self.token.sign(self.ca_id, digest, Mechanism.RSA_PKCS_PSS, (mechanism, mgf, salt))
        raise TypeError(f"padding {padding_.name} is not supported for a token's RSA key")

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        """Refused: CA keys sign only."""
        raise TypeError("a CA key in a PKCS#11 token signs only")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        """Refused: the key is not extractable."""
        _refuse()

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:  # noqa: A002
        """Refused: the key is not extractable."""
        _refuse()

    def __copy__(self) -> TokenRsaKey:
        return self

    def __deepcopy__(self, memo: dict) -> TokenRsaKey:
        return self


def token_key(token: Token, ca_id: str, public: Any) -> TokenEcKey | TokenRsaKey:
    """The key object that signs with CA ``ca_id``'s key in ``token``."""
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRsaKey(token, ca_id, public)
    return TokenEcKey(token, ca_id, public)
