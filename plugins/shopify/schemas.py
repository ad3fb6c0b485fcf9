"""Marshmallow schemas for the Shopify payloads the adapter reads.

Only the fields the adapter uses are declared; everything else is excluded because Shopify adds fields
with every API version. The custom fields turn Shopify's wire types into canonical ones while loading:
ids (JSON integers beyond 2^53) become ``str``, money becomes ``Decimal`` (Shopify sends decimal strings,
and plain JSON numbers in a few places such as ``refund_line_items[].subtotal``), timestamps become
timezone-aware UTC datetimes. Anything else is a ``ValidationError`` the adapter reports with its field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

#: Shopify ids are unsigned 64-bit integers.
MAX_ID = 2**64 - 1
#: Bounds on one amount (at most 15 integer digits and 10 decimals) that keep sums exact under the
#: default decimal context (28 digits) and out of reach of its overflow trap.
MAX_AMOUNT_ADJUSTED_EXPONENT = 14
MIN_AMOUNT_EXPONENT = -10

_CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="Not an ISO 4217 currency code.")


class ShopifyId(fields.Field):
    """A Shopify id (a JSON integer, or its decimal digits as a string) loaded as ``str``."""

    default_error_messages = {"invalid": "Not a valid id."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
            number = int(value)
        else:
            raise self.make_error("invalid")
        if not 0 <= number <= MAX_ID:
            raise self.make_error("invalid")
        return str(number)


class Money(fields.Field):
    """An amount as ``Decimal``: from a decimal string, an integer or a JSON number (never a float)."""

    default_error_messages = {"invalid": "Not a valid amount."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise self.make_error("invalid")
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid") from None
        if (not amount.is_finite() or amount.adjusted() > MAX_AMOUNT_ADJUSTED_EXPONENT
                or amount.as_tuple().exponent < MIN_AMOUNT_EXPONENT):
            raise self.make_error("invalid")
        return amount


class UtcDateTime(fields.Field):
    """An ISO 8601 timestamp with an offset (``2021-12-31T19:00:00-05:00``), converted to UTC."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 datetime with a UTC offset."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> datetime:
        parsed = parse_utc_datetime(value)
        if parsed is None:
            raise self.make_error("invalid")
        return parsed


def parse_utc_datetime(value: Any, *, assume_utc: bool = False) -> datetime | None:
    """``value`` as an aware UTC datetime, or None when it is not an ISO 8601 timestamp.

    ``assume_utc`` accepts a timestamp without an offset as UTC (Shopify's headers are UTC); payload
    timestamps always carry an offset, so a naive one there is malformed.
    """
    if not isinstance(value, str) or not value.isascii() or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            if not assume_utc:
                return None
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


class _PayloadSchema(Schema):
    """Base: ignore the many fields we do not read."""

    class Meta:
        unknown = EXCLUDE


class ShopifyMoneySchema(_PayloadSchema):
    amount = Money(required=True)
    currency_code = fields.String(required=True, validate=_CURRENCY)


class ShopifyMoneySetSchema(_PayloadSchema):
    """Shopify's ``*_set`` pairs: the amount in the shop's and in the buyer's (presentment) currency."""

    shop_money = fields.Nested(ShopifyMoneySchema, required=True)
    presentment_money = fields.Nested(ShopifyMoneySchema, load_default=None)


class ShopifyCustomerPayloadSchema(_PayloadSchema):
    """customers/create, customers/update and ``order.customer``.

    email, names and phone are null until the app is granted protected customer data: that is normal.
    """

    id = ShopifyId(required=True)
    email = fields.String(load_default=None)
    first_name = fields.String(load_default=None)
    last_name = fields.String(load_default=None)
    phone = fields.String(load_default=None)
    updated_at = UtcDateTime(load_default=None)


class ShopifyOrderCustomerSchema(ShopifyCustomerPayloadSchema):
    """``order.customer``: tolerate a customer object without an id rather than drop the order."""

    id = ShopifyId(load_default=None)


class ShopifyLineItemSchema(_PayloadSchema):
    id = ShopifyId(required=True)
    title = fields.String(load_default=None)
    name = fields.String(load_default=None)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    price = Money(required=True)
    sku = fields.String(load_default=None)
    product_id = ShopifyId(load_default=None)
    variant_id = ShopifyId(load_default=None)


class ShopifyTransactionSchema(_PayloadSchema):
    kind = fields.String(load_default=None)
    status = fields.String(load_default=None)
    amount = Money(required=True)
    currency = fields.String(load_default=None, validate=_CURRENCY)


class ShopifyRefundLineItemSchema(_PayloadSchema):
    subtotal = Money(load_default=None)
    total_tax = Money(load_default=None)
    subtotal_set = fields.Nested(ShopifyMoneySetSchema, load_default=None)


