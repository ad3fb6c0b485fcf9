"""Staff intake: a phone call, what a customer said at the counter, and **want-slips** — a latent
complaint staff overheard before the customer filed one (Isetan's practice).

The dashboard and the merchant API call :func:`record_staff_note`; both validate their input with
:class:`StaffNoteSchema` first (its errors are the 422's field errors), and the function validates
again, so no caller can record what the schema refuses. The item goes through
:func:`ccms_addon.voc.intake.record_voc_item` like every other; the person who recorded it is the
actor of its first event. An order named by number is looked up in the shop (``#1001`` and
``1001`` are the same order) and gives the item its order, customer, and any contact detail the
note left out.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates
from sqlalchemy import select

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import (Order, Shop, Staff, VocChannel, VocItem, VocKind, VocSeverity,
                                     utcnow)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.service import VocActionError, actor_for, staff_can

#: what staff may record here (a guarantee claim has its own form: programs/claims)
STAFF_KINDS = tuple(k.value for k in (VocKind.COMPLAINT, VocKind.INQUIRY, VocKind.SUGGESTION,
                                      VocKind.PRAISE, VocKind.WANT_SLIP))
STAFF_CHANNELS = (VocChannel.PHONE.value, VocChannel.STAFF.value)
#: a note may be written up to this long after the call or visit
MAX_AGE = timedelta(days=90)
#: clocks disagree: "now" on the staff's device may be this far ahead
CLOCK_SKEW = timedelta(minutes=5)

_PHONE = re.compile(r"^\+?[0-9 ()./-]{4,40}$")


class StaffNoteSchema(Schema):
    """What staff write down: one voice, its kind and channel, and what they know of the customer."""

    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(STAFF_KINDS))
    channel = fields.String(required=True, validate=validate.OneOf(STAFF_CHANNELS))
    #: the customer's words as staff heard them
    body = fields.String(required=True, validate=validate.Length(1, 20_000))
    subject = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))
    contact_name = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(max=200))
    contact_email = fields.Email(load_default=None, allow_none=True,
                                 validate=validate.Length(max=320))
    contact_phone = fields.String(load_default=None, allow_none=True,
                                  validate=validate.Regexp(_PHONE, error="Not a phone number."))
    order_number = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(1, 64))
    #: when the call or visit happened (now when absent)
    occurred_at = fields.AwareDateTime(load_default=None, allow_none=True)
    locale = fields.String(load_default=None, allow_none=True,
                           validate=validate.Regexp(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?$"))
    category = fields.String(load_default=None, allow_none=True,
                             validate=validate.Regexp(r"^[a-z0-9_-]{1,40}$"))
    severity = fields.String(load_default=None, allow_none=True,
                             validate=validate.OneOf([s.value for s in VocSeverity]))

    @validates("body")
    def _has_words(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("Write what the customer said.")

    @validates("occurred_at")
    def _in_the_recent_past(self, value: datetime | None, **_: Any) -> None:
        if value is None:
            return
        now = utcnow()
        if value > now + CLOCK_SKEW:
            raise ValidationError("This is in the future.")
        if value < now - MAX_AGE:
            raise ValidationError(f"Notes are recorded within {MAX_AGE.days} days.")


def record_staff_note(runtime: Runtime, shop_id: int, staff: Staff, kind: str, channel: str,
                      body: str, *, subject: str | None = None, contact_name: str | None = None,
                      contact_email: str | None = None, contact_phone: str | None = None,
                      order_number: str | None = None, occurred_at: datetime | None = None,
                      locale: str | None = None, category: str | None = None,
                      severity: str | None = None) -> VocItem:
    """Record what ``staff`` heard for one of their merchant's shops.

    Raises ``marshmallow.ValidationError`` (field errors, an unknown ``order_number`` among them)
    and :class:`VocActionError` (404 for a shop outside the staff's merchant, 403 for staff who
    may not work items)."""
    given = {"kind": kind, "channel": channel, "body": body, "subject": subject,
             "contact_name": contact_name, "contact_email": contact_email,
             "contact_phone": contact_phone, "order_number": order_number,
             "occurred_at": occurred_at, "locale": locale, "category": category,
             "severity": severity}
    note = StaffNoteSchema().load({k: v for k, v in given.items() if v is not None})
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.merchant_id != staff.merchant_id:
            raise VocActionError("No such shop.", "not_found", 404)
        if not staff.active or not staff_can(staff, "work"):
            raise VocActionError("This person may not record VOC items.", "forbidden", 403)
        order = _order(session, shop_id, note["order_number"])
    event_data = {"recorded_by": staff.id}
    if note["order_number"]:
        event_data["order_number"] = note["order_number"]
    return record_voc_item(runtime, shop_id, NewVocItem(
        kind=VocKind(note["kind"]), channel=VocChannel(note["channel"]),
        body=note["body"].strip(), subject=note["subject"], actor=actor_for(staff),
        locale=note["locale"] or (order.locale if order else None),
        contact_name=note["contact_name"] or (order.customer_name if order else None),
        contact_email=note["contact_email"] or (order.email if order else None),
        contact_phone=note["contact_phone"] or (order.phone if order else None),
        order_id=order.id if order else None, customer_id=order.customer_id if order else None,
        category=note["category"], severity=note["severity"], event_data=event_data,
        occurred_at=note["occurred_at"]))


def _order(session, shop_id: int, number: str | None) -> Order | None:
    if not number:
        return None
    from ccms_addon.widgets.views import order_number_forms
    order = session.scalar(select(Order).where(Order.shop_id == shop_id,
                                               Order.number.in_(order_number_forms(number)))
                           .order_by(Order.id).limit(1))
    if order is None:
        raise ValidationError({"order_number": ["No order with this number in the shop."]})
    return order
