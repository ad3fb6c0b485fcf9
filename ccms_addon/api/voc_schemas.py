"""Schemas of the merchant VOC API (``ccms_addon/api/voc.py``).

Inputs refuse unknown fields and bound every value by what the store can keep: text without NUL
or lone surrogates (:class:`~ccms_addon.widgets.schemas.Text`), ids inside a signed 64-bit integer,
datetimes with a zone that still exist in UTC — so a hostile request is a 422, never a 5xx.
Outputs are whitelists and say which fields may be null: the OpenAPI document is what the API
answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import (EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate,
                         validates, validates_schema)

from ccms_addon.api.schemas import UtcDateTime
from ccms_addon.store.models import StaffRole, VocKind, VocSeverity, VocStatus, utcnow
from ccms_addon.voc.inbox import MAX_LIMIT, SORTS
from ccms_addon.voc.lifecycle import CLOSE_WITHOUT_RESPONSE
from ccms_addon.voc.service import MAX_TEXT
from ccms_addon.voc.settings import VocSettingsSchema
from ccms_addon.voc.staff_intake import CLOCK_SKEW, MAX_AGE
from ccms_addon.widgets.schemas import Text
from ccms_addon.widgets.settings import LOCALES

#: the largest id the store can hold (PostgreSQL BIGINT): a larger one is a 422, not an overflow
MAX_ID = 2**63 - 1
#: the kinds staff record by hand (claims come through the guarantee flow, with their terms)
INTAKE_KINDS = tuple(k.value for k in VocKind if k is not VocKind.CLAIM)
#: the channels that record themselves (the widget, follow-ups, platform events): never typed in
AUTOMATIC_CHANNELS = ("widget", "follow_up", "platform")
CATEGORY = r"^[a-z0-9_-]{1,40}$"
REFERENCE = r"^[A-Za-z0-9-]{1,32}$"
PHONE = r"^\+?[0-9 ().-]{3,30}$"
#: items one bulk request may name
BULK_MAX = 200
#: the actions a bulk request may apply (``VocDesk.bulk``)
BULK_ACTIONS = ("acknowledge", "start", "assign", "note", "assess", "close")
SEVERITIES = tuple(s.value for s in VocSeverity)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _id(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(1, MAX_ID), **kwargs)


def _not_blank(value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValidationError("Must not be blank.")


# --------------------------------------------------------------------------------------------------
# The acting person
# --------------------------------------------------------------------------------------------------


class ActorHeadersSchema(Schema):
    """``X-Staff-Email`` names the person of the shop's merchant the request acts for."""

    class Meta:
        unknown = EXCLUDE  # every other header of the request

    staff_email = fields.Email(data_key="X-Staff-Email", validate=validate.Length(max=320),
                               metadata={"description": (
                                   "the staff member (of the shop's merchant) this request acts "
                                   "for: actions are recorded under their name and their role's "
                                   "permissions apply. Without it the request acts as the shop's "
                                   "integration (`api:shop:<id>`) with every permission.")})


# --------------------------------------------------------------------------------------------------
# The inbox
# --------------------------------------------------------------------------------------------------


