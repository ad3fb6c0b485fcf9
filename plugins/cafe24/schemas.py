"""Marshmallow schemas for what Cafe24 sends us: webhook bodies and Admin API answers.

Cafe24 sends nearly everything as strings ("T"/"F" flags, amounts "24680.00" or "27580", ids such as
"20200717-0029236"), a few numbers (``event_no``, ``group_no``), dates in ISO 8601 with ``+09:00`` and
placeholders such as ``""`` or ``"0000-00-00"`` for "no date". The fields below accept exactly that and
turn it into Python values (``str``, ``Decimal``, aware UTC ``datetime``), so the adapter never sees a
raw platform value. Every schema excludes unknown keys: Cafe24 adds fields without notice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema

#: Cafe24 documents every date as ``YYYY-MM-DDTHH:MM:SS+09:00``; a date without an offset is Korean time.
KST = timezone(timedelta(hours=9), "KST")

#: Cafe24 mall ids are lower-case letters and digits (sign-up allows 4–16); the wider range still
#: guarantees a safe host-name label for ``https://{mall_id}.cafe24api.com``.
MALL_ID_RE = re.compile(r"[a-z0-9]{3,32}")

_CURRENCY_RE = re.compile(r"[A-Z]{3}")


class Text(fields.Field):
    """A string Cafe24 may also send as a number (``group_no``, ``shop_no``); blank means absent."""

    default_error_messages = {"invalid": "Not a valid string.", "blank": "May not be blank."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not text:
            if self.required:
                raise self.make_error("blank")
            return None
        return text


class MallId(Text):
    """The mall id, lower-cased (``"sampleMall"`` appears in Cafe24's own samples)."""

    default_error_messages = {"bad_mall_id": "Not a Cafe24 mall id (lower-case letters and digits)."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str | None:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = super()._deserialize(value, attr, data, **kwargs)
        if text is None:
            return None
        mall_id = text.lower()
        if not MALL_ID_RE.fullmatch(mall_id):
            raise self.make_error("bad_mall_id")
        return mall_id


class Currency(Text):
    """An ISO 4217 code."""

    default_error_messages = {"bad_currency": "Not an ISO 4217 currency code."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text is None:
            return None
        if not _CURRENCY_RE.fullmatch(text.upper()):
            raise self.make_error("bad_currency")
        return text.upper()


class Money(fields.Field):
    """An amount as Decimal, exactly as written: ``"24680.00"`` stays 24680.00, ``"27580"`` 27580."""

    default_error_messages = {"invalid": "Not a valid amount.", "blank": "May not be blank."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not text:
            if self.required:
                raise self.make_error("blank")
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not amount.is_finite():
            raise self.make_error("invalid")
        return amount


class Quantity(fields.Field):
    """A non-negative item count, sent as a number or a digit string."""

    default_error_messages = {"invalid": "Not a valid quantity."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = value.strip() if isinstance(value, str) else ""
        if 0 < len(text) <= 12 and text.isascii() and text.isdigit():
            return int(text)
        raise self.make_error("invalid")


class EventNumber(Quantity):
    """Cafe24's ``event_no`` (90023, …), a number in the samples; a digit string is accepted too."""

    default_error_messages = {"invalid": "Not a valid Cafe24 event number."}


class Cafe24DateTime(fields.Field):
    """An aware datetime in UTC. ``""``, ``null`` and ``"0000-00-00…"`` mean "no date"."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date.", "blank": "May not be blank."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> datetime | None:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.strip()
        if not text or text.startswith("0000-00-00"):
            if self.required:
                raise self.make_error("blank")
            return None
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=KST)
            return moment.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None


class IdList(fields.Field):
    """Ids in one comma-separated string (``"a,b"``, ``"a, b"``) or a list; blanks dropped."""

    default_error_messages = {"invalid": "Not a list of ids.", "empty": "No id given."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            parts: list[Any] = value.split(",")
        elif isinstance(value, list):
            parts = value
        else:
            raise self.make_error("invalid")
        if not all(isinstance(part, str) for part in parts):
            raise self.make_error("invalid")
        ids = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
        if not ids:
            raise self.make_error("empty")
        return ids


def _text() -> Text:
    return Text(load_default=None)


def _date() -> Cafe24DateTime:
    return Cafe24DateTime(load_default=None)


def _money() -> Money:
    return Money(load_default=None)


class _Payload(Schema):
    class Meta:
        unknown = EXCLUDE


# --------------------------------------------------------------------------------------------------
# Webhook bodies
# --------------------------------------------------------------------------------------------------


class Cafe24EnvelopePayloadSchema(_Payload):
    """The documented wrapper ``{"event_no": 90023, "resource": {...}}``."""

    event_no = EventNumber(required=True)
    resource = fields.Dict(required=True)


class Cafe24ShopPayloadSchema(_Payload):
    """The identity part every resource carries: which mall, which of its shops."""

    mall_id = MallId(required=True)
    event_shop_no = _text()


class Cafe24OrderEventPayloadSchema(_Payload):
    """The order header carried by 90023–90029: no items, no modification time."""

    order_id = Text(required=True)
    currency = Currency(load_default=None)
    order_date = Cafe24DateTime(required=True)
    payment_date = _date()
    cancel_date = _date()
    return_confirmed_date = _date()
    member_id = _text()
    buyer_name = _text()
    buyer_email = _text()
    buyer_phone = _text()
    buyer_cellphone = _text()
    paid = _text()
    shipping_status = _text()
    order_price_amount = _money()
    actual_payment_amount = _money()
    #: a cancellation's or return's reason, when the event is about one (90026, 90027)
    claim_reason_type = _text()
    claim_reason = _text()
    claim_reason_type_text = _text()

    @validates_schema
    def _has_amount(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("order_price_amount") is None and data.get("actual_payment_amount") is None:
            raise ValidationError("order_price_amount or actual_payment_amount is required.",
                                  "order_price_amount")


class Cafe24OrdersBulkPayloadSchema(_Payload):
    """90071–90074: only the ids of the orders whose status changed."""

    order_id = IdList(required=True)


class Cafe24CustomerSignedUpPayloadSchema(_Payload):
    """90032: the new member's profile."""

    member_id = Text(required=True)
    name = _text()
    email = _text()
    phone = _text()
    cellphone = _text()
    created_date = _date()


class Cafe24CustomerChangedPayloadSchema(_Payload):
    """90080: the names of the changed fields (``diff_key``), never their values."""

    member_id = Text(required=True)
    diff_key = fields.List(Text(), load_default=list)
    sub_event_code = _text()


class Cafe24CustomerDeletedPayloadSchema(_Payload):
    """90147: one or more member ids, comma-separated."""

    member_id = IdList(required=True)


class Cafe24AppDeletedPayloadSchema(_Payload):
    """90077: the app was removed from the mall."""

    client_id = _text()
    app_name = _text()
    deleted_date = _date()


class Cafe24ReturnCompletedPayloadSchema(_Payload):
    """90160: a return completed, identified by its claim code, with the refunded amount."""

    order_id = Text(required=True)
    claim_code = Text(required=True)
    refund_amount = Money(required=True)
    currency = Currency(load_default=None)
    claim_reason_type = _text()
    claim_reason = _text()
    claim_reason_type_text = _text()


# --------------------------------------------------------------------------------------------------
# Admin API answers (GET /api/v2/admin/orders?embed=items,buyer, GET /api/v2/admin/customersprivacy/…)
# --------------------------------------------------------------------------------------------------


class Cafe24AmountsSchema(_Payload):
    """``initial_order_amount`` / ``actual_order_amount`` of an order."""

    order_price_amount = _money()
    payment_amount = _money()


class Cafe24BuyerSchema(_Payload):
    """The ``buyer`` embed: who placed the order."""

    member_id = _text()
    name = _text()
    email = _text()
    phone = _text()
    cellphone = _text()


class Cafe24OrderItemSchema(_Payload):
    """One entry of the ``items`` embed (a "품주", one product variant of the order)."""

    order_item_code = Text(required=True)
    product_no = _text()
    product_code = _text()
    variant_code = _text()
    custom_product_code = _text()
    custom_variant_code = _text()
    product_name = _text()
    option_value = _text()
    product_price = Money(required=True)
    option_price = _money()
    quantity = Quantity(required=True)
    order_status = _text()


class Cafe24OrderSchema(_Payload):
    """An order of ``GET /api/v2/admin/orders``; it has no modification time."""

    order_id = Text(required=True)
    currency = Currency(load_default=None)
    order_date = Cafe24DateTime(required=True)
    payment_date = _date()
    cancel_date = _date()
    paid = _text()
    canceled = _text()
    shipping_status = _text()
    member_id = _text()
    member_email = _text()
    billing_name = _text()
    payment_amount = _money()
    initial_order_amount = fields.Nested(Cafe24AmountsSchema, load_default=None)
    actual_order_amount = fields.Nested(Cafe24AmountsSchema, load_default=None)
    items = fields.List(fields.Nested(Cafe24OrderItemSchema), load_default=list)
    buyer = fields.Nested(Cafe24BuyerSchema, load_default=None)


class Cafe24OrdersResponseSchema(_Payload):
    orders = fields.List(fields.Nested(Cafe24OrderSchema), required=True)


class Cafe24CustomerPrivacySchema(_Payload):
    """A member of ``GET /api/v2/admin/customersprivacy/{member_id}``; no modification time either."""

    member_id = Text(required=True)
    name = _text()
    email = _text()
    phone = _text()
    cellphone = _text()
    created_date = _date()


class Cafe24CustomerPrivacyResponseSchema(_Payload):
    customersprivacy = fields.Nested(Cafe24CustomerPrivacySchema, required=True)
