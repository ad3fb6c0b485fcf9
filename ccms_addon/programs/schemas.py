"""The terms of a program, as a merchant configures them (CLI and merchant API).

Terms are validated here once and then frozen in a ``ProgramVersion``: an enrollment keeps the terms
it was sold with. Every kind has a sequence of ``steps`` (messages at offsets from delivery); the
guarantees add their own rules. Unknown fields are refused so a typo never silently changes terms.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal

from marshmallow import (RAISE, Schema, ValidationError, fields, post_load, validate,
                         validates_schema)

from ccms_addon.programs import templates
from ccms_addon.store.models import ProgramKind

#: the built-in message templates a step may name (``ccms_addon/programs/templates/<locale>.json``)
BUILTIN_TEMPLATES = ("arrival_check_in", "satisfaction_check_in", "free_return_reminder",
                     "free_return_ending", "buyback_reminder", "buyback_ending", "thank_you")
#: qualifying events with built-in labels; merchants may add their own codes with labels
KNOWN_EVENTS = ("involuntary_job_loss", "serious_illness", "disability", "death_of_buyer",
                "relocation_abroad")
_CODE = validate.Regexp(r"^[a-z][a-z0-9_]{1,39}$", error="Use lower-case letters, digits and _.")


class _Strict(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class LocalTime(fields.String):
    """``HH:MM`` (24 h), kept as that string in the terms."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
            raise ValidationError("Use HH:MM, 24-hour (e.g. 10:00).")
        return text


def parse_local_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _template(source: str) -> None:
    try:
        templates.check(source)
    except ValueError as exc:
        raise ValidationError(f"{exc}. Variables: {', '.join(templates.VARIABLES)}.") from None


class MessageTextSchema(_Strict):
    subject = fields.String(required=True, validate=[validate.Length(min=1, max=200), _template])
    body = fields.String(required=True, validate=[validate.Length(min=1, max=5000), _template])


class StepSchema(_Strict):
    """One message of a sequence, ``offset_days`` after delivery, at ``send_at`` local time."""

    key = fields.String(required=True, validate=_CODE)
    offset_days = fields.Integer(required=True, validate=validate.Range(min=0, max=3650))
    send_at = LocalTime(load_default="10:00")
    kind = fields.String(load_default="message",
                         validate=validate.OneOf(("check_in", "reminder", "message")))
    #: transactional messages inform about the purchase; marketing ones need the shopper's consent
    purpose = fields.String(load_default="transactional",
                            validate=validate.OneOf(("transactional", "marketing")))
    channel = fields.String(load_default="email", validate=_CODE)
    template = fields.String(validate=validate.OneOf(BUILTIN_TEMPLATES))
    #: the merchant's own texts per language; they win over ``template`` for those languages
    texts = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[a-z]{2}(-[A-Za-z]{2})?$")),
                        values=fields.Nested(MessageTextSchema))
    #: check-ins: answers at or below this open a complaint (1–5 scale)
    low_score = fields.Integer(load_default=2, validate=validate.Range(min=1, max=4))

    @validates_schema
    def _has_text(self, data, **kwargs):
        if not data.get("template") and not data.get("texts"):
            raise ValidationError("Name a built-in template or give texts.", "template")


class QuietHoursSchema(_Strict):
    """No message between ``start`` and ``end`` in the shopper's local time (Korea's law asks for
    21:00–08:00 for advertising; the default applies to every message)."""

    start = LocalTime(load_default="21:00")
    end = LocalTime(load_default="08:00")


class EligibleProductsSchema(_Strict):
    """Which order lines a guarantee covers. Empty lists: every product."""

    product_ids = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list,
                              validate=validate.Length(max=1000))
    skus = fields.List(fields.String(validate=validate.Length(max=200)), load_default=list,
                       validate=validate.Length(max=1000))
    sku_prefixes = fields.List(fields.String(validate=validate.Length(min=1, max=200)),
                               load_default=list, validate=validate.Length(max=100))
    exclude_product_ids = fields.List(fields.String(validate=validate.Length(max=64)),
                                      load_default=list, validate=validate.Length(max=1000))
    #: Shopify collection ids (custom or smart), Cafe24 category numbers, WooCommerce product
    #: category ids: their members are read from the platform (``programs.collections``)
    collection_ids = fields.List(fields.String(validate=validate.Regexp(
        r"^[0-9A-Za-z_-]{1,64}$", error="A collection id is the platform's id of it "
                                         "(digits, e.g. 841564295).")),
        load_default=list, validate=validate.Length(max=50))


