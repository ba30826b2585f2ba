"""CA keys behind one interface: software keys (the encrypted vault) and PKCS#11 token keys.

The worker makes, finds and signs with CA keys through :class:`CaKeys` only. What a CA's key record
in Redis holds depends on where the key is:

- a software key: the AES-GCM blob of :mod:`pcaq.ca.vault` (version byte ``0x01``);
- a token key: a reference, version byte ``0x02`` then JSON ``{"token": <label>, "id": <CKA_ID hex>}``.
  No private key material of a token key is ever in Redis, in a log or in the worker's memory.
"""

from __future__ import annotations

import json
from typing import Any

from pcaq.ca import key_policy
from pcaq.ca.pkcs11_keys import TokenEcKey, TokenRsaKey, token_key
from pcaq.ca.pkcs11_token import Token, TokenUnavailable, key_id, key_label
from pcaq.ca.vault import EncryptedRedisVault
from pcaq.errors import InvalidArgument, NotFound
from pcaq.pki import keys

_REFERENCE = b"\x02"


class CaKeys:
    """The worker's custody of CA keys (the ``KeyVault`` interface, plus :meth:`generate`)."""

    def __init__(self, store: Any, software: EncryptedRedisVault, token: Token | None):
        self._store = store
        self._software = software
        self.token = token
        self._token_keys: dict[str, TokenEcKey | TokenRsaKey] = {}

    def __repr__(self) -> str:
        return f"CaKeys(token={self.token!r})"

    def generate(self, ca_id: str, key_algorithm: str, storage: str) -> Any:
        """A new private key for CA ``ca_id``, made where ``storage`` (``key_policy``) says.

        A token key is made in the token and only a key object that signs through it is returned.
        Raises :class:`TokenUnavailable` when the CA wants a token key and the token is not there.
        """
        if storage != key_policy.PKCS11:
            return keys.generate_private_key(key_algorithm)
        if self.token is None:
            raise TokenUnavailable(
                f"CA {ca_id} is to keep its key in a PKCS#11 token, and none is configured"
            )
        key = token_key(self.token, ca_id, self.token.generate(ca_id, key_algorithm))
        self._token_keys[ca_id] = key
        return key

    def seal(self, ca_id: str, private_key: Any) -> bytes:
        """What the CA's key record stores: the encrypted software key, or the token key's reference."""
        if isinstance(private_key, TokenEcKey | TokenRsaKey):
            ref = {"token": private_key.token.label, "id": key_id(ca_id).hex()}
            return _REFERENCE + json.dumps(ref, sort_keys=True).encode()
        return self._software.seal(ca_id, private_key)

    def put(self, ca_id: str, private_key: Any) -> None:
        """Store a software key (token keys are stored by the token itself, see :meth:`generate`)."""
        if isinstance(private_key, TokenEcKey | TokenRsaKey):
            raise InvalidArgument("a token key is kept by its token; store its reference with seal()")
        self._software.put(ca_id, private_key)

    def get(self, ca_id: str) -> Any:
        """The key CA ``ca_id`` signs with (a software key, or a key object signing in the token).

        Raises :class:`NotFound` when the CA has no key record and :class:`TokenUnavailable` when its
        key is in a token that cannot be reached now (the caller's work is retried later).
        """
        # A key opened before is signed with at once: no Redis read on the hot path (OCSP, drains).
        cached = self._token_keys.get(ca_id) or self._software.cached(ca_id)
        if cached is not None:
            return cached
        blob = self._store.get_ca_key(ca_id)
        if blob is None:
            raise NotFound(f"no private key is stored for CA {ca_id}")
        if bytes(blob[:1]) != _REFERENCE:
            return self._software.get(ca_id)
        ref = json.loads(bytes(blob[1:]))
        if self.token is None or self.token.label != ref.get("token"):
            raise TokenUnavailable(
                f"the key of CA {ca_id} is in the PKCS#11 token {ref.get('token')!r}, which this worker "
                "is not configured for (PCAQ_PKCS11_TOKEN_LABEL)"
            )
        key = token_key(self.token, ca_id, self.token.public_key(ca_id))
        self._token_keys[ca_id] = key
        return key

    def discard(self, ca_id: str, private_key: Any) -> None:
        """Destroy a key just made for a CA that was deleted before it could be recorded (a software
        key is simply dropped; a token key pair is destroyed in the token)."""
        self._token_keys.pop(ca_id, None)
        if isinstance(private_key, TokenEcKey | TokenRsaKey):
            private_key.token.destroy(ca_id)

    def forget(self, ca_id: str) -> None:
        """Drop what this process keeps of a CA's key (after the CA is deleted for good)."""
        self._token_keys.pop(ca_id, None)
        self._software.forget(ca_id)


def describe_storage(private_key: Any) -> str:
    """Where a CA key lives, for the audit trail (no secret in it)."""
    if isinstance(private_key, TokenEcKey | TokenRsaKey):
        return (
            f"PKCS#11 token {private_key.token.label}, CKA_LABEL {key_label(private_key.ca_id)}, "
            f"CKA_ID {key_id(private_key.ca_id).hex()}"
        )
    return "software, encrypted under the master key"
