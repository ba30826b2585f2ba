"""The one place where domain errors become AWS error types and HTTP statuses (docs/wire-contract.md, "Errors")."""

from __future__ import annotations

from pcaq import errors

# (HTTP status, __type). 400 for every client mistake; 5xx only for real faults (SDKs retry 5xx).
_TYPES: dict[type[errors.PcaqError], tuple[int, str]] = {
    errors.InvalidArgument: (400, "InvalidArgsException"),
    errors.ValidationFailed: (400, "ValidationException"),
    errors.InvalidArn: (400, "InvalidArnException"),
    errors.NotFound: (400, "ResourceNotFoundException"),
    errors.InvalidState: (400, "InvalidStateException"),
    errors.MalformedCSR: (400, "MalformedCSRException"),
    errors.MalformedCertificate: (400, "MalformedCertificateException"),
    errors.CertificateMismatch: (400, "CertificateMismatchException"),
    errors.InProgress: (400, "RequestInProgressException"),
    errors.RequestFailed: (400, "RequestFailedException"),
    errors.AlreadyProcessed: (400, "RequestAlreadyProcessedException"),
    errors.PermissionAlreadyExists: (400, "PermissionAlreadyExistsException"),
    errors.InvalidRequest: (400, "InvalidRequestException"),
    errors.InvalidTag: (400, "InvalidTagException"),
    errors.TooManyTags: (400, "TooManyTagsException"),
    errors.InvalidNextToken: (400, "InvalidNextTokenException"),
    errors.LimitExceeded: (400, "LimitExceededException"),
    errors.InvalidPolicy: (400, "InvalidPolicyException"),
    errors.ConcurrentModification: (400, "ConcurrentModificationException"),
    errors.Unavailable: (503, "ServiceUnavailable"),
    # Authentication failures: 403 with the names AWS uses for awsJson services (never retried).
    errors.MissingAuthentication: (403, "MissingAuthenticationTokenException"),
    errors.IncompleteSignature: (403, "IncompleteSignatureException"),
    errors.UnrecognizedClient: (403, "UnrecognizedClientException"),
    errors.InvalidSignature: (403, "InvalidSignatureException"),
    errors.Throttled: (400, "ThrottlingException"),  # SDKs back off and retry this code
}


class WireError(Exception):
    """An error that exists only on the wire (unknown operation, unreadable body, size limits)."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def classify(exc: BaseException) -> tuple[int, str, str]:
    """HTTP status, ``__type`` and message for an exception raised while serving a request."""
    if isinstance(exc, WireError):
        return exc.status, exc.error_type, exc.message
    for cls in type(exc).__mro__:
        if cls in _TYPES:
            status, error_type = _TYPES[cls]
            return status, error_type, exc.message  # type: ignore[attr-defined]
    # Anything else is our fault; never leak its text (it could hold internal details).
    return 500, "InternalFailure", "The server hit an internal error; the request may be retried."