class _TermsSchema(_Strict):
    steps = fields.List(fields.Nested(StepSchema), load_default=list,
                        validate=validate.Length(max=20))
    quiet_hours = fields.Nested(QuietHoursSchema, load_default=lambda: QuietHoursSchema().load({}))

    @validates_schema
    def _unique_step_keys(self, data, **kwargs):
        keys = [step["key"] for step in data.get("steps") or ()]
        if len(keys) != len(set(keys)):
            raise ValidationError("Step keys must be unique.", "steps")


class FollowUpTermsSchema(_TermsSchema):
    @validates_schema
    def _needs_steps(self, data, **kwargs):
        if not data.get("steps"):
            raise ValidationError("A follow-up program needs at least one step.", "steps")


class FreeReturnTermsSchema(_TermsSchema):
    window_days = fields.Integer(required=True, validate=validate.Range(min=1, max=3650))
    products = fields.Nested(EligibleProductsSchema,
                             load_default=lambda: EligibleProductsSchema().load({}))
    #: conditions the shopper confirms when claiming (e.g. "unused, in its original box")
    conditions = fields.List(fields.String(validate=validate.Length(min=1, max=300)),
                             load_default=list, validate=validate.Length(max=10))
    return_shipping_paid_by = fields.String(load_default="merchant",
                                            validate=validate.OneOf(("merchant", "shopper")))
    restock = fields.Boolean(load_default=True)


class ScheduleBandSchema(_Strict):
    """Claims whose event falls in the months up to ``until_month`` get ``percent`` of the price."""

    until_month = fields.Integer(required=True, validate=validate.Range(min=1, max=120))
    percent = fields.Decimal(required=True, places=2, as_string=True,
                             validate=validate.Range(min=Decimal(0), max=Decimal(100)))


class MoneySchema(_Strict):
    amount = fields.Decimal(required=True, as_string=True,
                            validate=validate.Range(min=Decimal(0), min_inclusive=False))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))


class EventSchema(_Strict):
    code = fields.String(required=True, validate=_CODE)
    labels = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(max=120)),
                         load_default=dict)

    @validates_schema
    def _custom_needs_label(self, data, **kwargs):
        if data["code"] not in KNOWN_EVENTS and not data.get("labels"):
            raise ValidationError(f"A custom event needs labels (known events: "
                                  f"{', '.join(KNOWN_EVENTS)}).", "labels")


class BuybackTermsSchema(_TermsSchema):
    window_months = fields.Integer(required=True, validate=validate.Range(min=1, max=120))
    qualifying_events = fields.List(fields.Nested(EventSchema), required=True,
                                    validate=validate.Length(min=1, max=20))
    value_schedule = fields.List(fields.Nested(ScheduleBandSchema), required=True,
                                 validate=validate.Length(min=1, max=24))
    cap = fields.Nested(MoneySchema, allow_none=True, load_default=None)
    evidence_required = fields.List(fields.String(validate=validate.Length(min=1, max=200)),
                                    load_default=list, validate=validate.Length(max=10))
    products = fields.Nested(EligibleProductsSchema,
                             load_default=lambda: EligibleProductsSchema().load({}))

    @validates_schema
    def _schedule_is_a_staircase(self, data, **kwargs):
        bands = data.get("value_schedule") or []
        months = [band["until_month"] for band in bands]
        if months != sorted(set(months)):
            raise ValidationError("until_month must increase from band to band.", "value_schedule")
        percents = [Decimal(band["percent"]) for band in bands]
        if any(later > earlier for earlier, later in zip(percents, percents[1:])):
            raise ValidationError("The percentage may not rise over time.", "value_schedule")
        if months and data.get("window_months") and months[-1] != data["window_months"]:
            raise ValidationError("The last band must end with the window (until_month = "
                                  "window_months).", "value_schedule")


TERMS_SCHEMAS: dict[ProgramKind, type[_TermsSchema]] = {
    ProgramKind.FREE_RETURN: FreeReturnTermsSchema,
    ProgramKind.BUYBACK: BuybackTermsSchema,
    ProgramKind.FOLLOW_UP: FollowUpTermsSchema,
}


def load_terms(kind: ProgramKind, raw: dict) -> dict:
    """Validated terms as plain JSON (decimals as strings). Raises ``ValidationError``."""
    schema = TERMS_SCHEMAS[kind]()
    return schema.dump(schema.load(raw))


class ProgramCreateSchema(_Strict):
    kind = fields.Enum(ProgramKind, by_value=True, required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    status = fields.String(load_default="active", validate=validate.OneOf(("active", "paused")))
    terms = fields.Dict(required=True)

    @post_load
    def _validate_terms(self, data, **kwargs):
        try:
            data["terms"] = load_terms(data["kind"], data["terms"])
        except ValidationError as exc:
            raise ValidationError({"terms": exc.messages}) from None
        return data
