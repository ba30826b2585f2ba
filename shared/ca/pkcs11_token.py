"""The PKCS#11 token that holds HSM-backed CA keys: one logged-in session per process (docs/hsm.md).

A CA's key pair is made inside the token (private key sensitive, not extractable) and found again by
its attributes, derived from the CA id: ``CKA_LABEL`` ``pcaq-ca-<ca id>`` and ``CKA_ID`` the 16 bytes
of the CA's UUID (its hex is the CA id without dashes). Nothing of the private key leaves the token:
this module hands out its public half and signatures.

The session is opened lazily, in the process that signs: a Celery pool child opens its own after the
fork (a PKCS#11 library's state must not be shared across ``fork``; :meth:`Token.forget` drops an
inherited one), logs in once, and keeps the session for every later signature. A token error closes it,
and the next use reinitialises the library and logs in again. Every token failure is raised as
:class:`TokenUnavailable`, which is deliberately not a :class:`pcaq.errors.PcaqError`: the drain leaves
the request leased and it is signed again later, as after any worker fault.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import (
    AttributeValueInvalid,
    DomainParamsInvalid,
    KeySizeRange,
    MechanismInvalid,
    MechanismParamInvalid,
    NoSuchKey,
    PKCS11Error,
    TemplateInconsistent,
    UserAlreadyLoggedIn,
)
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from pcaq.errors import InvalidArgument

log = logging.getLogger(__name__)

KEY_LABEL_PREFIX = "pcaq-ca-"
_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
_EC_CURVES = {"EC_prime256v1": "secp256r1", "EC_secp384r1": "secp384r1", "EC_secp521r1": "secp521r1"}
TOKEN_KEY_ALGORITHMS = (*_RSA_BITS, *_EC_CURVES)
# What a token says when it cannot make a key of the kind asked: the CA fails (a client-visible
# reason), where any other token error is an outage to retry.
_CANNOT_MAKE = (
    MechanismInvalid,
    MechanismParamInvalid,
    DomainParamsInvalid,
    KeySizeRange,
    AttributeValueInvalid,
    TemplateInconsistent,
)

T = TypeVar("T")


class TokenUnavailable(Exception):
    """The token cannot be used now (unreachable, logged out, key not found): retry later.

    Its message names the token and the CA, never the PIN.
    """


def key_label(ca_id: str) -> str:
    """The ``CKA_LABEL`` of a CA's key pair in the token."""
    return KEY_LABEL_PREFIX + ca_id


def key_id(ca_id: str) -> bytes:
    """The ``CKA_ID`` of a CA's key pair: the 16 bytes of the CA's UUID."""
    return uuid.UUID(ca_id).bytes


