"""Request validation for every ACM PCA operation, derived from botocore's own service model.

Each operation's input shape becomes, once at import, a marshmallow schema: a structure is a schema, a
member is a field whose validators carry the model's min/max, pattern, enum and range traits. botocore
checks only part of this client-side, so the server enforces all of it.
``validate_request`` runs the schema and turns marshmallow's error tree into the AWS framework message
(``1 validation error detected: Value 'X' at 'a.b' failed to satisfy constraint: ...``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.model import ServiceModel, Shape
from marshmallow import EXCLUDE, Schema, ValidationError, fields

from pcaq.api.model_fields import (
    INT_BITS,
    Blob,
    Integer,
    Length,
    ListOf,
    MapKey,
    MapOf,
    Nested,
    OneOfEnum,
    Pattern,
    Range,
    Scalar,
    Violation,
)
from pcaq.errors import ValidationFailed

__all__ = ["OPERATIONS", "build_schemas", "validate_request"]

_LISTED_ERRORS = 10  # a message lists at most this many violations (the count covers all)

_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_KINDS[type(None)] = "null"


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
                return Nested(lambda: self._structures[name](), required=required)
            return Nested(self.structure(shape), required=required)
        if kind == "list":
            item = self.field(shape.member, required=True)  # a null item is an error, not absent
            return ListOf(item, high, required=required, validate=self._length(low, high))
        if kind == "map":
            key, value = self.field(shape.key, True), self.field(shape.value, True)
            return MapOf(key, value, required=required, validate=self._length(low, high))
        if kind == "string":
            checks: list[Callable] = self._length(low, high)
            if shape.enum:
                checks.append(OneOfEnum(list(shape.enum)))
            if "pattern" in traits:
                checks.append(Pattern(traits["pattern"], shape.name))
            return Scalar((str,), "a string", required=required, validate=checks)
        if kind in INT_BITS:
            checks = [] if low is None and high is None else [Range(min=low, max=high)]
            return Integer(INT_BITS[kind], required=required, validate=checks)
        if kind in ("float", "double", "timestamp"):
            checks = [] if low is None and high is None else [Range(min=low, max=high)]
            return Scalar((int, float), "a number", required=required, validate=checks)
        if kind == "boolean":
            return Scalar((bool,), "a boolean", required=required)
        if kind == "blob":
            return Blob(shape, required=required)
        raise NotImplementedError(f"model shape {shape.name!r} has type {kind!r}, which has no field")

    @staticmethod
    def _length(low: int | None, high: int | None) -> list[Callable]:
        return [] if low is None and high is None else [Length(low, high)]


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
            elif isinstance(key, MapKey) or key == "_schema":
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
            if isinstance(msg, Violation)
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
