"""The merchant's widget settings, kept in ``Shop.settings["widget"]`` and validated here.

One schema serves the merchant API (``PUT /api/v1/widget/settings``), the CLI and the public
``config`` endpoint, so what a merchant can set is exactly what the widget can show.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import (RAISE, Schema, ValidationError, fields, validate, validates,
                         validates_schema)

#: languages the widget ships strings for
LOCALES = ("ko", "en", "ja")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
#: WCAG 2.2 AA contrast for normal text
MIN_CONTRAST = 4.5


def _luminance(hex_color: str) -> float:
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class LinkSchema(_Strict):
    label = fields.String(required=True, validate=validate.Length(1, 60))
    url = fields.Url(required=True, schemes={"https", "http", "kakaoplus", "line", "tel", "mailto"})


class CategorySchema(_Strict):
    key = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{1,40}$"))
    labels = fields.Dict(keys=fields.String(validate=validate.OneOf(LOCALES)),
                         values=fields.String(validate=validate.Length(1, 80)), required=True)


class HoursSchema(_Strict):
    """Weekly opening hours in the shop's time zone, plus closed dates."""

    timezone = fields.String(load_default="UTC")
    weekly = fields.Dict(keys=fields.String(validate=validate.OneOf(WEEKDAYS)),
                         values=fields.List(fields.List(fields.String(), validate=validate.Length(2, 2)),
                                            validate=validate.Length(max=4)),
                         load_default=dict)
    holidays = fields.List(fields.Date(), load_default=list, validate=validate.Length(max=100))

    @validates("timezone")
    def _known_zone(self, value: str, **_: Any) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError("Unknown IANA time zone.") from None

    @validates("weekly")
    def _spans(self, value: dict, **_: Any) -> None:
        for day, spans in value.items():
            for start, end in spans:
                if not (_HHMM.match(start) and _HHMM.match(end)) or start >= end:
                    raise ValidationError(f"{day}: spans are [start, end] as HH:MM with start < end.")


class WidgetSettingsSchema(_Strict):
    """Everything a merchant sets about the widget. Every field has a sensible default."""

    position = fields.String(load_default="bottom-right",
                             validate=validate.OneOf(["bottom-right", "bottom-left"]))
    #: pixels between the launcher and the bottom edge: room for a theme's sticky checkout bar
    offset_bottom = fields.Integer(load_default=20, validate=validate.Range(0, 400))
    color = fields.String(load_default="#1f4fd1", validate=validate.Regexp(_HEX))
    text_color = fields.String(load_default="#ffffff", validate=validate.Regexp(_HEX))
    top_bar = fields.Boolean(load_default=False)
    default_locale = fields.String(load_default="en", validate=validate.OneOf(LOCALES))
    phone = fields.String(load_default=None, allow_none=True,
                          validate=validate.Regexp(r"^\+?[0-9 ()-]{3,30}$"))
    email = fields.Email(load_default=None, allow_none=True)
    kakao_channel_url = fields.Url(load_default=None, allow_none=True, schemes={"https"})
    chat_url = fields.Url(load_default=None, allow_none=True, schemes={"https"})
    links = fields.List(fields.Nested(LinkSchema), load_default=list,
                        validate=validate.Length(max=6))
    hours = fields.Nested(HoursSchema, load_default=lambda: HoursSchema().load({}))
    #: the acknowledgement promise shown after a submission, in hours
    ack_promise_hours = fields.Integer(load_default=24, validate=validate.Range(1, 168))
    consent_text = fields.Dict(keys=fields.String(validate=validate.OneOf(LOCALES)),
                               values=fields.String(validate=validate.Length(1, 1000)),
                               load_default=dict)
    categories = fields.List(fields.Nested(CategorySchema), load_default=list,
                             validate=validate.Length(max=20))
    #: extra storefront origins allowed by CORS (custom domains); the platform's own is implied
    storefront_origins = fields.List(fields.Url(schemes={"https", "http"}, require_tld=False),
                                     load_default=list, validate=validate.Length(max=10))

    @validates_schema
    def _readable_colours(self, data: dict, **_: Any) -> None:
        if contrast_ratio(data["color"], data["text_color"]) < MIN_CONTRAST:
            raise ValidationError(f"color and text_color need a contrast of at least {MIN_CONTRAST}:1 "
                                  "(WCAG 2.2 AA).", "text_color")


def widget_settings(shop_settings: dict | None) -> dict:
    """The shop's widget settings with defaults filled in (stored values were validated on save)."""
    stored = dict((shop_settings or {}).get("widget") or {})
    return WidgetSettingsSchema().load(stored)