class InboxArgsSchema(_Strict):
    """Filters of ``GET /voc/items``; a list filter is repeated
    (``?status=received&status=acknowledged``)."""

    q = Text(validate=validate.Length(1, 200), metadata={
        "description": "a reference number, an email or phone, an order number, or words of the "
                       "subject, text or name"})
    status = fields.List(fields.String(validate=validate.OneOf([s.value for s in VocStatus])))
    kind = fields.List(fields.String(validate=validate.OneOf([k.value for k in VocKind])))
    channel = fields.List(Text(validate=validate.Length(1, 40)))
    category = fields.List(Text(validate=validate.Length(1, 100)))
    severity = fields.List(fields.String(validate=validate.OneOf(SEVERITIES)))
    assignee = fields.String(validate=validate.Regexp(r"^(none|[1-9][0-9]{0,17})$"), metadata={
        "description": "a staff id, or `none` for unassigned items"})
    breached = fields.Boolean(metadata={
        "description": "only items still open past their response due time"})
    recurrence = fields.Boolean(metadata={"description": "only items flagged as a recurrence"})
    created_from = UtcDateTime(metadata={"description": "created at or after"})
    created_to = UtcDateTime(metadata={"description": "created before"})
    sort = fields.String(load_default="newest", validate=validate.OneOf(SORTS), metadata={
        "description": "`newest` first, `oldest` first, or `due`: the earliest response due first"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(validate=validate.Length(1, 200), metadata={
        "description": "`next_cursor` of the previous page (with the same filters and sort)"})


class StaffRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class VocItemSchema(Schema):
    """A VOC item as the inbox lists it."""

    reference = fields.String(metadata={"description": "the number the customer was given"})
    kind = fields.String(metadata={"enum": [k.value for k in VocKind]})
    channel = fields.String()
    status = fields.String(metadata={"enum": [s.value for s in VocStatus]})
    subject = fields.String(allow_none=True)
    body = fields.String(metadata={"description": "the customer's own words (plain text)"})
    locale = fields.String(allow_none=True)
    contact_name = fields.String(allow_none=True)
    contact_email = fields.String(allow_none=True)
    contact_phone = fields.String(allow_none=True)
    order_number = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    severity = fields.String(allow_none=True)
    assignee = fields.Nested(StaffRefSchema, allow_none=True)
    product_ref = fields.String(allow_none=True)
    duplicate_of = fields.String(allow_none=True, metadata={
        "description": "reference of the item this one repeats"})
    recurrence = fields.Boolean()
    escalation_level = fields.Integer(metadata={
        "description": "0 none, 1 the assignee was warned, 2 the owner was told"})
    reopened_count = fields.Integer()
    breached = fields.Boolean(metadata={"description": "open past its response due time"})
    root_cause = fields.String(allow_none=True)
    prevention_action = fields.String(allow_none=True)
    satisfaction = fields.Integer(allow_none=True, metadata={"description": "1–5, the customer's"})
    satisfaction_comment = fields.String(allow_none=True)
    satisfaction_requested_at = fields.AwareDateTime(allow_none=True)
    acknowledge_due_at = fields.AwareDateTime(allow_none=True)
    respond_due_at = fields.AwareDateTime(allow_none=True)
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    responded_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class VocIssueSchema(Schema):
    id = fields.Integer()
    category = fields.String()
    summary = fields.String(allow_none=True)
    handled = fields.Boolean()
    created_at = fields.AwareDateTime()


class VocEventSchema(Schema):
    type = fields.String(metadata={"description": "received, acknowledged, started, assigned, "
                                                  "note, assessed, reply, closed, reopened…"})
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    actor = fields.String(metadata={"description": "`staff:<id>:<name>`, `api:shop:<id>`, "
                                                   "`system`, `customer`, `shopper`…"})
    note = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)
    created_at = fields.AwareDateTime()


class VocItemDetailSchema(VocItemSchema):
    """An item with every issue the customer raised and its timeline."""

    issues = fields.List(fields.Nested(VocIssueSchema))
    timeline = fields.List(fields.Nested(VocEventSchema))


class VocItemPageSchema(Schema):
    items = fields.List(fields.Nested(VocItemSchema))
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "pass as `cursor` for the next page; null on the last page"})


# --------------------------------------------------------------------------------------------------
# Intake
# --------------------------------------------------------------------------------------------------


class IssueInputSchema(_Strict):
    category = fields.String(required=True, validate=validate.Regexp(CATEGORY))
    summary = Text(load_default=None, allow_none=True, validate=[validate.Length(max=2000),
                                                                 _not_blank])


