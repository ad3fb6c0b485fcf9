"""Business hours: the clock SLAs run on.

A promise of "1 business hour" made at 17:30 on a Friday in Seoul falls due at 09:30 on Monday (or
on Tuesday when Monday is a holiday). The hours come from the shop's widget settings (the same
opening hours the shopper sees); a shop that set none works Monday to Friday, 09:00–18:00, in its
own time zone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: when a shop set no opening hours
DEFAULT_WEEKLY = {day: [("09:00", "18:00")] for day in ("mon", "tue", "wed", "thu", "fri")}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: a promise is never searched for further than this (a shop open one hour a year is an error)
MAX_DAYS = 400


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class BusinessHours:
    zone: ZoneInfo
    #: weekday (Monday 0) → opening spans as local times, sorted
    weekly: Mapping[int, tuple[tuple[time, time], ...]]
    holidays: frozenset[date]

    @classmethod
    def from_settings(cls, hours: Mapping | None, shop_timezone: str = "UTC") -> "BusinessHours":
        """From the widget's ``hours`` setting (``timezone``, ``weekly``, ``holidays``)."""
        hours = hours or {}
        weekly = hours.get("weekly") or {}
        zone_name = hours.get("timezone") if weekly else None
        if not weekly:
            weekly, zone_name = DEFAULT_WEEKLY, shop_timezone
        try:
            zone = ZoneInfo(zone_name or shop_timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        spans = {WEEKDAYS.index(day): tuple(sorted((_clock(a), _clock(b)) for a, b in pairs))
                 for day, pairs in weekly.items() if day in WEEKDAYS}
        holidays = frozenset(day if isinstance(day, date) else date.fromisoformat(str(day))
                             for day in hours.get("holidays") or ())
        return cls(zone=zone, weekly=spans, holidays=holidays)

    def _open_spans(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The opening spans (UTC) that end after ``start``, in order."""
        local_day = start.astimezone(self.zone).date()
        for offset in range(MAX_DAYS):
            day = local_day + timedelta(days=offset)
            if day in self.holidays:
                continue
            for opens, closes in self.weekly.get(day.weekday(), ()):
                begin = datetime.combine(day, opens, self.zone).astimezone(timezone.utc)
                end = datetime.combine(day, closes, self.zone).astimezone(timezone.utc)
                if end > start:
                    yield max(begin, start), end

    def add(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` business hours after ``start``."""
        remaining = timedelta(hours=hours)
        if remaining <= timedelta(0):
            return start
        for begin, end in self._open_spans(start):
            if end - begin >= remaining:
                return begin + remaining
            remaining -= end - begin
        return start + timedelta(hours=hours)  # never open: fall back to the calendar

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time elapsed from ``start`` to ``end`` (zero when ``end`` is earlier)."""
        elapsed = timedelta(0)
        if end <= start:
            return elapsed
        for begin, close in self._open_spans(start):
            if begin >= end:
                break
            elapsed += min(close, end) - begin
        return elapsed

    def is_open(self, moment: datetime) -> bool:
        for begin, end in self._open_spans(moment):
            return begin <= moment < end
        return False
