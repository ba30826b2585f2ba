"""Request validation for every ACM PCA operation, derived from botocore's own service model.

Each operation's input shape becomes, once at import, a marshmallow schema: a structure is a schema, a
member is a field whose validators carry the model's min/max, pattern, enum and range traits. botocore
checks only part of this client-side (contract §3.8), so the server enforces all of it.
``validate_request`` runs the schema and turns marshmallow's error tree into the AWS framework message
(``1 validation error detected: Value 'X' at 'a.b' failed to satisfy constraint: ...``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import botocore.session
import regex
from botocore.model import ServiceModel, Shape
from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing, validate

from shared.errors import (
    InvalidArn,
    InvalidTag,
    MalformedCertificate,
    MalformedCSR,
    PcaqError,
    ValidationFailed,
)

_SHOWN_CHARS = 64  # never echo more of a bad value than this
_LISTED_ERRORS = 10  # a message lists at most this many violations (the count covers all)

# Blob members whose bad encoding has a modeled exception: shape -> (error, noun, what it must hold).
_BLOB_ERRORS: dict[str, tuple[type[PcaqError], str, str]] = {
    "CsrBlob": (MalformedCSR, "CSR", "a PEM or DER certificate signing request"),
    "CertificateBodyBlob": (MalformedCertificate, "certificate", "a PEM certificate"),
    "CertificateChainBlob": (MalformedCertificate, "certificate chain", "PEM certificates"),
}

# Java's \w and \d (the model's pattern dialect) are ASCII-only; Python's are Unicode.
_JAVA_ASCII_CLASSES = {r"\w": "A-Za-z0-9_", r"\d": "0-9"}
_INT_BITS = {"integer": 32, "long": 64}
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_KINDS[type(None)] = "null"


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


class _Violation(str):
    """One broken constraint, still without its path (added when the error tree is flattened).

    A ``str`` so that marshmallow stores it like any message; ``domain_error`` is set when the
    violation has a modeled exception of its own (a blob that is not base64, an empty CSR).
    """

    def __new__(cls, subject: str, constraint: str, domain_error: PcaqError | None = None) -> _Violation:
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
    return ValidationError(_Violation(_subject(value), constraint))


# ---- validators: marshmallow's, with the AWS constraint wording and full-match patterns ----------------


class _Length(validate.Length):
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
        raise ValidationError(_Violation(_subject(value) if self.echo else "The value", constraint, domain))


class _Range(validate.Range):
    def __call__(self, value: Any) -> Any:
        if self.min is not None and value < self.min:
            raise _fail(value, f"Member must have value greater than or equal to {self.min}")
        if self.max is not None and value > self.max:
            raise _fail(value, f"Member must have value less than or equal to {self.max}")
        return value


class _Enum(validate.OneOf):
    def __init__(self, choices: list[str]):
        super().__init__(choices)
        self.allowed = frozenset(choices)
        self.constraint = f"Member must satisfy enum value set: [{', '.join(choices)}]"

    def __call__(self, value: Any) -> Any:
        if value not in self.allowed:
            raise _fail(value, self.constraint)
        return value


# Shapes whose pattern failures have a modeled exception of their own (contract §8.11, §9).
_PATTERN_ERRORS: dict[str, tuple[type[PcaqError], str]] = {
    "Arn": (InvalidArn, "The ARN {} is not valid: it must look like arn:aws:acm-pca:<region>:<account>:..."),
    "TagKey": (InvalidTag, "The tag key {} is not valid: use letters, digits, spaces and _.:/=+-@ only."),
    "TagValue": (InvalidTag, "The tag value {} is not valid: use letters, digits, spaces and _.:/=+-@ only."),
}


class _Pattern(validate.Regexp):
    def __init__(self, model_pattern: str, shape_name: str = ""):
        super().__init__(compile_pattern(model_pattern))
        self.constraint = f"Member must satisfy regular expression pattern: {model_pattern}"
        self.modeled = _PATTERN_ERRORS.get(shape_name)

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            if self.modeled:
                error_class, text = self.modeled
                error = error_class(text.format(_subject(value).removeprefix("Value ")))
                raise ValidationError(_Violation(_subject(value), self.constraint, error))
            raise _fail(value, self.constraint)
        return value


# ---- fields: one per model type; each checks the JSON type itself --------------------------------------


class _NullIsAbsent:
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
            return ValidationError(_Violation("Value null", "Member must not be null"))
        return super().make_error(key, **kwargs)


class _Scalar(_NullIsAbsent, fields.Field):
    """A JSON string, boolean or number, matched by exact Python type (so a bool is never a number)."""

    def __init__(self, types: tuple[type, ...], expected: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.types, self.expected = types, expected

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value.__class__ not in self.types:
            raise _fail(value, f"Member must be {self.expected}")
        return value


class _Integer(_NullIsAbsent, fields.Field):
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


class _Blob(_NullIsAbsent, fields.Field):
    """A base64 string on the wire, bytes after loading; the size is checked before decoding."""

    def __init__(self, shape: Shape, **kwargs: Any):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        self.max_size = high
        self.max_encoded = None if high is None else 4 * ((high + 2) // 3)
        self.modeled = _BLOB_ERRORS.get(shape.name)
        super().__init__(validate=[_Length(low, high, echo=False, short_error=self._empty)], **kwargs)

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
            raise ValidationError(_Violation("The value", "Member must be a base64-encoded string"))
        if self.max_encoded is not None and len(value) > self.max_encoded:
            constraint = f"Member must have length less than or equal to {self.max_size}"
            raise ValidationError(_Violation("The value", constraint))
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            violation = _Violation("The value", "Member must be valid base64", self._not_base64(attr))
            raise ValidationError(violation) from None


class _Nested(_NullIsAbsent, fields.Nested):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict:
        if value.__class__ is not dict:
            raise _fail(value, "Member must be a structure (JSON object)")
        return super()._deserialize(value, attr, data, **kwargs)


class _List(_NullIsAbsent, fields.List):
    def __init__(self, inner: fields.Field, max_items: int | None, **kwargs: Any):
        super().__init__(inner, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if value.__class__ is not list:
            raise _fail(value, "Member must be a list (JSON array)")
        if self.max_items is not None and len(value) > self.max_items:
            self._validate(value)  # report the length at once rather than checking every item
        return super()._deserialize(value, attr, data, **kwargs)


class _MapKey(str):
    """An error-tree key naming a map entry (so it is not mistaken for a structure member)."""


class _Map(_NullIsAbsent, fields.Field):
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
                errors[_MapKey(key)] = error.messages
        if errors:
            raise ValidationError(errors)
        return result


# ---- building schemas from the model -------------------------------------------------------------------


class _RequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # AWS ignores members it does not know


class _SchemaBuilder:
    """Turns the input shapes of a service model into marshmallow schemas (one class per structure)."""

    def __init__(self) -> None:
        self._structures: dict[str, type[Schema]] = {}
        self._building: set[str] = set()

    def structure(self, shape: Shape) -> type[Schema]:
        """The schema class of a structure shape, built once."""
        if shape.name in self._structures:
            return self._structures[shape.name]
        self._building.add(shape.name)
        required = set(shape.required_members)
        declared = {name: self.field(member, name in required) for name, member in shape.members.items()}
        if set(declared) & set(dir(_RequestSchema)):  # a member would shadow a Schema attribute
            raise NotImplementedError(f"{shape.name} has a member named like a Schema attribute")
        schema = _RequestSchema.from_dict(declared, name=f"{shape.name}Schema")
        self._building.discard(shape.name)
        self._structures[shape.name] = schema
        return schema

    def field(self, shape: Shape, required: bool) -> fields.Field:
        """The field for one member (or list item, or map key/value) of the given shape."""
        kind, traits = shape.type_name, shape.metadata
        low, high = traits.get("min"), traits.get("max")
        if kind == "structure":
            if shape.name in self._building:  # a recursive shape: resolve once its class exists
                name = shape.name
                return _Nested(lambda: self._structures[name](), required=required)
            return _Nested(self.structure(shape), required=required)
        if kind == "list":
            item = self.field(shape.member, required=True)  # a null item is an error, not absent
            return _List(item, high, required=required, validate=self._length(low, high))
        if kind == "map":
            key, value = self.field(shape.key, True), self.field(shape.value, True)
            return _Map(key, value, required=required, validate=self._length(low, high))
        if kind == "string":
            checks: list[Callable] = self._length(low, high)
            if shape.enum:
                checks.append(_Enum(list(shape.enum)))
            if "pattern" in traits:
                checks.append(_Pattern(traits["pattern"], shape.name))
            return _Scalar((str,), "a string", required=required, validate=checks)
        if kind in _INT_BITS:
            checks = [] if low is None and high is None else [_Range(min=low, max=high)]
            return _Integer(_INT_BITS[kind], required=required, validate=checks)
        if kind in ("float", "double", "timestamp"):
            checks = [] if low is None and high is None else [_Range(min=low, max=high)]
            return _Scalar((int, float), "a number", required=required, validate=checks)
        if kind == "boolean":
            return _Scalar((bool,), "a boolean", required=required)
        if kind == "blob":
            return _Blob(shape, required=required)
        raise NotImplementedError(f"model shape {shape.name!r} has type {kind!r}, which has no field")

    @staticmethod
    def _length(low: int | None, high: int | None) -> list[Callable]:
        return [] if low is None and high is None else [_Length(low, high)]


def build_schemas(model: ServiceModel) -> dict[str, Schema]:
    """One ready schema per operation of ``model``, keyed by operation name."""
    builder = _SchemaBuilder()
    schemas: dict[str, Schema] = {}
    for name in model.operation_names:
        input_shape = model.operation_model(name).input_shape
        schemas[name] = (builder.structure(input_shape) if input_shape else _RequestSchema)()
    return schemas


# ---- turning marshmallow's error tree into the AWS message --------------------------------------------


def _flatten(messages: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(messages, dict):
        for key, sub in messages.items():
            if isinstance(key, int):
                segment = f"{key + 1}.member"  # AWS numbers list items from 1
            elif isinstance(key, _MapKey) or key == "_schema":
                segment = "" if key == "_schema" else str(key)
            else:
                segment = key[:1].lower() + key[1:]
            _flatten(sub, f"{path}.{segment}" if path and segment else path or segment, out)
    elif isinstance(messages, list):
        for message in messages:
            _flatten(message, path, out)
    else:
        out.append((path, messages))


def _raise_for(messages: Any) -> None:
    found: list[tuple[str, str]] = []
    _flatten(messages, "", found)
    plain = [(path, msg) for path, msg in found if getattr(msg, "domain_error", None) is None]
    if plain:
        texts = [
            f"{msg.subject} at '{path}' failed to satisfy constraint: {msg.constraint}"
            if isinstance(msg, _Violation)
            else f"Value at '{path}' failed to satisfy constraint: {msg}"
            for path, msg in plain[:_LISTED_ERRORS]
        ]
        count = len(plain)
        more = "; ..." if count > _LISTED_ERRORS else ""
        noun = "error" if count == 1 else "errors"
        raise ValidationFailed(f"{count} validation {noun} detected: {'; '.join(texts)}{more}")
    for _, msg in found:  # only modeled-exception violations are left: the first one decides
        raise msg.domain_error


_SCHEMAS = build_schemas(botocore.session.get_session().get_service_model("acm-pca"))

OPERATIONS: frozenset[str] = frozenset(_SCHEMAS)


def validate_request(operation: str, body: object) -> dict:
    """Validate the decoded JSON ``body`` of ``operation`` against the acm-pca model.

    Returns the input with the wire's member names, blobs decoded to ``bytes``, nulls and unknown
    members dropped. Raises ``ValidationFailed`` for any model constraint violation, ``MalformedCSR`` /
    ``MalformedCertificate`` for a Csr / Certificate(Chain) that is empty or not base64 (when nothing
    else is wrong), and ``KeyError`` for an unknown operation.
    """
    schema = _SCHEMAS[operation]
    if body.__class__ is not dict:
        kind = _JSON_KINDS.get(body.__class__, "a value that is not JSON")
        raise ValidationFailed(f"The request body must be a JSON object, not {kind}.")
    try:
        return schema.load(body)
    except ValidationError as error:
        _raise_for(error.messages)
        raise ValidationFailed("The request does not match the service model.") from error
