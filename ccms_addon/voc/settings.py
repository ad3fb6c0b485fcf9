"""The merchant's VOC handling settings, kept in ``Shop.settings["voc"]`` and validated here.

Contact channels, opening hours, categories and the acknowledgement promise are the widget's
settings (``ccms_addon.widgets.settings``): the shopper sees the same hours and categories the
SLAs run on. This schema holds what only the merchant's side uses: response SLAs per kind and
severity, classification rules, escalation, duplicate and recurrence windows, the owner's digest.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from ccms_addon.store.models import Shop, VocKind, VocSeverity

SEVERITIES = tuple(s.value for s in VocSeverity)
KINDS = tuple(k.value for k in VocKind)

#: business hours to answer, per kind and severity (ISO 10002 asks for promptness, not a number:
#: these are a common starting point a merchant tunes)
DEFAULT_SLA_HOURS: dict[str, dict[str, float]] = {
    "complaint": {"critical": 2, "high": 4, "normal": 8, "low": 24},
    "claim": {"critical": 4, "high": 8, "normal": 16, "low": 24},
    "inquiry": {"critical": 4, "high": 8, "normal": 8, "low": 24},
    "suggestion": {"critical": 8, "high": 24, "normal": 40, "low": 80},
    "praise": {"critical": 8, "high": 24, "normal": 40, "low": 80},
    "want_slip": {"critical": 4, "high": 8, "normal": 24, "low": 40},
}


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class RuleSchema(_Strict):
    """When any keyword appears in the subject or body (case-insensitive), the item gets this
    category and/or severity. Rules are tried in order: the category comes from the first matching
    rule that names one, the severity from the first matching rule that names one."""

    keywords = fields.List(fields.String(validate=validate.Length(1, 60)), required=True,
                           validate=validate.Length(1, 40))
    category = fields.String(load_default=None, allow_none=True,
                             validate=validate.Regexp(r"^[a-z0-9_-]{1,40}$"))
    severity = fields.String(load_default=None, allow_none=True,
                             validate=validate.OneOf(SEVERITIES))
    kinds = fields.List(fields.String(validate=validate.OneOf(KINDS)), load_default=list)


class DigestSchema(_Strict):
    enabled = fields.Boolean(load_default=True)
    #: local hour (shop time zone) the owner's digest is sent
    hour = fields.Integer(load_default=8, validate=validate.Range(0, 23))
    #: addresses besides the merchant's owners
    recipients = fields.List(fields.Email(), load_default=list, validate=validate.Length(max=10))


class VocSettingsSchema(_Strict):
    sla_hours = fields.Dict(keys=fields.String(validate=validate.OneOf(KINDS)),
                            values=fields.Dict(keys=fields.String(validate=validate.OneOf(SEVERITIES)),
                                               values=fields.Float(validate=validate.Range(0.25, 720))),
                            load_default=dict)
    default_severity = fields.String(load_default="normal", validate=validate.OneOf(SEVERITIES))
    rules = fields.List(fields.Nested(RuleSchema), load_default=list,
                        validate=validate.Length(max=100))
    #: send the customer an acknowledgement (reference number, promised answer) automatically
    auto_acknowledge = fields.Boolean(load_default=True)
    #: warn the assignee this many business minutes before the response SLA breaks
    escalate_before_minutes = fields.Integer(load_default=60, validate=validate.Range(5, 24 * 60))
    #: an item about the same order and category within this many days is a duplicate
    duplicate_window_days = fields.Integer(load_default=14, validate=validate.Range(1, 90))
    #: the same category on the same product this many times within the window raises a flag
    recurrence_window_days = fields.Integer(load_default=30, validate=validate.Range(1, 365))
    recurrence_threshold = fields.Integer(load_default=2, validate=validate.Range(2, 100))
    #: ask the customer for a 1–5 rating when an item is closed
    ask_satisfaction = fields.Boolean(load_default=True)
    digest = fields.Nested(DigestSchema, load_default=lambda: DigestSchema().load({}))
    #: months after closing when an item's personal data is purged (None: kept until redaction)
    retention_months = fields.Integer(load_default=None, allow_none=True,
                                      validate=validate.Range(1, 120))

    @validates("sla_hours")
    def _complete_enough(self, value: dict, **_: Any) -> None:
        for kind, per_severity in value.items():
            if not per_severity:
                raise ValidationError(f"{kind}: give at least one severity's hours.")


def voc_settings(shop_settings: dict | None) -> dict:
    """The shop's VOC settings with defaults filled in; SLA hours merged over the defaults."""
    stored = dict((shop_settings or {}).get("voc") or {})
    try:
        loaded = VocSettingsSchema().load(stored)
    except ValidationError:  # stored values were validated on save; a bad row falls back
        loaded = VocSettingsSchema().load({})
    merged = {kind: dict(hours) for kind, hours in DEFAULT_SLA_HOURS.items()}
    for kind, hours in loaded["sla_hours"].items():
        merged.setdefault(kind, {}).update(hours)
    loaded["sla_hours"] = merged
    return loaded


def sla_hours(settings: dict, kind: str, severity: str | None) -> float:
    per_severity = settings["sla_hours"].get(kind) or DEFAULT_SLA_HOURS["inquiry"]
    return float(per_severity.get(severity or settings["default_severity"])
                 or per_severity.get("normal") or 8)


def business_hours_of(shop: Shop):
    """The clock a shop's SLAs run on."""
    from ccms_addon.voc.business_hours import BusinessHours
    from ccms_addon.widgets.settings import widget_settings
    try:
        hours = widget_settings(shop.settings)["hours"]
        if not (shop.settings or {}).get("widget", {}).get("hours"):
            hours = None
    except ValidationError:
        hours = None
    return BusinessHours.from_settings(hours, shop.timezone or "UTC")


def ack_promise_hours(shop: Shop) -> int:
    """The acknowledgement the shop promises (its widget setting, business hours), whatever the
    channel."""
    from ccms_addon.widgets.settings import widget_settings
    try:
        return int(widget_settings(shop.settings)["ack_promise_hours"])
    except ValidationError:  # invalid stored settings: the default promise
        return int(widget_settings({})["ack_promise_hours"])