class ShopifyOrderAdjustmentSchema(_PayloadSchema):
    """Signed from the shop's side: a shipping refund is ``"-5.00"``."""

    amount = Money(required=True)
    tax_amount = Money(load_default=None)
    amount_set = fields.Nested(ShopifyMoneySetSchema, load_default=None)


class ShopifyRefundPayloadSchema(_PayloadSchema):
    """refunds/create, and each element of an order's ``refunds``."""

    id = ShopifyId(required=True)
    order_id = ShopifyId(load_default=None)
    note = fields.String(load_default=None)
    created_at = UtcDateTime(load_default=None)
    transactions = fields.List(fields.Nested(ShopifyTransactionSchema), load_default=list)
    refund_line_items = fields.List(fields.Nested(ShopifyRefundLineItemSchema), load_default=list)
    order_adjustments = fields.List(fields.Nested(ShopifyOrderAdjustmentSchema), load_default=list)
    total_duties_set = fields.Nested(ShopifyMoneySetSchema, load_default=None)


class ShopifyAddressSchema(_PayloadSchema):
    name = fields.String(load_default=None)
    phone = fields.String(load_default=None)


class ShopifyOrderPayloadSchema(_PayloadSchema):
    """orders/* topics and the REST ``orders.json`` elements (the same Order resource)."""

    id = ShopifyId(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1))
    currency = fields.String(required=True, validate=_CURRENCY)
    current_total_price = Money(load_default=None)
    total_price = Money(load_default=None)
    created_at = UtcDateTime(load_default=None)
    processed_at = UtcDateTime(load_default=None)
    updated_at = UtcDateTime(required=True)
    cancelled_at = UtcDateTime(load_default=None)
    #: customer, declined, fraud, inventory, staff, other (orders/cancelled)
    cancel_reason = fields.String(load_default=None)
    note = fields.String(load_default=None)
    financial_status = fields.String(load_default=None)
    # absent (include_fields) stays absent; null means "unfulfilled"
    fulfillment_status = fields.String(allow_none=True)
    email = fields.String(load_default=None)
    contact_email = fields.String(load_default=None)
    phone = fields.String(load_default=None)
    customer = fields.Nested(ShopifyOrderCustomerSchema, load_default=None)
    billing_address = fields.Nested(ShopifyAddressSchema, load_default=None)
    line_items = fields.List(fields.Nested(ShopifyLineItemSchema), required=True)
    refunds = fields.List(fields.Nested(ShopifyRefundPayloadSchema), load_default=list)


class ShopifyOrderEditSchema(_PayloadSchema):
    order_id = ShopifyId(required=True)


class ShopifyOrderEditPayloadSchema(_PayloadSchema):
    """orders/edited: ``{"order_edit": {...}}`` names the order without describing it."""

    order_edit = fields.Nested(ShopifyOrderEditSchema, required=True)


class ShopifyFulfillmentPayloadSchema(_PayloadSchema):
    """fulfillments/create and fulfillments/update: only the order they belong to is used."""

    order_id = ShopifyId(required=True)


class ShopifyPrivacyCustomerSchema(_PayloadSchema):
    id = ShopifyId(load_default=None)
    email = fields.String(load_default=None)
    phone = fields.String(load_default=None)


class ShopifyDataRequestSchema(_PayloadSchema):
    id = ShopifyId(load_default=None)


class ShopifyDataRequestPayloadSchema(_PayloadSchema):
    """customers/data_request (mandatory compliance topic)."""

    customer = fields.Nested(ShopifyPrivacyCustomerSchema, required=True)
    orders_requested = fields.List(ShopifyId(), load_default=list)
    data_request = fields.Nested(ShopifyDataRequestSchema, load_default=None)


class ShopifyCustomerRedactPayloadSchema(_PayloadSchema):
    """customers/redact (mandatory compliance topic)."""

    customer = fields.Nested(ShopifyPrivacyCustomerSchema, required=True)
    orders_to_redact = fields.List(ShopifyId(), load_default=list)


def load_payload(schema: Schema, data: Any) -> dict[str, Any]:
    """Load ``data`` with ``schema``; raises ``ValidationError`` (also for a non-object body)."""
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Not a JSON object."]})
    return schema.load(data)


def describe_errors(messages: Any, path: tuple[str, ...] = ()) -> str:
    """Marshmallow's nested error dict as one line: ``line_items.0.price: Not a valid amount.``"""
    if isinstance(messages, dict):
        return "; ".join(describe_errors(value, path if key == "_schema" else (*path, str(key)))
                         for key, value in messages.items())
    if isinstance(messages, list) and not all(isinstance(item, str) for item in messages):
        return "; ".join(describe_errors(item, path) for item in messages)
    text = " ".join(messages) if isinstance(messages, list) else str(messages)
    return f"{'.'.join(path)}: {text}" if path else text
