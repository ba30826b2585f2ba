"""Domain errors.

Everything below the wire raises one of these; only ``api/`` turns them into the AWS error
envelope (``api/errors.py`` holds that mapping), so the domain never speaks HTTP.
"""

from __future__ import annotations


class PcaqError(Exception):
    """Base of every error the domain raises on purpose. The message is shown to the caller."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(PcaqError):
    """A request is well-formed but asks for something that cannot be done."""


class ValidationFailed(PcaqError):
    """A request breaks a constraint of the service model (length, pattern, enum, range)."""


class InvalidArn(PcaqError):
    """An ARN is not of the expected form."""


class NotFound(PcaqError):
    """The named resource does not exist (or is not visible to the caller)."""


class InvalidState(PcaqError):
    """The resource is not in a state that allows the operation."""


class MalformedCSR(PcaqError):
    """A certificate signing request cannot be decoded, parsed or verified."""


class MalformedCertificate(PcaqError):
    """A certificate or chain cannot be decoded or parsed, or breaks a structural rule."""


class CertificateMismatch(PcaqError):
    """An imported certificate does not carry the CA's public key."""


class InProgress(PcaqError):
    """The work behind the request is still running; ask again later."""


class RequestFailed(PcaqError):
    """Background work for the request failed for good."""


class UnreadableRequest(PcaqError):
    """A stored request cannot be read back: it is corrupt, or a newer version of pcaq encoded it."""


class AlreadyProcessed(PcaqError):
    """The request was already carried out (for example a second revocation)."""


class PermissionAlreadyExists(PcaqError):
    """The principal already holds a permission on the CA."""


class InvalidRequest(PcaqError):
    """The request cannot be carried out as asked (for example revoking a root's own certificate)."""


class InvalidTag(PcaqError):
    """A tag key or value is not allowed."""


class TooManyTags(PcaqError):
    """A CA would carry more tags than allowed."""


class InvalidNextToken(PcaqError):
    """A pagination token was not issued by this service."""


class LimitExceeded(PcaqError):
    """A quota is reached."""


class InvalidPolicy(PcaqError):
    """A resource policy or revocation configuration is not acceptable."""


class ConcurrentModification(PcaqError):
    """Another request changed the resource at the same time; retry."""


class Unavailable(PcaqError):
    """A dependency (Redis, the queue) is not reachable; the request may be retried safely."""


class MasterKeyError(PcaqError):
    """The key-encryption key is missing, malformed or does not open the stored CA keys."""


class AuthenticationFailed(PcaqError):
    """The request is not authenticated (SigV4); the API answers 403 with the AWS error type."""


class MissingAuthentication(AuthenticationFailed):
    """The request carries no Authorization header."""


class IncompleteSignature(AuthenticationFailed):
    """The Authorization header or its date header is malformed or lacks a required part."""


class UnrecognizedClient(AuthenticationFailed):
    """The access key is not known (or session credentials were sent)."""


class InvalidSignature(AuthenticationFailed):
    """The signature does not match, its scope is wrong, or its time is more than 5 minutes off."""


class Throttled(PcaqError):
    """The caller exceeded its configured request rate for this operation; retry with backoff."""
