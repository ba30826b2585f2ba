"""A pending IssueCertificate request as it crosses from the API to Redis to the worker.

The API encodes one :class:`PendingRequest` per IssueCertificate (its record's ``r`` field); a worker
decodes it once per signature. The encoding is compact JSON with short keys::

    {"v":2,"csr":<base64 DER>,"alg":<signing algorithm>,"tpl":<template>,"nb":<not before, epoch s>,
     "na":<not after, epoch s>[,"api":<ApiPassthrough>][,"rid":<API request id>]}

Versions: 1 is the encoding written before this module existed (the same keys, no ``v``); 2 adds
``v``. Both are read, so requests queued by an older API are still signed after an upgrade (and the
workers from before ignore ``v``, so after a rollback they still sign version 2). A newer version, or a
payload that is not one of these, raises :class:`~pcaq.errors.UnreadableRequest`: the worker commits
that request FAILED with the error's message, and signs the rest of its batch.

The Lua scripts read one field of it, and only that one: ``rid`` (:data:`REQUEST_ID_KEY`), the API
request id, which the claim's abandon step (``_ABANDON`` in shared/records/scripts.py) copies into
the audit entry of a request given up after its last attempt; it reads it leniently (any payload
without a string ``rid`` gives ``'-'``). A new version must keep ``rid`` a top-level string, or change
that script with it (tests/unit/test_pending.py runs the script on an encoded request).
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pcaq.errors import UnreadableRequest

VERSION = 2  # what :meth:`PendingRequest.encode` writes
_UNVERSIONED = 1  # the encoding without a "v" key
REQUEST_ID_KEY = "rid"  # the one key the Lua scripts read (see the module's docstring)
NO_REQUEST_ID = "-"  # the request id logs and audit entries show when none is known
_CORRUPT = "The stored certificate request is corrupt."

# One encoder and one decoder for every call (hot: once per IssueCertificate and once per signature):
# json.dumps with separators= builds a new encoder each time, and json.loads of bytes sniffs their
# encoding and scans for whitespace, which the encoder never writes.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """What a worker needs to sign one certificate, as checked and fixed by IssueCertificate."""

    csr_der: bytes
    signing_algorithm: str  # as in IssueCertificate, e.g. "SHA256WITHECDSA"
    template: str  # the template's name (no version), e.g. "EndEntityCertificate"
    not_before: datetime  # aware UTC, whole seconds
    not_after: datetime  # aware UTC, whole seconds
    api_passthrough: dict[str, Any] | None = None  # IssueCertificate's ApiPassthrough, if any
    request_id: str = NO_REQUEST_ID  # the API request id that IssueCertificate answered with

    def encode(self) -> bytes:
        """The compact JSON document stored with the request (current :data:`VERSION`)."""
        doc: dict[str, Any] = {
            "v": VERSION,
            "csr": binascii.b2a_base64(self.csr_der, newline=False).decode("ascii"),
            "alg": self.signing_algorithm,
            "tpl": self.template,
            "nb": int(self.not_before.timestamp()),
            "na": int(self.not_after.timestamp()),
        }
        if self.api_passthrough:
            doc["api"] = self.api_passthrough
        if self.request_id and self.request_id != NO_REQUEST_ID:
            doc[REQUEST_ID_KEY] = self.request_id
        return _ENCODER.encode(doc).encode()

    @classmethod
    def decode(cls, raw: bytes) -> PendingRequest:
        """The request stored as ``raw`` (version 1 or 2); :class:`~pcaq.errors.UnreadableRequest` for
        a newer version or a payload that is not a pending request."""
        try:
            text = raw.decode()
            doc, end = _DECODER.raw_decode(text)
        except ValueError:  # not UTF-8 (UnicodeDecodeError is a ValueError), or not JSON
            raise UnreadableRequest(_CORRUPT) from None
        if end != len(text) or type(doc) is not dict:
            raise UnreadableRequest(_CORRUPT)
        version = doc.get("v", _UNVERSIONED)
        if type(version) is not int or not _UNVERSIONED <= version <= VERSION:
            if type(version) is int and version > VERSION:
                raise UnreadableRequest(
                    f"The stored certificate request has encoding version {version}, newer than this "
                    f"worker reads ({_UNVERSIONED} to {VERSION}): a newer pcaq wrote it."
                )
            raise UnreadableRequest(_CORRUPT)
        try:
            csr, alg, tpl, nb, na = doc["csr"], doc["alg"], doc["tpl"], doc["nb"], doc["na"]
        except KeyError:
            raise UnreadableRequest(_CORRUPT) from None
        api, rid = doc.get("api"), doc.get(REQUEST_ID_KEY) or NO_REQUEST_ID
        if not (
            type(csr) is str
            and type(alg) is str
            and type(tpl) is str
            and type(nb) is int
            and type(na) is int
            and (api is None or type(api) is dict)
            and type(rid) is str
        ):
            raise UnreadableRequest(_CORRUPT)
        try:
            return cls(
                binascii.a2b_base64(csr),
                alg,
                tpl,
                datetime.fromtimestamp(nb, UTC),
                datetime.fromtimestamp(na, UTC),
                api,
                rid,
            )
        except (ValueError, OverflowError, OSError):  # bad base64 (binascii.Error), time out of range
            raise UnreadableRequest(_CORRUPT) from None
