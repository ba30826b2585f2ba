"""Validity rules of issued certificates (docs/wire-contract.md, "Validity").

All datetimes handed out are timezone-aware UTC and truncated to whole seconds (X.509 times have
no fractions). A naive ``now`` is read as UTC.

Choices made here (callers must know them):

- ``END_DATE`` arrives as a JSON number (``PositiveLong``), so the leading zeros of a UTCTime for
  2000-2009 are lost on the wire: a value of at most 12 digits is zero-padded and read as UTCTime
  ``YYMMDDHHMMSS`` (YY >= 50 means 19YY, else 20YY); exactly 14 digits is GeneralizedTime
  ``YYYYMMDDHHMMSS``; any other length, or a date that does not exist, is InvalidArgument.
- ``ValidityNotBefore`` accepts every type. ``ABSOLUTE`` and ``END_DATE`` are points in time;
  ``DAYS``/``MONTHS``/``YEARS`` are read as "that long **before** issuance" (backdating).
- Times before 1950-01-01 are refused: X.509 (and ``cryptography``) cannot encode them as the
  RFC 5280 profile asks.
- The Not After ceiling is the issuing CA certificate's Not After; equal is allowed (RFC 5280 needs
  only that the certificate not outlive its issuer). Callers signing a root's own certificate pass
  ``ca_not_after=None`` (AWS applies no validity checks to root CA certificates).
- Not Before is clamped to the CA certificate's Not Before: a certificate cannot be validated before
  its issuer is valid, so an earlier date buys nothing and only makes the chain look odd. pkilint
  lints one certificate at a time and does not flag it either way.
- SHORT_LIVED_CERTIFICATE caps the time from issuance (``now``) to Not After at 7 days. Measuring
  from issuance rather than from Not Before keeps "7 DAYS" legal despite the one-hour backdate, and
  backdating cannot extend how long a certificate stays usable.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from pcaq.errors import InvalidArgument

VALIDITY_TYPES = ("END_DATE", "ABSOLUTE", "DAYS", "MONTHS", "YEARS")
DEFAULT_BACKDATE = timedelta(minutes=60)
SHORT_LIVED_MAX = timedelta(days=7)
_EARLIEST = datetime(1950, 1, 1, tzinfo=UTC)
_END_DATE_FORMAT = (
    "END_DATE must be a UTCTime YYMMDDHHMMSS (12 digits) or a GeneralizedTime YYYYMMDDHHMMSS (14 digits)"
)


def _utc_seconds(when: datetime) -> datetime:
    """``when`` as aware UTC without microseconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0)


def _fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _value_and_type(validity: dict, what: str) -> tuple[int, str]:
    """Read and check ``{Value, Type}``; ``what`` names the member in error messages."""
    if not isinstance(validity, dict):
        raise InvalidArgument(f"{what} must be a structure with Value and Type.")
    vtype = validity.get("Type")
    if vtype not in VALIDITY_TYPES:
        raise InvalidArgument(f"{what}.Type must be one of {', '.join(VALIDITY_TYPES)}, got {vtype!r}.")
    raw = validity.get("Value")
    if isinstance(raw, bool):
        raw = None
    try:
        value = int(raw)  # the API may hand over a number or a numeric string
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}.Value must be a whole number, got {raw!r}.") from None
    if value < 1:
        raise InvalidArgument(f"{what}.Value must be at least 1, got {value}.")
    return value, vtype


def _end_date(value: int, what: str) -> datetime:
    digits = str(value)
    if len(digits) <= 12:
        digits = digits.zfill(12)
        yy = int(digits[:2])
        year = 1900 + yy if yy >= 50 else 2000 + yy
        rest = digits[2:]
    elif len(digits) == 14:
        year = int(digits[:4])
        rest = digits[4:]
    else:
        raise InvalidArgument(f"{what}.Value {value} is not a valid date: {_END_DATE_FORMAT}.")
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise InvalidArgument(
            f"{what}.Value {value} is not a valid date: {_END_DATE_FORMAT}, in UTC."
        ) from None


def _add_months(when: datetime, months: int) -> datetime:
    """Calendar arithmetic: ``months`` may be negative; the day is clamped to the month's length."""
    index = when.year * 12 + (when.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise OverflowError("year out of range")
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def _resolve(validity: dict, now: datetime, sign: int, what: str) -> datetime:
    """The point in time ``validity`` names; relative types move from ``now`` in direction ``sign``."""
    value, vtype = _value_and_type(validity, what)
    try:
        if vtype == "END_DATE":
            result = _end_date(value, what)
        elif vtype == "ABSOLUTE":
            result = datetime.fromtimestamp(value, tz=UTC)
        elif vtype == "DAYS":
            result = now + sign * timedelta(days=value)
        elif vtype == "MONTHS":
            result = _add_months(now, sign * value)
        else:  # YEARS
            result = _add_months(now, sign * value * 12)
    except (OverflowError, ValueError, OSError):
        raise InvalidArgument(
            f"{what} {value} {vtype} is out of range: the date must fall before the year 10000."
        ) from None
    if result < _EARLIEST:
        raise InvalidArgument(f"{what} {value} {vtype} falls before 1950-01-01, which X.509 cannot express.")
    return _utc_seconds(result)


def not_after(validity: dict, now: datetime) -> datetime:
    """The Not After that ``Validity`` asks for, relative types counted from ``now`` (issuance time)."""
    return _resolve(validity, _utc_seconds(now), +1, "Validity")


def not_before(validity_not_before: dict | None, now: datetime) -> datetime:
    """The Not Before that ``ValidityNotBefore`` asks for; default ``now`` minus 60 minutes.

    ``DAYS``/``MONTHS``/``YEARS`` mean that long before ``now``.
    """
    now = _utc_seconds(now)
    if validity_not_before is None:
        return now - DEFAULT_BACKDATE
    return _resolve(validity_not_before, now, -1, "ValidityNotBefore")


def compute_window(
    validity: dict,
    validity_not_before: dict | None,
    now: datetime,
    ca_not_after: datetime | None,
    ca_not_before: datetime | None,
    short_lived: bool,
) -> tuple[datetime, datetime]:
    """``(not_before, not_after)`` for a certificate issued at ``now`` by a CA valid over the given span.

    Raises InvalidArgument when Not After is not in the future, not after Not Before, passes the CA
    certificate's Not After, or (``short_lived``) lies more than 7 days after issuance.
    """
    now = _utc_seconds(now)
    end = not_after(validity, now)
    start = not_before(validity_not_before, now)
    if ca_not_before is not None:
        start = max(start, _utc_seconds(ca_not_before))
    if end <= now:
        raise InvalidArgument(
            f"The requested Not After {_fmt(end)} is not in the future (now is {_fmt(now)})."
        )
    if end <= start:
        raise InvalidArgument(
            f"The requested Not After {_fmt(end)} must be later than the Not Before {_fmt(start)}."
        )
    if ca_not_after is not None:
        ceiling = _utc_seconds(ca_not_after)
        if end > ceiling:
            raise InvalidArgument(
                f"The requested Not After {_fmt(end)} is later than the issuing CA certificate's "
                f"Not After {_fmt(ceiling)}; ask for a shorter validity."
            )
    if short_lived and end - now > SHORT_LIVED_MAX:
        raise InvalidArgument(
            f"The requested Not After {_fmt(end)} is more than 7 days after issuance; a "
            "SHORT_LIVED_CERTIFICATE CA issues certificates valid for at most 7 days."
        )
    return start, end
