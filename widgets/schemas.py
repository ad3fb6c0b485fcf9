"""Schemas of the public widget API (docs/widget-api.md): what a shopper's browser may send, and
exactly what it gets back.

Inputs are strict (``unknown = RAISE``) and bounded; every string a shopper types is checked for
what the store cannot keep (NUL, lone surrogates) so a hostile body is a 422, never a 5xx. Outputs
are whitelists: a field not named here never leaves the server, however the models grow.
The merchant-side settings schema lives in ``settings.py``.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import (RAISE, Schema, ValidationError, fields, pre_load, validate, validates,
                         validates_schema)

from ccms_addon.widgets.settings import LOCALES

#: the kinds a shopper may choose (claims and want-slips come from other channels)
SHOPPER_KINDS = ("complaint", "inquiry", "suggestion", "praise")
#: bounds of the free text, in characters
MESSAGE_MAX = 5000
ORDER_NUMBER_MAX = 64
NAME_MAX = 200
EMAIL_MAX = 320
CONTACT_MAX = 320
REFERENCE_MAX = 32
TOKEN_MAX = 1000
#: a phone number needs at least this many digits to identify anyone
MIN_PHONE_DIGITS = 6
_PHONE = re.compile(r"^\+?[0-9 ().-]{3,30}$")

#: optional text fields where the widget's empty input ("") means "not given"
_BLANK_IS_ABSENT = ("category", "order_number", "name", "email", "phone", "locale")


class Text(fields.String):
    """A string the store can keep: no NUL characters (PostgreSQL refuses them) and valid UTF-8
    (a lone surrogate from JSON's ``\\ud800`` cannot be encoded)."""

    default_error_messages = {"unstorable": "Contains characters that cannot be stored."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("unstorable") from None
        if "\x00" in text:
            raise self.make_error("unstorable")
        return text


def digits(value: str | None) -> str:
    return re.sub(r"\D", "", value or "")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _ShopperInput(_Strict):
    @pre_load
    def _blank_is_absent(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            data = {k: (None if k in _BLANK_IS_ABSENT and isinstance(v, str) and not v.strip()
                        else v) for k, v in data.items()}
        return data


class VocItemCreateSchema(_ShopperInput):
    """``POST voc``. The shop's categories and consent rule are passed in, since they are the
    shop's settings: ``VocItemCreateSchema(categories={"delivery"}, consent_required=True)``."""

    kind = fields.String(required=True, validate=validate.OneOf(SHOPPER_KINDS))
    category = Text(load_default=None, allow_none=True, validate=validate.Length(max=40))
    message = Text(required=True, validate=validate.Length(1, MESSAGE_MAX))
    order_number = Text(load_default=None, allow_none=True,
                        validate=validate.Length(max=ORDER_NUMBER_MAX))
    name = Text(load_default=None, allow_none=True, validate=validate.Length(max=NAME_MAX))
    email = fields.Email(load_default=None, allow_none=True,
                         validate=validate.Length(max=EMAIL_MAX))
    phone = Text(load_default=None, allow_none=True, validate=validate.Regexp(
        _PHONE, error="Not a valid phone number."))
    locale = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LOCALES))
    consent = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False})
    token = fields.String(required=True, validate=validate.Length(1, TOKEN_MAX))
    #: the honeypot: hidden from people, filled by bots; the view rejects a non-empty value
    website = fields.Raw(load_default=None, allow_none=True)

    def __init__(self, *, categories: frozenset[str] | set[str] = frozenset(),
                 consent_required: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.categories = frozenset(categories)
        self.consent_required = consent_required

    @validates("message")
    def _not_blank(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("Write a message.")

    @validates("phone")
    def _enough_digits(self, value: str | None, **_: Any) -> None:
        if value is not None and len(digits(value)) < MIN_PHONE_DIGITS:
            raise ValidationError("Not a valid phone number.")

    @validates("category")
    def _configured(self, value: str | None, **_: Any) -> None:
        if value is not None and value not in self.categories:
            raise ValidationError("Not one of this shop's categories.")

    @validates_schema
    def _reachable_and_consenting(self, data: dict, **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        if not data.get("email") and not data.get("phone"):
            message = "Give an email address or a phone number so the shop can answer."
            errors.update(email=[message], phone=[message])
        if self.consent_required and data.get("consent") is not True:
            errors["consent"] = ["Consent is required to send this."]
        if errors:
            raise ValidationError(errors)


class OrderLookupSchema(_Strict):
    """``POST orders/lookup``: the order number and the email or phone used at checkout."""

    order_number = Text(required=True, validate=validate.Length(1, ORDER_NUMBER_MAX))
    contact = Text(required=True, validate=validate.Length(3, CONTACT_MAX))

    @validates("order_number")
    def _not_blank(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("Give the order number.")


class RequestLookupSchema(_Strict):
    """``POST requests/lookup``: a reference number and the contact it was sent with."""

    reference = Text(required=True, validate=validate.Length(1, REFERENCE_MAX))
    contact = Text(required=True, validate=validate.Length(3, CONTACT_MAX))


#: the guarantee programs a shopper may claim from the widget
CLAIM_KINDS = ("free_return", "buyback")


class _ClaimLineSchema(_Strict):
    platform_line_id = Text(required=True, validate=validate.Length(1, 64))
    quantity = fields.Integer(required=True, validate=validate.Range(min=1, max=10_000))


class ClaimCreateSchema(_ShopperInput):
    """``POST claims``: a guarantee claim on an order, identified like an order lookup (exact
    number and the checkout contact). ``lines`` empty: every line the guarantee covers."""

    program = fields.String(required=True, validate=validate.OneOf(CLAIM_KINDS))
    order_number = Text(required=True, validate=validate.Length(1, ORDER_NUMBER_MAX))
    contact = Text(required=True, validate=validate.Length(3, CONTACT_MAX))
    message = Text(required=True, validate=validate.Length(1, MESSAGE_MAX))
    event = fields.String(load_default=None, allow_none=True,
                          validate=validate.Regexp(r"^[a-z][a-z0-9_]{1,39}$"))
    event_date = fields.Date(load_default=None, allow_none=True)
    lines = fields.List(fields.Nested(_ClaimLineSchema), load_default=list,
                        validate=validate.Length(max=100))
    conditions_accepted = fields.Boolean(load_default=False)
    evidence = Text(load_default=None, allow_none=True, validate=validate.Length(max=MESSAGE_MAX))
    name = Text(load_default=None, allow_none=True, validate=validate.Length(max=NAME_MAX))
    locale = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LOCALES))
    token = fields.String(required=True, validate=validate.Length(1, TOKEN_MAX))
    #: the honeypot, as in ``POST voc``
    website = fields.Raw(load_default=None, allow_none=True)

    @validates("message")
    def _not_blank(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("Write a message.")

    @validates_schema
    def _event_for_buyback(self, data: dict, **_: Any) -> None:
        if data.get("program") == "buyback":
            errors = {}
            if not data.get("event"):
                errors["event"] = ["Say what happened."]
            if not data.get("event_date"):
                errors["event_date"] = ["Say when it happened."]
            if errors:
                raise ValidationError(errors)


# --------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------


class ClaimReceiptSchema(Schema):
    """What the shopper sees at once after claiming: the reference, and whether the claim is
    inside the terms (the merchant decides either way)."""

    reference = fields.String()
    status = fields.String()
    eligible = fields.Boolean()
    reasons = fields.List(fields.String())
    ack_due_at = fields.DateTime()


class FormTokenSchema(Schema):
    token = fields.String()


class VocReceiptSchema(Schema):
    """What the shopper sees at once after sending: the reference and the answer promise."""

    reference = fields.String()
    status = fields.String()
    ack_due_at = fields.DateTime()
    ack_promise_hours = fields.Integer()


class OrderLineSummarySchema(Schema):
    title = fields.String()
    quantity = fields.Integer()


class ShopperOrderSchema(Schema):
    """An order as its buyer may see it: status and contents, nothing personal."""

    number = fields.String()
    placed_at = fields.DateTime(allow_none=True)
    financial_status = fields.String()
    fulfillment_status = fields.String()
    lines = fields.List(fields.Nested(OrderLineSummarySchema))
    #: a decimal string with exactly the currency's minor digits ("15000" KRW, "404.95" USD)
    total = fields.String()
    currency = fields.String()


class TimelineEntrySchema(Schema):
    status = fields.String()
    at = fields.DateTime()


class RequestStatusSchema(Schema):
    """A shopper's own request: its status and the times it changed, no internal notes."""

    reference = fields.String()
    kind = fields.String()
    status = fields.String()
    created_at = fields.DateTime()
    timeline = fields.List(fields.Nested(TimelineEntrySchema))


class _LinkSchema(Schema):
    label = fields.String()
    url = fields.String()


class _CategorySchema(Schema):
    key = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())


class _ContactSchema(Schema):
    phone = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    kakao_channel_url = fields.String(allow_none=True)
    chat_url = fields.String(allow_none=True)
    links = fields.List(fields.Nested(_LinkSchema))


class _HoursSchema(Schema):
    timezone = fields.String()
    weekly = fields.Dict(keys=fields.String(), values=fields.List(fields.List(fields.String())))
    holidays = fields.List(fields.Date())


class _ShopSchema(Schema):
    name = fields.String(allow_none=True)
    default_locale = fields.String()


class _ProgramEventSchema(Schema):
    code = fields.String()
    labels = fields.Dict(keys=fields.String(), values=fields.String())


class _ProgramSchema(Schema):
    """A guarantee the shopper may claim: its kind, name and the terms a claim form needs."""

    kind = fields.String()
    name = fields.String()
    window_days = fields.Integer(allow_none=True)
    window_months = fields.Integer(allow_none=True)
    conditions = fields.List(fields.String())
    events = fields.List(fields.Nested(_ProgramEventSchema))
    evidence_required = fields.List(fields.String())


class WidgetConfigSchema(Schema):
    """``GET config``: the public part of the shop's widget settings. ``storefront_origins`` and
    anything else merchant-only stays out; the browser computes "open now" from ``hours``."""

    shop = fields.Nested(_ShopSchema)
    position = fields.String()
    offset_bottom = fields.Integer()
    color = fields.String()
    text_color = fields.String()
    top_bar = fields.Boolean()
    contact = fields.Nested(_ContactSchema)
    hours = fields.Nested(_HoursSchema)
    ack_promise_hours = fields.Integer()
    consent_text = fields.Dict(keys=fields.String(), values=fields.String())
    categories = fields.List(fields.Nested(_CategorySchema))
    programs = fields.List(fields.Nested(_ProgramSchema))
    strings_url = fields.String()
