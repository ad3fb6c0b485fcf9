"""The SLA clock: business hours in the shop's zone, with holidays."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ccms_addon.voc.business_hours import BusinessHours

SEOUL = ZoneInfo("Asia/Seoul")
WEEKDAYS = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
CLOCK = BusinessHours.from_settings({"timezone": "Asia/Seoul", "weekly": WEEKDAYS,
                                     "holidays": ["2026-12-28"]})


def seoul(*args) -> datetime:
    return datetime(*args, tzinfo=SEOUL).astimezone(timezone.utc)


@pytest.mark.parametrize("start, hours, due", [
    (seoul(2026, 11, 23, 10, 0), 1, seoul(2026, 11, 23, 11, 0)),      # Monday morning
    (seoul(2026, 11, 27, 17, 30), 1, seoul(2026, 11, 30, 9, 30)),     # Friday evening → Monday
    (seoul(2026, 11, 28, 12, 0), 2, seoul(2026, 11, 30, 11, 0)),      # Saturday → Monday
    (seoul(2026, 11, 23, 7, 0), 9, seoul(2026, 11, 23, 18, 0)),       # before opening
    (seoul(2026, 11, 23, 20, 0), 10, seoul(2026, 11, 25, 10, 0)),     # a day and an hour
    (seoul(2026, 12, 25, 17, 0), 2, seoul(2026, 12, 29, 10, 0)),      # Fri 17:00 + holiday Monday
])
def test_add(start, hours, due):
    assert CLOCK.add(start, hours) == due
    assert CLOCK.between(start, due) == timedelta(hours=hours)


def test_between_counts_only_open_time():
    assert CLOCK.between(seoul(2026, 11, 27, 17, 0), seoul(2026, 11, 30, 10, 0)) == timedelta(hours=2)
    assert CLOCK.between(seoul(2026, 11, 30, 10, 0), seoul(2026, 11, 27, 17, 0)) == timedelta(0)


def test_is_open():
    assert CLOCK.is_open(seoul(2026, 11, 23, 9, 0))
    assert not CLOCK.is_open(seoul(2026, 11, 23, 18, 0))
    assert not CLOCK.is_open(seoul(2026, 11, 28, 12, 0))
    assert not CLOCK.is_open(seoul(2026, 12, 28, 12, 0))  # holiday


def test_split_days_and_the_default():
    lunch = BusinessHours.from_settings({"timezone": "UTC", "weekly": {
        "mon": [["13:00", "17:00"], ["09:00", "12:00"]]}})
    monday = datetime(2026, 11, 23, 11, 0, tzinfo=timezone.utc)
    assert lunch.add(monday, 2) == datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)
    # no hours set: Monday to Friday 09:00–18:00 in the shop's own zone
    default = BusinessHours.from_settings(None, "Asia/Tokyo")
    friday = datetime(2026, 11, 27, 17, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert default.add(friday, 2).astimezone(ZoneInfo("Asia/Tokyo")) == datetime(
        2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def test_a_shop_never_open_falls_back_to_the_calendar():
    never = BusinessHours.from_settings({"timezone": "UTC", "weekly": {"mon": [["09:00", "10:00"]]},
                                         "holidays": []})
    start = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    assert never.add(start, 3) == datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
    assert BusinessHours(zone=SEOUL, weekly={}, holidays=frozenset()).add(start, 3) == \
        start + timedelta(hours=3)
