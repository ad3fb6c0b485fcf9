"""When a follow-up is due: the shopper's time zone, the local send time, quiet hours, month windows.

All stored times are UTC; the shopper's local time decides *when*. A step ``offset_days`` after the
anchor (delivery) goes out on that local calendar day at its ``send_at`` time, and never inside the
quiet hours (no message at 3 a.m. local time): a send that falls inside them moves to their end.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import get_global

from ccms_addon.programs.schemas import parse_local_time

#: countries spanning several zones, where a shop abroad cannot tell which: the most populous zone
_MAIN_ZONE = {
    "US": "America/New_York", "CA": "America/Toronto", "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo", "RU": "Europe/Moscow", "MX": "America/Mexico_City",
    "ID": "Asia/Jakarta", "KZ": "Asia/Almaty", "CL": "America/Santiago", "AR": "America/Buenos_Aires",
    "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "DE": "Europe/Berlin", "CN": "Asia/Shanghai",
    "NZ": "Pacific/Auckland", "MN": "Asia/Ulaanbaatar", "UA": "Europe/Kyiv",
}


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@lru_cache(maxsize=1024)
def shopper_timezone(country_code: str | None, shop_timezone: str) -> str:
    """The shopper's zone from the shipping country; the shop's when it lies in that country or the
    country is unknown."""
    if not country_code:
        return shop_timezone
    zones = get_global("territory_zones").get(country_code.upper()) or []
    if not zones or shop_timezone in zones:
        return shop_timezone
    if len(zones) == 1:
        return zones[0]
    return _MAIN_ZONE.get(country_code.upper(), zones[0])


def _in_quiet(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window spans midnight


def _localize(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``tz``; a time skipped by a DST change moves forward with the clock."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz)
    roundtrip = aware.astimezone(timezone.utc).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != naive:  # in a gap
        aware = (naive + timedelta(hours=1)).replace(tzinfo=tz)
    return aware


def outside_quiet_hours(when: datetime, tz_name: str, quiet: Mapping[str, str]) -> datetime:
    """``when`` (aware) or, if it falls in the quiet hours of ``tz_name``, the end of them (UTC)."""
    tz = zone(tz_name)
    local = when.astimezone(tz)
    start, end = parse_local_time(quiet["start"]), parse_local_time(quiet["end"])
    if not _in_quiet(local.timetz().replace(tzinfo=None), start, end):
        return when.astimezone(timezone.utc)
    day = local.date()
    if start > end and local.time() >= start:  # late evening: the quiet hours end tomorrow
        day += timedelta(days=1)
    return _localize(day, end, tz).astimezone(timezone.utc)


def step_due_at(anchor: datetime, offset_days: int, send_at: str, tz_name: str,
                quiet: Mapping[str, str]) -> datetime:
    """The UTC time a step is due: the anchor's local day + ``offset_days``, at ``send_at``."""
    tz = zone(tz_name)
    day = anchor.astimezone(tz).date() + timedelta(days=offset_days)
    return outside_quiet_hours(_localize(day, parse_local_time(send_at), tz), tz_name, quiet)


def add_months(when: datetime, months: int) -> datetime:
    """``when`` plus calendar months, clamped to the month's last day (Jan 31 + 1 → Feb 28/29)."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    return when.replace(year=year, month=month,
                        day=min(when.day, calendar.monthrange(year, month)[1]))
