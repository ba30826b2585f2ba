"""CA key algorithms and signing algorithms.

Maps the wire enums ``KeyAlgorithm`` and ``SigningAlgorithm`` onto ``cryptography`` objects: key
generation, the family check between a CA key and its signing algorithm, the keyword arguments for
the X.509 builders' ``sign``, and PEM (de)serialisation of keys.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa

from pcaq.errors import InvalidArgument

KEY_ALGORITHMS: tuple[str, ...] = (
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
)
"""The ``KeyAlgorithm`` values pcaq supports (the enum's ``SM2`` is not available in cryptography)."""

SIGNING_ALGORITHMS: tuple[str, ...] = (
    "SHA256WITHECDSA",
    "SHA384WITHECDSA",
    "SHA512WITHECDSA",
    "SHA256WITHRSA",
    "SHA384WITHRSA",
    "SHA512WITHRSA",
    "SHA256WITHRSA_PSS",
    "SHA384WITHRSA_PSS",
    "SHA512WITHRSA_PSS",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
)
"""The ``SigningAlgorithm`` values pcaq supports (``SM3WITHSM2`` is refused)."""

_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}

# KeyAlgorithm names use OpenSSL's curve names; cryptography's curve.name is the SEC name.
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "EC_prime256v1": ec.SECP256R1,
    "EC_secp384r1": ec.SECP384R1,
    "EC_secp521r1": ec.SECP521R1,
}
_EC_NAME_BY_CURVE = {cls.name: alg for alg, cls in _EC_CURVES.items()}

_MLDSA_KEYS: dict[str, Any] = {
    "ML_DSA_44": mldsa.MLDSA44PrivateKey,
    "ML_DSA_65": mldsa.MLDSA65PrivateKey,
    "ML_DSA_87": mldsa.MLDSA87PrivateKey,
}
_MLDSA_PUBLIC = (
    (mldsa.MLDSA44PublicKey, "ML_DSA_44"),
    (mldsa.MLDSA65PublicKey, "ML_DSA_65"),
    (mldsa.MLDSA87PublicKey, "ML_DSA_87"),
)

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def generate_private_key(key_algorithm: str) -> Any:
    """A fresh private key for a ``KeyAlgorithm`` value (RSA with e=65537, NIST curves, ML-DSA)."""
    if key_algorithm in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_algorithm])
    if key_algorithm in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[key_algorithm]())
    if key_algorithm in _MLDSA_KEYS:
        return _MLDSA_KEYS[key_algorithm].generate()
    if key_algorithm == "SM2":
        raise InvalidArgument("KeyAlgorithm SM2 is not supported; use one of " + ", ".join(KEY_ALGORITHMS))
    raise InvalidArgument(
        f"KeyAlgorithm {key_algorithm!r} is not supported; use one of " + ", ".join(KEY_ALGORITHMS)
    )