class VocIntakeSchema(_Strict):
    """What staff record by hand: a phone call, a conversation at the counter, an email forwarded
    by hand, a social post — or a want-slip, a latent complaint they overheard (kind
    ``want_slip``, channel ``staff``)."""

    kind = fields.String(required=True, validate=validate.OneOf(INTAKE_KINDS))
    channel = Text(load_default=None, validate=validate.Length(1, 40), metadata={
        "description": "phone, staff (in person; the only channel of a want-slip), email, social, "
                       "or a channel a plugin registered; default: staff for a want-slip, phone "
                       "otherwise", "example": "phone"})
    body = Text(required=True, validate=[validate.Length(1, MAX_TEXT), _not_blank], metadata={
        "description": "what the customer said, in their words as far as possible"})
    subject = Text(load_default=None, allow_none=True, validate=[validate.Length(max=300),
                                                                 _not_blank])
    locale = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(LOCALES))
    contact_name = Text(load_default=None, allow_none=True, validate=validate.Length(max=200))
    contact_email = fields.Email(load_default=None, allow_none=True,
                                 validate=validate.Length(max=320))
    contact_phone = Text(load_default=None, allow_none=True, validate=validate.Regexp(PHONE))
    order_number = Text(load_default=None, allow_none=True, validate=[
        validate.Length(1, 64), _not_blank], metadata={"description": "an order of this shop"})
    category = fields.String(load_default=None, allow_none=True,
                             validate=validate.Regexp(CATEGORY), metadata={
                                 "description": "default: the classifier's or the shop's rules'"})
    severity = fields.String(load_default=None, allow_none=True,
                             validate=validate.OneOf(SEVERITIES))
    product_ref = Text(load_default=None, allow_none=True, validate=validate.Length(1, 120),
                       metadata={"description": "the platform's product id (default: the "
                                                "order's first line)"})
    issues = fields.List(fields.Nested(IssueInputSchema), load_default=list,
                         validate=validate.Length(max=20), metadata={
                             "description": "further problems raised besides the main one"})
    occurred_at = UtcDateTime(load_default=None, allow_none=True, metadata={
        "description": "when it happened, if earlier (a call noted afterwards; within "
                       f"{MAX_AGE.days} days)"})

    @validates("occurred_at")
    def _recent_past(self, value: datetime | None, **_: Any) -> None:
        """The dashboard's rule for staff notes (``voc.staff_intake``): not ahead of now beyond
        clock skew, not older than the notes staff may still write up."""
        now = utcnow()
        if value is not None and value > now + CLOCK_SKEW:
            raise ValidationError("This is in the future.")
        if value is not None and value < now - MAX_AGE:
            raise ValidationError(f"Notes are recorded within {MAX_AGE.days} days.")

    @validates_schema
    def _want_slip_is_staffs(self, data: dict, **_: Any) -> None:
        channel = data.get("channel")
        if data.get("kind") == VocKind.WANT_SLIP.value and channel not in (None, "staff"):
            raise ValidationError("A want-slip is recorded by staff: channel staff.", "channel")
        if channel in AUTOMATIC_CHANNELS:
            raise ValidationError(f"Items of channel {channel} record themselves.", "channel")


# --------------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------------


class AcknowledgeSchema(_Strict):
    notify_customer = fields.Boolean(load_default=True, metadata={
        "description": "send the customer the acknowledgement (reference and due time)"})


class NoBodySchema(_Strict):
    """No fields (an empty object or no body)."""


class AssignSchema(_Strict):
    assignee_id = fields.Integer(required=True, allow_none=True, strict=True,
                                 validate=validate.Range(1, MAX_ID), metadata={
                                     "description": "an active staff member; null unassigns"})


class NoteSchema(_Strict):
    note = Text(required=True, validate=[validate.Length(1, MAX_TEXT), _not_blank], metadata={
        "description": "internal: never shown to the customer"})


class AssessSchema(_Strict):
    category = fields.String(validate=validate.Regexp(CATEGORY))
    severity = fields.String(validate=validate.OneOf(SEVERITIES), metadata={
        "description": "a new severity moves the response due time"})
    issues = fields.List(fields.Nested(IssueInputSchema), validate=validate.Length(1, 20),
                         metadata={"description": "further problems the customer raised"})

    @validates_schema
    def _something(self, data: dict, **_: Any) -> None:
        if not data:
            raise ValidationError("Give a category, a severity or issues.", "_schema")


