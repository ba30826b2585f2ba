"""marshmallow fields and validators for the shapes of an AWS service model, with AWS's wording.

One field per model type (string, integer, blob, structure, list, map), each checking the JSON type
itself; validators carrying the model's length, range, enum and pattern traits. A violation keeps its
subject and constraint apart (:class:`Violation`) so that ``api/schemas.py`` can write the AWS
framework message once the error tree gives it a path.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import regex
from botocore.model import Shape
from marshmallow import ValidationError, fields, missing, validate

from pcaq.errors import InvalidArn, InvalidTag, MalformedCertificate, MalformedCSR, PcaqError

_SHOWN_CHARS = 64  # never echo more of a bad value than this

# Blob members whose bad encoding has a modeled exception: shape -> (error, noun, what it must hold).
_BLOB_ERRORS: dict[str, tuple[type[PcaqError], str, str]] = {
    "CsrBlob": (MalformedCSR, "CSR", "a PEM or DER certificate signing request"),
    "CertificateBodyBlob": (MalformedCertificate, "certificate", "a PEM certificate"),
    "CertificateChainBlob": (MalformedCertificate, "certificate chain", "PEM certificates"),
}

# Java's \w and \d (the model's pattern dialect) are ASCII-only; Python's are Unicode.
_JAVA_ASCII_CLASSES = {r"\w": "A-Za-z0-9_", r"\d": "0-9"}
INT_BITS = {"integer": 32, "long": 64}


def compile_pattern(model_pattern: str) -> regex.Pattern:
    """Compile a model ``pattern`` trait (Java syntax, ``\\p{L}`` classes) for full-match use."""
    out: list[str] = []
    in_class = False
    for token in re.findall(r"\\.|.", model_pattern, re.DOTALL):
        if token in _JAVA_ASCII_CLASSES:
            ascii_class = _JAVA_ASCII_CLASSES[token]
            token = ascii_class if in_class else f"[{ascii_class}]"
        elif token in ("[", "]"):
            in_class = token == "["
        out.append(token)
    return regex.compile("".join(out))


class Violation(str):
    """One broken constraint, still without its path (added when the error tree is flattened).

    A ``str`` so that marshmallow stores it like any message; ``domain_error`` is set when the
    violation has a modeled exception of its own (a blob that is not base64, an empty CSR).
    """

    def __new__(cls, subject: str, constraint: str, domain_error: PcaqError | None = None) -> Violation:
        self = super().__new__(cls, f"{subject} failed to satisfy constraint: {constraint}")
        self.subject = subject
        self.constraint = constraint
        self.domain_error = domain_error
        return self


def _subject(value: Any) -> str:
    """How a bad value is shown: truncated, control characters escaped, containers not echoed."""
    if value is None:
        return "Value null"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, list):
        return "The list"
    elif isinstance(value, dict):
        return "The object"
    else:
        return f"A value of type {type(value).__name__}"
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    if not text.isprintable():
        text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return f"Value '{text}'"


def _fail(value: Any, constraint: str) -> ValidationError:
    return ValidationError(Violation(_subject(value), constraint))


# ---- validators: marshmallow's, with the AWS constraint wording and full-match patterns ----------------


class Length(validate.Length):
    """Length of a string (in code points), list or decoded blob; blobs are never echoed."""

    def __init__(
        self, min: int | None, max: int | None, *, echo: bool = True, short_error: Callable | None = None
    ):
        super().__init__(min=min, max=max)
        self.echo = echo
        self.short_error = short_error  # builds a modeled error for a too-short blob

    def __call__(self, value: Any) -> Any:
        size = len(value)
        if self.min is not None and size < self.min:
            domain = self.short_error() if self.short_error else None
            constraint = f"Member must have length greater than or equal to {self.min}"
        elif self.max is not None and size > self.max:
            domain, constraint = None, f"Member must have length less than or equal to {self.max}"
        else:
            return value
        raise ValidationError(Violation(_subject(value) if self.echo else "The value", constraint, domain))


class Range(validate.Range):
    def __call__(self, value: Any) -> Any:
        if self.min is not None and value < self.min:
            raise _fail(value, f"Member must have value greater than or equal to {self.min}")
        if self.max is not None and value > self.max:
            raise _fail(value, f"Member must have value less than or equal to {self.max}")
        return value


class OneOfEnum(validate.OneOf):
    def __init__(self, choices: list[str]):
        super().__init__(choices)
        self.allowed = frozenset(choices)
        self.constraint = f"Member must satisfy enum value set: [{', '.join(choices)}]"

    def __call__(self, value: Any) -> Any:
        if value not in self.allowed:
            raise _fail(value, self.constraint)
        return value


# Shapes whose pattern failures have a modeled exception of their own (docs/wire-contract.md).
_PATTERN_ERRORS: dict[str, tuple[type[PcaqError], str]] = {
    "Arn": (
        InvalidArn,
        "The ARN {} is not valid: it must look like arn:<partition>:acm-pca:<region>:<account>:...",
    ),
    "TagKey": (InvalidTag, "The tag key {} is not valid: use letters, digits, spaces and _.:/=+-@ only."),
    "TagValue": (InvalidTag, "The tag value {} is not valid: use letters, digits, spaces and _.:/=+-@ only."),
}


class Pattern(validate.Regexp):
    def __init__(self, model_pattern: str, shape_name: str = ""):
        super().__init__(compile_pattern(model_pattern))
        self.constraint = f"Member must satisfy regular expression pattern: {model_pattern}"
        self.modeled = _PATTERN_ERRORS.get(shape_name)

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            if self.modeled:
                error_class, text = self.modeled
                error = error_class(text.format(_subject(value).removeprefix("Value ")))
                raise ValidationError(Violation(_subject(value), self.constraint, error))
            raise _fail(value, self.constraint)
        return value


# ---- fields: one per model type; each checks the JSON type itself --------------------------------------


class NullIsAbsent:
    """Mixin for every model field: JSON null means "not given" (AWS JSON protocols do the same).

    It also takes two shortcuts through marshmallow for the fields of every request (the API's hot
    path): an absent optional member is answered at once, and the checks of a present one run one by
    one, with marshmallow's own pass (which gathers every violation) only when one fails.
    """

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        if value is None or value is missing:
            if not self.required:  # type: ignore[attr-defined]
                return missing  # what marshmallow answers: no model field has a load_default
            value = missing
        return super().deserialize(value, attr, data, **kwargs)  # type: ignore[misc]

    def _validate(self, value: Any) -> None:
        for check in self.validators:  # type: ignore[attr-defined]
            try:
                passed = check(value) is not False
            except ValidationError:
                passed = False
            if not passed:
                super()._validate(value)  # type: ignore[misc]
                return

    def make_error(self, key: str, **kwargs: Any) -> ValidationError:
        if key in ("required", "null"):
            return ValidationError(Violation("Value null", "Member must not be null"))
        return super().make_error(key, **kwargs)


class Scalar(NullIsAbsent, fields.Field):
    """A JSON string, boolean or number, matched by exact Python type (so a bool is never a number)."""

    def __init__(self, types: tuple[type, ...], expected: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.types, self.expected = types, expected

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value.__class__ not in self.types:
            raise _fail(value, f"Member must be {self.expected}")
        return value


class Integer(NullIsAbsent, fields.Field):
    """A JSON integer (an integral float such as 5.0 is accepted as 5) within the model type's width."""

    def __init__(self, bits: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.bits = bits
        self.low, self.high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if value.__class__ is float and value.is_integer():
            value = int(value)
        if value.__class__ is not int or not self.low <= value <= self.high:
            raise _fail(value, f"Member must be a {self.bits}-bit integer")
        return value


class Blob(NullIsAbsent, fields.Field):
    """A base64 string on the wire, bytes after loading; the size is checked before decoding."""

    def __init__(self, shape: Shape, **kwargs: Any):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        self.max_size = high
        self.max_encoded = None if high is None else 4 * ((high + 2) // 3)
        self.modeled = _BLOB_ERRORS.get(shape.name)
        super().__init__(validate=[Length(low, high, echo=False, short_error=self._empty)], **kwargs)

    def _empty(self) -> PcaqError | None:
        if self.modeled is None:
            return None
        error, noun, what = self.modeled
        return error(f"The {noun} is empty: it must be the base64 encoding of {what}.")

    def _not_base64(self, member: str | None) -> PcaqError | None:
        if self.modeled is None:
            return None
        error, _, what = self.modeled
        return error(f"{member} must be the base64 encoding of {what}; the value is not valid base64.")

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bytes:
        if value.__class__ is not str:
            raise ValidationError(Violation("The value", "Member must be a base64-encoded string"))
        if self.max_encoded is not None and len(value) > self.max_encoded:
            constraint = f"Member must have length less than or equal to {self.max_size}"
            raise ValidationError(Violation("The value", constraint))
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            violation = Violation("The value", "Member must be valid base64", self._not_base64(attr))
            raise ValidationError(violation) from None


class Nested(NullIsAbsent, fields.Nested):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        if value.__class__ is not dict:
            raise _fail(value, "Member must be a structure (JSON object)")
        return super()._deserialize(value, attr, data, **kwargs)


class ListOf(NullIsAbsent, fields.List):
    def __init__(self, inner: fields.Field, max_items: int | None, **kwargs: Any):
        super().__init__(inner, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if value.__class__ is not list:
            raise _fail(value, "Member must be a list (JSON array)")
        if self.max_items is not None and len(value) > self.max_items:
            self._validate(value)  # report the length at once rather than checking every item
        return super()._deserialize(value, attr, data, **kwargs)


class MapKey(str):
    """An error-tree key naming a map entry (so it is not mistaken for a structure member)."""


class MapOf(NullIsAbsent, fields.Field):
    """A JSON object with free keys; keys and values are validated by their own model fields."""

    def __init__(self, key_field: fields.Field, value_field: fields.Field, **kwargs: Any):
        super().__init__(**kwargs)
        self.key_field, self.value_field = key_field, value_field

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        if value.__class__ is not dict:
            raise _fail(value, "Member must be a map (JSON object)")
        result, errors = {}, {}
        for key, item in value.items():
            try:
                result[self.key_field.deserialize(key)] = self.value_field.deserialize(item)
            except ValidationError as error:
                errors[MapKey(key)] = error.messages
        if errors:
            raise ValidationError(errors)
        return result
