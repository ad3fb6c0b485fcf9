"""Schemas of the merchant API. Inputs reject unknown fields; outputs are what the OpenAPI document
promises (money as decimal strings with the currency's minor digits)."""

from __future__ import annotations

from datetime import timezone

from marshmallow import RAISE, Schema, fields, validate

from ccms_addon.money import format_amount


class UtcDateTime(fields.AwareDateTime):
    """A datetime with a zone, loaded in UTC; one that leaves the calendar in UTC (year 1 at
    +14:00) is refused rather than overflowing in the store."""

    default_error_messages = {"range": "Out of the range of dates the store keeps."}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise self.make_error("range") from None


class OrderListArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    updated_since = UtcDateTime(
        metadata={"description": "only orders the platform updated at or after this time"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=250))
    cursor = fields.String(metadata={"description": "next_cursor of the previous page"})


class CustomerSchema(Schema):
    platform_customer_id = fields.String(allow_none=True)
    email = fields.String(allow_none=True, metadata={"description": "null after redaction"})
    name = fields.String(allow_none=True, metadata={"description": "null after redaction"})
    phone = fields.String(allow_none=True)


class RefundSchema(Schema):
    platform_refund_id = fields.String()
    amount = fields.Method("_amount", metadata={"type": "string", "format": "decimal"})
    currency = fields.String()
    note = fields.String(allow_none=True)
    refunded_at = fields.AwareDateTime(allow_none=True)

    def _amount(self, refund) -> str:
        return format_amount(refund.amount, refund.currency)


class OrderSchema(Schema):
    platform_order_id = fields.String()
    number = fields.String()
    currency = fields.String()
    total = fields.Method("_total", metadata={"type": "string", "format": "decimal"})
    financial_status = fields.Function(lambda o: o.financial_status.value)
    fulfillment_status = fields.Function(lambda o: o.fulfillment_status.value)
    customer = fields.Method("_customer", metadata={"type": "object"})
    lines = fields.Method("_lines", metadata={"type": "array", "items": {"type": "object"}})
    refunds = fields.List(fields.Nested(RefundSchema))
    placed_at = fields.AwareDateTime(allow_none=True)
    cancelled_at = fields.AwareDateTime(allow_none=True)
    updated_at = fields.AwareDateTime(attribute="platform_updated_at")
    complete = fields.Boolean(attribute="is_complete", metadata={
        "description": "false while only a summary is known and the full order is being fetched"})

    def _total(self, order) -> str:
        return format_amount(order.total, order.currency)

    def _customer(self, order) -> dict:
        customer = order.customer
        return CustomerSchema().dump(dict(
            platform_customer_id=customer.platform_customer_id if customer else None,
            email=order.email or (customer.email if customer else None),
            name=order.customer_name or (customer.name if customer else None),
            phone=order.phone or (customer.phone if customer else None)))

    def _lines(self, order) -> list:
        return [dict(platform_line_id=li.platform_line_id, title=li.title, sku=li.sku,
                     product_id=li.product_id, variant_id=li.variant_id, quantity=li.quantity,
                     unit_price=format_amount(li.unit_price, order.currency)) for li in order.lines]


class OrderPageSchema(Schema):
    orders = fields.List(fields.Nested(OrderSchema))
    next_cursor = fields.String(allow_none=True, metadata={
        "description": "pass as cursor to get the next page; null on the last page"})
