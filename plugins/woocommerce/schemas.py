"""Marshmallow schemas for WooCommerce webhook bodies and REST API v3 resources.

A webhook body for an order or a customer is the REST API v3 representation of the resource (WooCommerce
builds it by GETting ``/wc/v3/<resource>s/<id>``), so the same schemas read deliveries and fetched
resources. WooCommerce adds fields with every release and plugins can filter the payload, so unknown
keys are dropped (``EXCLUDE``) and only what the adapter reads is declared. The schemas check shape
only; turning a loaded payload into canonical records is the adapter's job.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from marshmallow import (EXCLUDE, Schema, ValidationError, fields, pre_load, validate,
                         validates_schema)

#: Money beyond this magnitude is not a price but a corrupt or hostile body; it also keeps Decimal sums
#: far from the context's exponent limits.
MAX_MONEY = Decimal("1e15")


class UtcDateTime(fields.AwareDateTime):
    """WooCommerce's ``*_gmt`` dates: ISO 8601 without an offset, meaning UTC. Always loads aware UTC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", default_timezone=timezone.utc, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:  # an offset that pushes year 1 or 9999 out of range
            raise self.make_error("invalid", input=value, obj_type="datetime") from None


class Money(fields.Decimal):
    """A WooCommerce amount: a decimal string ("39.00"), or a number for ``line_items[].price``."""

    def _validated(self, value: Any) -> Decimal:
        number = super()._validated(value)
        if abs(number) >= MAX_MONEY:
            raise ValidationError(f"amount out of range: {value!r}")
        return number


class Text(fields.String):
    """A string WooCommerce may also send as a number (order numbers from sequential-number plugins)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


def _id(**kwargs: Any) -> fields.Integer:
    """A resource id: a positive JSON integer (never a string, a float or a boolean)."""
    return fields.Integer(strict=True, validate=validate.Range(min=1), **kwargs)


def _optional_text() -> Text:
    return Text(load_default=None, allow_none=True)


class _PayloadSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class _AddressSchema(_PayloadSchema):
    """``billing``/``shipping``. PHP encodes an empty associative array as ``[]``: read it as absent."""

    @pre_load
    def _empty_php_array(self, data: Any, **kwargs: Any) -> Any:
        return {} if data == [] else data


class WooCommerceBillingSchema(_AddressSchema):
    first_name = _optional_text()
    last_name = _optional_text()
    email = _optional_text()
    phone = _optional_text()


class WooCommerceLineItemSchema(_PayloadSchema):
    id = _id(required=True)
    name = _optional_text()
    product_id = fields.Integer(strict=True, load_default=0, allow_none=True)
    variation_id = fields.Integer(strict=True, load_default=0, allow_none=True)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    sku = _optional_text()
    price = Money(load_default=None, allow_none=True)
    subtotal = Money(load_default=None, allow_none=True)


class WooCommerceOrderRefundSchema(_PayloadSchema):
    """One entry of an order's ``refunds``: ``{"id", "reason", "total": "-10.00"}`` (total negative)."""

    id = _id(required=True)
    reason = _optional_text()
    total = Money(required=True)


class WooCommerceOrderPayloadSchema(_PayloadSchema):
    """An order: the body of order.created/updated/restored and an element of ``GET /orders``."""

    id = _id(required=True)
    number = _optional_text()
    status = Text(required=True)
    currency = Text(required=True, validate=validate.Regexp(r"^[A-Za-z]{3}$"))  # ISO 4217
    total = Money(required=True)
    customer_id = fields.Integer(strict=True, load_default=0, allow_none=True,
                                 validate=validate.Range(min=0))
    date_created_gmt = UtcDateTime(load_default=None, allow_none=True)
    date_modified_gmt = UtcDateTime(load_default=None, allow_none=True)
    billing = fields.Nested(WooCommerceBillingSchema, load_default=None, allow_none=True)
    shipping = fields.Nested(WooCommerceBillingSchema, load_default=None, allow_none=True)
    line_items = fields.List(fields.Nested(WooCommerceLineItemSchema), load_default=list)
    refunds = fields.List(fields.Nested(WooCommerceOrderRefundSchema), load_default=list)
    #: the shopper's note given at checkout (or edited by the merchant as "provided by customer")
    customer_note = _optional_text()

    @validates_schema
    def _has_a_modification_time(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("date_modified_gmt") is None and data.get("date_created_gmt") is None:
            raise ValidationError("an order needs date_modified_gmt or date_created_gmt",
                                  "date_modified_gmt")


class WooCommerceCustomerPayloadSchema(_PayloadSchema):
    """A customer: the body of customer.created/updated and an element of ``GET /customers``."""

    id = _id(required=True)
    email = _optional_text()
    first_name = _optional_text()
    last_name = _optional_text()
    username = _optional_text()
    date_modified_gmt = UtcDateTime(load_default=None, allow_none=True)
    billing = fields.Nested(WooCommerceBillingSchema, load_default=None, allow_none=True)


class WooCommerceDeliverySchema(_PayloadSchema):
    """What :meth:`WooCommerceAdapter.delivery` reads of any body: the resource id and its version.

    A deleted resource is sent as ``{"id": N}`` only; ``action.*`` topics send ``{"action", "arg"}``.
    """

    id = _id(load_default=None)
    date_modified_gmt = UtcDateTime(load_default=None, allow_none=True)


class WooCommerceDeletedPayloadSchema(_PayloadSchema):
    """The body of a ``*.deleted`` topic: only the id of the resource that is gone."""

    id = _id(required=True)
