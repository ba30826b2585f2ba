"""Tag rules for CAs, as AWS has them (docs/wire-contract.md)."""

from __future__ import annotations

import regex

from pcaq.errors import InvalidTag, TooManyTags

MAX_TAGS = 50
_ALLOWED = regex.compile(r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*")


def _check(tag: dict) -> None:
    key, value = tag["Key"], tag.get("Value", "")
    if not 1 <= len(key) <= 128 or not _ALLOWED.fullmatch(key):
        raise InvalidTag(
            f"The tag key {key[:64]!r} is not valid: 1 to 128 letters, digits, spaces or _.:/=+-@."
        )
    if len(value) > 256 or not _ALLOWED.fullmatch(value):
        raise InvalidTag(
            f"The value of tag {key[:64]!r} is not valid: up to 256 letters, digits, spaces or _.:/=+-@."
        )
    if key.lower().startswith("aws:"):
        raise InvalidTag(f"The tag key {key[:64]!r} uses the reserved prefix 'aws:'.")


def add(current: list[dict], new: list[dict]) -> list[dict]:
    """The tag list after adding or overwriting ``new``; refuses bad tags and more than 50."""
    for tag in new:
        _check(tag)
    merged = {t["Key"]: t.get("Value", "") for t in current}
    for tag in new:
        merged[tag["Key"]] = tag.get("Value", "")
    if len(merged) > MAX_TAGS:
        raise TooManyTags(
            f"A certificate authority can have at most {MAX_TAGS} tags; this would make {len(merged)}."
        )
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def remove(current: list[dict], gone: list[dict]) -> list[dict]:
    """The tag list after removing ``gone``: a tag without Value goes whatever its value, else only on a match."""
    for tag in gone:
        _check(tag)
    out = []
    for tag in current:
        drop = any(
            g["Key"] == tag["Key"] and ("Value" not in g or g["Value"] == tag.get("Value", "")) for g in gone
        )
        if not drop:
            out.append(tag)
    return out
