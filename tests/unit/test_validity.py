"""Validity rules (docs/wire-contract.md): Not After / Not Before types, ceilings and the default backdate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pcaq.errors import InvalidArgument
from pcaq.pki.validity import compute_window, not_after, not_before

NOW = datetime(2024, 1, 31, 12, 30, 45, 987654, tzinfo=UTC)
NOW_S = NOW.replace(microsecond=0)


def v(value, vtype="DAYS") -> dict:
    return {"Value": value, "Type": vtype}


# --- not_after: END_DATE ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (491231235959, datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),  # the contract's example
        (500101000000, datetime(1950, 1, 1, tzinfo=UTC)),  # YY >= 50 -> 19YY
        (991231235959, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (301015080910, datetime(2030, 10, 15, 8, 9, 10, tzinfo=UTC)),
        (20500101000000, datetime(2050, 1, 1, tzinfo=UTC)),  # 14 digits: GeneralizedTime
        (99991231235959, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (91231235959, datetime(2009, 12, 31, 23, 59, 59, tzinfo=UTC)),  # JSON number lost "0" of YY=09
        (101010000, datetime(2000, 1, 1, 1, tzinfo=UTC)),  # "000101010000" with its zeros lost
        ("491231235959", datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),  # numeric string accepted
    ],
)
def test_end_date_formats(value, expected):
    assert not_after(v(value, "END_DATE"), NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        4912312359590,  # 13 digits
        204912312359590,  # 15 digits
        491331235959,  # month 13
        490230000000,  # 30 February
        491231245959,  # hour 24
        491231236059,  # minute 60
        20490229000000,  # 2049 is not a leap year
        5,  # zero-padded to 000000000005: month 00
    ],
)
def test_end_date_rejects_bad_values_naming_the_format(value):
    with pytest.raises(InvalidArgument) as err:
        not_after(v(value, "END_DATE"), NOW)
    assert "YYMMDDHHMMSS" in err.value.message and "YYYYMMDDHHMMSS" in err.value.message


def test_end_date_before_1950_is_refused():
    with pytest.raises(InvalidArgument, match="1950"):
        not_before(v(19491231235959, "END_DATE"), NOW)


# --- not_after: ABSOLUTE and relative ---------------------------------------------------------


def test_absolute_is_epoch_seconds():
    assert not_after(v(2524608000, "ABSOLUTE"), NOW) == datetime(2050, 1, 1, tzinfo=UTC)
    assert not_after(v(1, "ABSOLUTE"), NOW) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_days_counts_from_now_in_whole_seconds():
    got = not_after(v(20), NOW)
    assert got == NOW_S + timedelta(days=20)
    assert got.microsecond == 0 and got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("now", "value", "vtype", "expected"),
    [
        (datetime(2024, 1, 31, tzinfo=UTC), 1, "MONTHS", datetime(2024, 2, 29, tzinfo=UTC)),  # leap year
        (datetime(2023, 1, 31, tzinfo=UTC), 1, "MONTHS", datetime(2023, 2, 28, tzinfo=UTC)),
        (datetime(2024, 3, 31, tzinfo=UTC), 1, "MONTHS", datetime(2024, 4, 30, tzinfo=UTC)),
        (datetime(2024, 11, 15, tzinfo=UTC), 3, "MONTHS", datetime(2025, 2, 15, tzinfo=UTC)),  # year wraps
        (datetime(2024, 5, 10, tzinfo=UTC), 12, "MONTHS", datetime(2025, 5, 10, tzinfo=UTC)),
        (datetime(2024, 5, 10, tzinfo=UTC), 25, "MONTHS", datetime(2026, 6, 10, tzinfo=UTC)),
        (datetime(2024, 2, 29, 6, tzinfo=UTC), 1, "YEARS", datetime(2025, 2, 28, 6, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), 4, "YEARS", datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2024, 7, 1, tzinfo=UTC), 10, "YEARS", datetime(2034, 7, 1, tzinfo=UTC)),
    ],
)
def test_calendar_months_and_years_clamp_the_day(now, value, vtype, expected):
    assert not_after(v(value, vtype), now) == expected


@pytest.mark.parametrize("vtype", ["ABSOLUTE", "DAYS", "MONTHS", "YEARS"])
def test_huge_values_are_invalid_argument_not_a_crash(vtype):
    with pytest.raises(InvalidArgument, match="out of range"):
        not_after(v(2**62, vtype), NOW)


def test_years_past_9999_are_refused():
    with pytest.raises(InvalidArgument):
        not_after(v(8000, "YEARS"), NOW)


@pytest.mark.parametrize(
    "validity",
    [
        {"Value": 0, "Type": "DAYS"},
        {"Value": -3, "Type": "DAYS"},
        {"Value": True, "Type": "DAYS"},
        {"Value": "ten", "Type": "DAYS"},
        {"Type": "DAYS"},
        {"Value": 3, "Type": "WEEKS"},
        {"Value": 3},
        "3 DAYS",
    ],
)
def test_malformed_validity_is_invalid_argument(validity):
    with pytest.raises(InvalidArgument):
        not_after(validity, NOW)


def test_naive_and_non_utc_now_are_read_correctly():
    naive = datetime(2024, 1, 1, 12, 0, 0)
    assert not_after(v(1), naive) == datetime(2024, 1, 2, 12, tzinfo=UTC)
    plus_two = datetime(2024, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    got = not_after(v(1), plus_two)
    assert got == datetime(2024, 1, 2, 12, tzinfo=UTC) and got.utcoffset() == timedelta(0)


# --- not_before ------------------------------------------------------------------------------


def test_not_before_defaults_to_an_hour_before_issuance():
    assert not_before(None, NOW) == NOW_S - timedelta(minutes=60)


def test_not_before_absolute_and_end_date():
    assert not_before(v(1700000000, "ABSOLUTE"), NOW) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert not_before(v(240101000000, "END_DATE"), NOW) == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "vtype", "expected"),
    [
        (2, "DAYS", datetime(2024, 3, 29, 8, tzinfo=UTC)),
        (1, "MONTHS", datetime(2024, 2, 29, 8, tzinfo=UTC)),  # 31 March - 1 month: day clamped
        (1, "YEARS", datetime(2023, 3, 31, 8, tzinfo=UTC)),
    ],
)
def test_not_before_relative_types_count_backwards(value, vtype, expected):
    assert not_before(v(value, vtype), datetime(2024, 3, 31, 8, tzinfo=UTC)) == expected


# --- compute_window --------------------------------------------------------------------------


def test_window_default():
    start, end = compute_window(v(30), None, NOW, None, None, False)
    assert (start, end) == (NOW_S - timedelta(hours=1), NOW_S + timedelta(days=30))


def test_not_after_in_the_past_is_refused():
    with pytest.raises(InvalidArgument, match="not in the future"):
        compute_window(v(1700000000, "ABSOLUTE"), None, NOW, None, None, False)


def test_not_after_must_follow_not_before():
    later = int((NOW + timedelta(days=10)).timestamp())
    with pytest.raises(InvalidArgument, match="later than the Not Before"):
        compute_window(v(5), v(later, "ABSOLUTE"), NOW, None, None, False)


def test_ca_ceiling_names_both_dates():
    ca_end = datetime(2024, 6, 30, tzinfo=UTC)
    with pytest.raises(InvalidArgument) as err:
        compute_window(v(1, "YEARS"), None, NOW, ca_end, None, False)
    assert "2025-01-31T12:30:45Z" in err.value.message and "2024-06-30T00:00:00Z" in err.value.message


def test_ca_ceiling_allows_exactly_the_ca_not_after():
    ca_end = NOW_S + timedelta(days=30)
    assert compute_window(v(30), None, NOW, ca_end, None, False)[1] == ca_end


def test_not_before_is_clamped_to_the_ca_not_before():
    ca_start = NOW_S - timedelta(minutes=5)
    start, _ = compute_window(v(30), None, NOW, None, ca_start, False)
    assert start == ca_start
    early = compute_window(v(30), v(1600000000, "ABSOLUTE"), NOW, None, ca_start, False)[0]
    assert early == ca_start
    old_ca = NOW_S - timedelta(days=400)
    assert compute_window(v(30), None, NOW, None, old_ca, False)[0] == NOW_S - timedelta(hours=1)


def test_short_lived_caps_at_seven_days_from_issuance():
    assert compute_window(v(7), None, NOW, None, None, True)[1] == NOW_S + timedelta(days=7)
    with pytest.raises(InvalidArgument, match="SHORT_LIVED_CERTIFICATE"):
        compute_window(v(8), None, NOW, None, None, True)
    just_over = int((NOW_S + timedelta(days=7, seconds=1)).timestamp())
    with pytest.raises(InvalidArgument, match="7 days"):
        compute_window(v(just_over, "ABSOLUTE"), None, NOW, None, None, True)
    assert compute_window(v(1, "YEARS"), None, NOW, None, None, False)[1].year == 2025


@pytest.mark.parametrize(
    ("validity", "expected"),
    [
        (v(301231235959, "END_DATE"), datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (v(20301231235959, "END_DATE"), datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (v(1924991999, "ABSOLUTE"), datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (v(3), NOW_S + timedelta(days=3)),
        (v(1, "MONTHS"), datetime(2024, 2, 29, 12, 30, 45, tzinfo=UTC)),
        (v(2, "YEARS"), datetime(2026, 1, 31, 12, 30, 45, tzinfo=UTC)),
    ],
)
def test_window_for_every_validity_type(validity, expected):
    assert compute_window(validity, None, NOW, None, None, False)[1] == expected
