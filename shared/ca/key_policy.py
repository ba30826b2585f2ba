"""Where a new CA's key is made and kept: in the PKCS#11 token or in software (docs/hsm.md).

Decided once, when CreateCertificateAuthority is accepted, and recorded with the CA: the worker that
makes the key follows the record, and DescribeCertificateAuthority reports only what is true.

- A token is configured: RSA and EC keys are made in it, whatever KeyStorageSecurityStandard asks
  (the token meets the standard the operator chose it for). ML-DSA keys, which tokens do not make yet,
  are refused with a clear error unless ``PCAQ_ALLOW_SOFTWARE_KEYS=true`` lets them stay in software.
- No token: keys are software keys (encrypted under the master key), so ``pcaq up`` works on a laptop.
  Such a CA is described without a KeyStorageSecurityStandard: no FIPS level describes a software key.
"""

from __future__ import annotations

from pcaq.errors import InvalidArgument
from pcaq.pki.keys import KEY_ALGORITHMS
from pcaq.platform.settings import Settings

PKCS11 = "PKCS11"
SOFTWARE = "SOFTWARE"
# The key types a PKCS#11 token makes for pcaq: the RSA and EC ones (tokens make no ML-DSA keys yet;
# P-521 only where the token has the curve). A test keeps this equal to what pkcs11_token makes, which
# the API does not import (it loads the PKCS#11 binding).
TOKEN_KEY_ALGORITHMS = tuple(a for a in KEY_ALGORITHMS if a.startswith(("RSA_", "EC_")))


def key_storage(settings: Settings, key_algorithm: str) -> str:
    """``PKCS11`` or ``SOFTWARE`` for a new CA with this key type; InvalidArgument when refused."""
    if not settings.token_configured:
        return SOFTWARE
    if key_algorithm in TOKEN_KEY_ALGORITHMS:
        return PKCS11
    if settings.allow_software_keys:
        return SOFTWARE
    raise InvalidArgument(
        f"The key algorithm {key_algorithm} cannot be kept in this service's hardware security module, "
        "and software keys are not allowed here (PCAQ_ALLOW_SOFTWARE_KEYS); use an RSA or EC key."
    )