def key_algorithm_of(public_key: Any) -> str:
    """The ``KeyAlgorithm``-style name of a public key, e.g. ``RSA_2048`` or ``EC_prime256v1``.

    Sizes and curves outside the enum still get a name (``RSA_1024``, ``EC_secp256k1``) so that
    callers can report them; key types pcaq cannot sign with raise :class:`InvalidArgument`.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA_{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        return _EC_NAME_BY_CURVE.get(curve, f"EC_{curve}")
    for cls, name in _MLDSA_PUBLIC:
        if isinstance(public_key, cls):
            return name
    raise InvalidArgument(
        f"public keys of type {type(public_key).__name__} are not supported; use RSA, EC or ML-DSA keys"
    )


def _family(key_algorithm: str) -> str:
    """The signing family of a key algorithm name: ``RSA``, ``EC`` or the exact ML-DSA level."""
    if key_algorithm.startswith("RSA_"):
        return "RSA"
    if key_algorithm.startswith("EC_"):
        return "EC"
    if key_algorithm in _MLDSA_KEYS:
        return key_algorithm
    if key_algorithm == "SM2":
        raise InvalidArgument("KeyAlgorithm SM2 is not supported; use one of " + ", ".join(KEY_ALGORITHMS))
    raise InvalidArgument(f"KeyAlgorithm {key_algorithm!r} is not supported")


def _signing_family(signing_algorithm: str) -> str:
    if signing_algorithm.endswith("WITHRSA") or signing_algorithm.endswith("WITHRSA_PSS"):
        return "RSA"
    if signing_algorithm.endswith("WITHECDSA"):
        return "EC"
    return signing_algorithm  # ML_DSA_x names its own family


def check_signing_algorithm(key_algorithm: str, signing_algorithm: str) -> None:
    """Raise :class:`InvalidArgument` unless ``signing_algorithm`` fits a CA key of ``key_algorithm``.

    RSA keys sign with SHA*WITHRSA or SHA*WITHRSA_PSS, EC keys with SHA*WITHECDSA, and an ML-DSA key
    only with the ML-DSA algorithm of the same level. SM3WITHSM2 is always refused.
    """
    if signing_algorithm == "SM3WITHSM2":
        raise InvalidArgument("SigningAlgorithm SM3WITHSM2 is not supported (SM2 is not available)")
    if signing_algorithm not in SIGNING_ALGORITHMS:
        raise InvalidArgument(
            f"SigningAlgorithm {signing_algorithm!r} is not supported; use one of "
            + ", ".join(SIGNING_ALGORITHMS)
        )
    family = _family(key_algorithm)
    if _signing_family(signing_algorithm) != family:
        fitting = [alg for alg in SIGNING_ALGORITHMS if _signing_family(alg) == family]
        raise InvalidArgument(
            f"SigningAlgorithm {signing_algorithm} does not fit a CA key of type {key_algorithm}; "
            f"use one of {', '.join(fitting)}"
        )


def sign_kwargs(signing_algorithm: str) -> dict[str, Any]:
    """Keyword arguments for ``sign(private_key, **kw)`` of the X.509 builders.

    Works for ``CertificateBuilder``, ``CertificateSigningRequestBuilder`` and
    ``CertificateRevocationListBuilder`` alike: in cryptography 50 all three accept ``rsa_padding``.
    RSA-PSS uses MGF1 with the same hash and a salt as long as the digest (RFC 4055 style).
    ML-DSA takes no hash. A fresh dict is returned on every call.
    """
    if signing_algorithm in _MLDSA_KEYS:
        return {"algorithm": None}
    hash_name, sep, rest = signing_algorithm.partition("WITH")
    if sep and hash_name in _HASHES and rest in ("RSA", "ECDSA", "RSA_PSS"):
        digest = _HASHES[hash_name]()
        kwargs: dict[str, Any] = {"algorithm": digest}
        if rest == "RSA_PSS":
            kwargs["rsa_padding"] = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return kwargs
    if signing_algorithm == "SM3WITHSM2":
        raise InvalidArgument("SigningAlgorithm SM3WITHSM2 is not supported (SM2 is not available)")
    raise InvalidArgument(
        f"SigningAlgorithm {signing_algorithm!r} is not supported; use one of "
        + ", ".join(SIGNING_ALGORITHMS)
    )


def private_key_to_pem(key: Any) -> bytes:
    """The key as unencrypted PKCS#8 PEM. Only for the vault, which encrypts it before storing."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(data: bytes) -> Any:
    """Load an unencrypted PEM private key (the inverse of :func:`private_key_to_pem`)."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The exception text never carries key bytes, but keep the message generic anyway.
        raise InvalidArgument("the data is not an unencrypted PEM private key") from exc


def public_key_pem(key: Any) -> str:
    """The SubjectPublicKeyInfo PEM text of a public key (a private key gives its public half)."""
    if hasattr(key, "private_bytes"):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(s: str) -> Any:
    """Load a SubjectPublicKeyInfo PEM public key."""
    try:
        return serialization.load_pem_public_key(s.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise InvalidArgument("the data is not a PEM public key (SubjectPublicKeyInfo)") from exc