class Token:
    """A logged-in session with one token, opened on first use in each process."""

    def __init__(self, module: Path, label: str, pin: str):
        self.module = module
        self.label = label
        self._pin = pin
        self._session: Any = None
        self._pid = 0  # the process that opened the session (a forked child must not use it)
        self._handles: dict[str, Any] = {}  # CA id -> private key object of the current session
        self._lock = threading.Lock()  # the heartbeat thread and a task may share one process

    def __repr__(self) -> str:
        return f"Token(module={str(self.module)!r}, label={self.label!r})"

    # -- the session ---------------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop the session without touching the library (after a fork: it belongs to the parent)."""
        self._session, self._pid, self._handles = None, 0, {}

    def _open(self) -> Any:
        token = _library(self.module).get_token(token_label=self.label)
        try:
            session = token.open(rw=True, user_pin=self._pin)
        except UserAlreadyLoggedIn:
            # A login is the application's, not the session's: another session of this process (a
            # second Token object on the same token) logged in already, and a new session shares it.
            session = token.open(rw=True)
        self._session, self._pid, self._handles = session, os.getpid(), {}
        log.info("PKCS#11 session opened with token %r", self.label)
        return session

    def _broken(self) -> None:
        """Forget the session and make the next use reinitialise the library."""
        session, self._session = self._session, None
        self._handles = {}
        _initialised_in.pop(str(self.module), None)
        if session is not None and self._pid == os.getpid():  # a parent's session is not ours to close
            try:
                session.close()
            except (PKCS11Error, RuntimeError):
                pass  # the session is gone with the token; the library is reinitialised next time

    def run(self, what: str, action: Callable[[Any], T]) -> T:
        """``action(session)`` with this process's session; a token failure is TokenUnavailable."""
        with self._lock:
            try:
                session = self._session if self._pid == os.getpid() else None
                return action(session if session is not None else self._open())
            except InvalidArgument:
                raise
            except TokenUnavailable:
                self._broken()  # a key gone missing: the session may be stale; the next one looks afresh
                raise
            except (PKCS11Error, OSError, RuntimeError) as exc:
                self._broken()
                raise TokenUnavailable(
                    f"the PKCS#11 token {self.label!r} could not {what}: {type(exc).__name__}"
                ) from exc

    def reachable(self) -> bool:
        """Whether the token answers now: its slot still shows it (C_GetTokenInfo) and a session is
        open or opens. No signature is made."""

        def ask(_session: Any) -> bool:
            _library(self.module).get_token(token_label=self.label)
            return True

        try:
            return self.run("answer", ask)
        except TokenUnavailable:
            return False

    # -- keys ----------------------------------------------------------------------------------------

    def generate(self, ca_id: str, key_algorithm: str) -> Any:
        """Make the key pair of CA ``ca_id`` in the token; returns its public key (cryptography object).

        A key pair left by an earlier attempt for this CA (its key generation was cut short before the
        CA left CREATING, so no signature was ever made with it) is destroyed first: one CA, one key.
        Raises :class:`InvalidArgument` when the token cannot make keys of this type.
        """
        if key_algorithm not in TOKEN_KEY_ALGORITHMS:
            raise InvalidArgument(f"KeyAlgorithm {key_algorithm} cannot be kept in a PKCS#11 token")

        def make(session: Any) -> Any:
            for obj in session.get_objects({Attribute.ID: key_id(ca_id)}):
                obj.destroy()
            common = {Attribute.TOKEN: True, Attribute.LABEL: key_label(ca_id), Attribute.ID: key_id(ca_id)}
            private = {
                **common,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            }
            public = {**common, Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
            try:
                if key_algorithm in _RSA_BITS:
                    public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
                    pub, priv = session.generate_keypair(
                        KeyType.RSA,
                        _RSA_BITS[key_algorithm],
                        store=True,
                        public_template=public,
                        private_template=private,
                    )
                else:
                    params = session.create_domain_parameters(
                        KeyType.EC,
                        {Attribute.EC_PARAMS: encode_named_curve_parameters(_EC_CURVES[key_algorithm])},
                        local=True,
                    )
                    pub, priv = params.generate_keypair(
                        store=True, public_template=public, private_template=private
                    )
            except _CANNOT_MAKE as exc:
                raise InvalidArgument(
                    f"the PKCS#11 token {self.label!r} cannot make {key_algorithm} keys"
                ) from exc
            self._handles[ca_id] = priv
            return _public_key(pub)

        return self.run(f"make the key of CA {ca_id}", make)

    def destroy(self, ca_id: str) -> None:
        """Destroy CA ``ca_id``'s key pair in the token (a key no CA record points to)."""

        def destroy(session: Any) -> None:
            for obj in session.get_objects({Attribute.ID: key_id(ca_id)}):
                obj.destroy()
            self._handles.pop(ca_id, None)

        self.run(f"destroy the key of CA {ca_id}", destroy)

    def public_key(self, ca_id: str) -> Any:
        """The public key of CA ``ca_id``'s key pair in the token."""

        def read(session: Any) -> Any:
            return _public_key(session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id(ca_id)))

        return self.run(f"read the public key of CA {ca_id}", _missing_is_unavailable(ca_id, read))

    def sign(self, ca_id: str, data: bytes, mechanism: Any, param: Any = None) -> bytes:
        """A signature by CA ``ca_id``'s private key in the token (raw, as the mechanism returns it)."""

        def signed(session: Any) -> bytes:
            key = self._handles.get(ca_id)
            if key is None:
                key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id(ca_id))
                self._handles[ca_id] = key
            return key.sign(data, mechanism=mechanism, mechanism_param=param)

        return self.run(f"sign for CA {ca_id}", _missing_is_unavailable(ca_id, signed))

    def private_key_attributes(self, ca_id: str) -> dict[str, Any]:
        """Attributes of the private key object of CA ``ca_id`` (for checks: sensitive, extractable)."""
        names = {
            "label": Attribute.LABEL,
            "sensitive": Attribute.SENSITIVE,
            "extractable": Attribute.EXTRACTABLE,
            "always_sensitive": Attribute.ALWAYS_SENSITIVE,
            "never_extractable": Attribute.NEVER_EXTRACTABLE,
            "local": Attribute.LOCAL,
        }

        def read(session: Any) -> dict[str, Any]:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id(ca_id))
            return {name: key[attribute] for name, attribute in names.items()}

        return self.run(f"read the key of CA {ca_id}", _missing_is_unavailable(ca_id, read))


# The process in which each module's library was last initialised (a fork's child sees its parent's).
_initialised_in: dict[str, int] = {}


def _library(module: Path) -> Any:
    """The PKCS#11 library, initialised in this process."""
    lib = pkcs11.lib(str(module))  # loads and initialises the library once per process
    if _initialised_in.get(str(module)) != os.getpid():
        # Inherited from a parent, or finalised by an earlier error: start the library afresh here.
        # (Celery's main process never signs, so its pool children normally load the library fresh.)
        lib.reinitialize()
        _initialised_in[str(module)] = os.getpid()
    return lib


def token_answers(module: Path, label: str) -> bool:
    """Whether the token with this label is present (C_GetTokenInfo), without a session or a PIN:
    what ``/readyz`` asks in the API processes, which never sign."""
    try:
        _library(module).get_token(token_label=label)
        return True
    except (PKCS11Error, OSError, RuntimeError):
        _initialised_in.pop(str(module), None)  # reinitialise next time: the library may have lost it
        return False


def _missing_is_unavailable(ca_id: str, action: Callable[[Any], T]) -> Callable[[Any], T]:
    """A key the CA record points to but the token does not show is a token fault (a token swapped
    or a partition not mounted), not a client error: the request waits and is tried again."""

    def checked(session: Any) -> T:
        try:
            return action(session)
        except NoSuchKey as exc:
            raise TokenUnavailable(f"the key of CA {ca_id} is not in the PKCS#11 token") from exc

    return checked


def _public_key(obj: Any) -> Any:
    """The cryptography public key of a token's public key object."""
    if obj.key_type == KeyType.RSA:
        modulus = int.from_bytes(obj[Attribute.MODULUS], "big")
        exponent = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    public = load_der_public_key(encode_ec_public_key(obj))
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise TokenUnavailable("the token returned an EC key that is not on a named curve")
    return public