class ReplySchema(_Strict):
    message = Text(required=True, validate=[validate.Length(1, MAX_TEXT), _not_blank], metadata={
        "description": "sent to the customer on the channel they used"})
    given_outside = fields.Boolean(load_default=False, metadata={
        "description": "the answer was given by phone or at the counter: recorded, not sent"})


class CloseSchema(_Strict):
    root_cause = Text(load_default=None, allow_none=True, validate=validate.Length(max=MAX_TEXT),
                      metadata={"description": "required to close a complaint that was answered"})
    prevention_action = Text(load_default=None, allow_none=True,
                             validate=validate.Length(max=MAX_TEXT))
    resolution = fields.String(load_default=None, allow_none=True,
                               validate=validate.OneOf(CLOSE_WITHOUT_RESPONSE), metadata={
                                   "description": "why an item is closed without an answer"})
    handled_issue_ids = fields.List(_id(), load_default=None, allow_none=True,
                                    validate=validate.Length(max=100), metadata={
                                        "description": "the issues handled (default: all)"})
    ask_satisfaction = fields.Boolean(load_default=None, allow_none=True, metadata={
        "description": "ask the customer for a 1–5 rating (default: the shop's setting)"})


class ReopenSchema(_Strict):
    reason = Text(required=True, validate=[validate.Length(1, MAX_TEXT), _not_blank])


class DuplicateSchema(_Strict):
    original = fields.String(required=True, validate=validate.Length(1, 32), metadata={
        "description": "reference of the item this one repeats"})


#: the body schema of each bulk action (``start`` takes none)
BULK_PARAMS = {"acknowledge": AcknowledgeSchema, "start": NoBodySchema, "assign": AssignSchema,
               "note": NoteSchema, "assess": AssessSchema, "close": CloseSchema}


class BulkSchema(_Strict):
    action = fields.String(required=True, validate=validate.OneOf(BULK_ACTIONS))
    references = fields.List(fields.String(validate=validate.Length(1, 32)), required=True,
                             validate=validate.Length(1, BULK_MAX))
    params = fields.Dict(load_default=dict, metadata={
        "description": "the action's body, as for the single-item action (`note` takes "
                       "`{\"note\"}`, `assign` `{\"assignee_id\"}`, `close` its fields…)"})

    @post_load
    def _params_of_the_action(self, data: dict, **_: Any) -> dict:
        try:
            params = BULK_PARAMS[data["action"]]().load(data["params"])
        except ValidationError as exc:
            raise ValidationError({"params": exc.normalized_messages()}) from None
        return {**data, "params": params}


class BulkResultSchema(Schema):
    reference = fields.String()
    ok = fields.Boolean()
    code = fields.String(allow_none=True, metadata={
        "description": "why it failed: not_found, invalid_transition, unchanged, not_answered…"})
    message = fields.String(allow_none=True)


class BulkOutcomeSchema(Schema):
    results = fields.List(fields.Nested(BulkResultSchema))
    succeeded = fields.Integer()
    failed = fields.Integer()


# --------------------------------------------------------------------------------------------------
# Settings and staff
# --------------------------------------------------------------------------------------------------


class VocSettingsChangeSchema(VocSettingsSchema):
    """``PUT /voc/settings``: the settings to change, loaded ``partial`` (merge rules there)."""


class StaffSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String(metadata={"enum": [r.value for r in StaffRole]})
    locale = fields.String()
    active = fields.Boolean()
    created_at = fields.AwareDateTime()
    last_login_at = fields.AwareDateTime(allow_none=True)


class StaffCreateSchema(_Strict):
    email = fields.Email(required=True, validate=validate.Length(max=320))
    name = Text(required=True, validate=[validate.Length(1, 200), _not_blank])
    role = fields.String(load_default=StaffRole.AGENT.value,
                         validate=validate.OneOf([r.value for r in StaffRole]))
    locale = fields.String(load_default="en", validate=validate.OneOf(LOCALES))
    password = Text(load_default=None, validate=validate.Length(10, 200), load_only=True,
                    metadata={"description": "to sign in to the standalone dashboard"})
