"""The dashboard's words in Korean, English and Japanese, and how dates and labels are written.

Catalogs are flat JSON files (``i18n/<locale>.json``: key → text with ``{field}`` placeholders),
the same keys in each (a test holds them to that). A text filled with a whole number ``count`` may
have plural forms, ``<key>.<CLDR plural category>`` (``inbox.count.one``: "1 item"), chosen by the
language's own rule (babel); Korean and Japanese have one form for every number. A text is filled with ``str.format`` and
returned as a plain string: Jinja's autoescape then escapes it and anything filled into it, so a
customer's name inside a sentence stays text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_datetime

#: the languages of the dashboard; the first is the fallback for a missing key
LOCALES = ("en", "ko", "ja")
DEFAULT_LOCALE = "en"
#: the name of each language in itself, for the switcher
LANGUAGE_NAMES = {"en": "English", "ko": "한국어", "ja": "日本語"}

_FOLDER = Path(__file__).with_name("i18n")


@cache
def catalog(locale: str) -> Mapping[str, str]:
    return json.loads((_FOLDER / f"{locale}.json").read_text(encoding="utf-8"))


def best_locale(wanted: str | None) -> str:
    """``wanted`` reduced to a dashboard language (``ko-KR`` → ``ko``), else the default."""
    short = (wanted or "").strip().lower()[:2]
    return short if short in LOCALES else DEFAULT_LOCALE


class Translator:
    """``t("inbox.title")`` or ``t("inbox.count", count=3)`` in one language."""

    def __init__(self, locale: str):
        self.locale = best_locale(locale)
        self._texts = catalog(self.locale)
        self._fallback = catalog(DEFAULT_LOCALE)

    def __call__(self, key: str, **fields: object) -> str:
        count = fields.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            key_form = f"{key}.{self._plural_form(count)}"
            if key_form in self._texts:
                key = key_form
        text = self._texts.get(key) or self._fallback.get(key) or key
        return text.format(**fields) if fields else text

    def _plural_form(self, count: int) -> str:
        return _plural_rule(self.locale)(abs(count))

    def maybe(self, key: str, default: str) -> str:
        """The text of ``key`` if the catalog has one (open-ended names: event types, plugins'
        channels), else ``default``."""
        return self._texts.get(key) or self._fallback.get(key) or default

    def when(self, moment: datetime | None, zone: str | None = None, fmt: str = "short") -> str:
        """A moment in the shop's time zone, written the way the language writes dates."""
        if moment is None:
            return ""
        return format_datetime(moment, fmt, tzinfo=_zone(zone), locale=self.locale)


@cache
def _plural_rule(locale: str):
    """The language's CLDR plural rule (``1`` → ``"one"`` in English, ``"other"`` in Korean)."""
    return Locale.parse(locale).plural_form


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
