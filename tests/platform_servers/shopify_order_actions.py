"""The GraphQL Admin API operations of an order action (cancel, resend), for the loopback Shopify
server, on the orders of :mod:`.shopify_settlement` (so a refund and a cancel see the same order).

It answers, as documented for 2026-07 (shopify.dev/docs/api/admin-graphql/2026-07), what
:mod:`ccms_addon.plugins.shopify.order_actions` sends, recognised by the root field:

* ``order(id:) { … lineItems … }`` → ``id``, ``name``, ``cancelledAt``,
  ``presentmentCurrencyCode``, ``email``, ``customer { id }``, ``shippingAddress``,
  ``lineItems { nodes [{id, title, quantity, variant { id }}] }``; ``null`` for an unknown order;
* ``orderCancel(orderId:, reason:, refundMethod: | refund:, restock:, notifyCustomer:,
  staffNote:)`` → ``job { id done: false }`` (the cancel is done at once here) or
  ``orderCancelUserErrors`` (``NOT_FOUND`` order, ``INVALID`` when it is already cancelled or has
  fulfilled items, an unknown ``reason``); ``refundMethod`` is refused before 2025-07, when only
  ``refund`` existed. A refund gives back what every sale can still refund (a refund record
  carrying the staff note), a restock puts back what was not refunded;
* ``draftOrders(query: "tag:…")`` → the drafts carrying that tag;
* ``draftOrderCreate(input:)`` → an ``OPEN`` draft, or ``userErrors`` for no line items, an
  unknown ``variantId``, a custom item without ``title`` or ``originalUnitPriceWithCurrency``, an
  unknown ``appliedDiscount.valueType``; its total is the variants' prices less the discount;
* ``draftOrderComplete(id:)`` → the draft ``COMPLETED`` with its new ``order { id name }``, or
  ``userErrors`` for an unknown or already completed draft.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tests.platform_servers.shopify_settlement import FakeOrder, SettlementFake, _money, _tail

REFUND_METHOD_SINCE = "2025-07"
CANCEL_REASONS = frozenset({"CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF"})
_TAG = re.compile(r'tag:(?:"([^"]*)"|\'([^\']*)\'|(\S+))')


def handle(fake: SettlementFake, version: str, query: str,
           variables: dict[str, Any]) -> dict[str, Any] | None:
    """The GraphQL answer for an order-action operation; None for any other operation."""
    if "orderCancel(" in query:
        return _order_cancel(fake, version, query, variables)
    if "draftOrderCreate(" in query:
        return {"data": {"draftOrderCreate": _draft_create(fake, variables.get("input") or {})}}
    if "draftOrderComplete(" in query:
        return {"data": {"draftOrderComplete": _draft_complete(fake, variables.get("id"))}}
    if "draftOrders(" in query:
        match = _TAG.search(str(variables.get("query") or ""))
        tag = next((g for g in match.groups() if g), None) if match else None
        nodes = [_draft(d) for d in fake.draft_orders.values() if tag and tag in d["tags"]]
        return {"data": {"draftOrders": {"nodes": nodes}}}
    if re.search(r"\border\(id:", query) and "lineItems" in query:
        order = fake.orders.get(_tail(variables.get("id")))
        return {"data": {"order": None if order is None else _order(order)}}
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _order(order: FakeOrder) -> dict[str, Any]:
    return {
        "id": order.gid, "name": order.name, "cancelledAt": order.cancelled_at,
        "presentmentCurrencyCode": order.currency, "email": order.email,
        "customer": ({"id": f"gid://shopify/Customer/{order.customer_id}"}
                     if order.customer_id else None),
        "shippingAddress": dict(order.shipping_address) if order.shipping_address else None,
        "lineItems": {"nodes": [
            {"id": f"gid://shopify/LineItem/{line.id}", "title": line.title or f"Item {line.id}",
             "quantity": line.quantity,
             "variant": ({"id": f"gid://shopify/ProductVariant/{line.variant_id}"}
                         if line.variant_id else None)}
            for line in order.lines.values()]},
    }


# --------------------------------------------------------------------------------------------------
# orderCancel
# --------------------------------------------------------------------------------------------------


def _order_cancel(fake: SettlementFake, version: str, query: str,
                  variables: dict[str, Any]) -> dict[str, Any]:
    if "refundMethod" in query and version < REFUND_METHOD_SINCE:
        return {"errors": [{"message": "Field 'orderCancel' doesn't accept argument "
                                       "'refundMethod'", "extensions": {"code": "BAD_REQUEST"}}]}

    def refused(field_path: list[str], message: str, code: str) -> dict[str, Any]:
        return {"data": {"orderCancel": {"job": None, "orderCancelUserErrors": [
            {"field": field_path, "message": message, "code": code}]}}}

    order = fake.orders.get(_tail(variables.get("orderId")))
    if order is None:
        return refused(["orderId"], "Order does not exist", "NOT_FOUND")
    if variables.get("reason") not in CANCEL_REASONS:
        return refused(["reason"], "Reason is invalid", "INVALID")
    if order.cancelled_at:
        return refused(["orderId"], "Cannot cancel an order that has already been cancelled",
                       "INVALID")
    if any(line.fulfilled for line in order.lines.values()):
        return refused(["orderId"], "Cannot cancel an order with fulfilled line items", "INVALID")
    method = variables.get("refundMethod") or {}
    refund = bool(method.get("originalPaymentMethodsRefund")) if "refundMethod" in variables \
        else bool(variables.get("refund"))
    order.cancel_inputs.append(dict(variables))
    order.cancelled_at = _now()
    if refund:
        total = Decimal(0)
        for txn in order.transactions:
            total += txn.left
            txn.refunded = txn.amount
        if total:
            order.refunds.append({"id": f"gid://shopify/Refund/{fake._id()}",
                                  "note": variables.get("staffNote"),
                                  "totalRefundedSet": _money(total, order.currency)})
    if variables.get("restock"):
        for line in order.lines.values():
            line.restocked += line.quantity - line.refunded
    return {"data": {"orderCancel": {"job": {"id": f"gid://shopify/Job/{uuid.uuid4()}",
                                             "done": False},
                                     "orderCancelUserErrors": []}}}


# --------------------------------------------------------------------------------------------------
# draft orders: the replacement
# --------------------------------------------------------------------------------------------------


def _draft(draft: dict[str, Any]) -> dict[str, Any]:
    return {"id": draft["id"], "name": draft["name"], "status": draft["status"],
            "tags": list(draft["tags"]), "order": dict(draft["order"]) if draft["order"] else None}


def _variant_price(fake: SettlementFake, variant_gid: Any) -> Decimal | None:
    for order in fake.orders.values():
        for line in order.lines.values():
            if line.variant_id and f"gid://shopify/ProductVariant/{line.variant_id}" == variant_gid:
                return line.price
    return None


def _draft_create(fake: SettlementFake, data: dict[str, Any]) -> dict[str, Any]:
    def refused(field_path: list[str], message: str) -> dict[str, Any]:
        return {"draftOrder": None, "userErrors": [{"field": field_path, "message": message}]}

    items = data.get("lineItems") or []
    if not items:
        return refused(["lineItems"], "Line items can't be blank")
    subtotal = Decimal(0)
    for i, item in enumerate(items):
        quantity = int(item.get("quantity") or 0)
        if quantity < 1:
            return refused(["lineItems", str(i), "quantity"], "Quantity must be greater than 0")
        if item.get("variantId"):
            price = _variant_price(fake, item["variantId"])
            if price is None:
                return refused(["lineItems", str(i), "variantId"], "Product variant does not exist")
        else:
            money = item.get("originalUnitPriceWithCurrency")
            if not item.get("title") or not isinstance(money, dict):
                return refused(["lineItems", str(i)], "Custom items need a title and a price")
            price = Decimal(str(money.get("amount")))
        subtotal += price * quantity
    discount = data.get("appliedDiscount")
    if discount:
        if discount.get("valueType") not in ("PERCENTAGE", "FIXED_AMOUNT"):
            return refused(["appliedDiscount", "valueType"], "Value type is invalid")
        value = Decimal(str(discount.get("value")))
        off = subtotal * value / 100 if discount["valueType"] == "PERCENTAGE" else value
        subtotal = max(subtotal - off, Decimal(0))
    number = len(fake.draft_orders) + 1
    draft = {"id": f"gid://shopify/DraftOrder/{fake._id()}", "name": f"#D{number}",
             "status": "OPEN", "tags": list(data.get("tags") or []), "order": None,
             "total": subtotal, "input": data}
    fake.draft_orders[draft["id"]] = draft
    return {"draftOrder": {k: draft[k] for k in ("id", "name", "status")}, "userErrors": []}


def _draft_complete(fake: SettlementFake, draft_id: Any) -> dict[str, Any]:
    draft = fake.draft_orders.get(str(draft_id))
    if draft is None:
        return {"draftOrder": None, "userErrors": [{"field": ["id"],
                                                    "message": "Draft order does not exist"}]}
    if draft["status"] == "COMPLETED":
        return {"draftOrder": None, "userErrors": [{"field": ["id"], "message":
                                                    "This draft order has already been completed"}]}
    placed = {"id": f"gid://shopify/Order/{fake._id()}",
              "name": f"#{2000 + len(fake.placed_orders) + 1}", "total": str(draft["total"]),
              "tags": draft["tags"], "draft_id": draft["id"]}
    fake.placed_orders.append(placed)
    draft.update(status="COMPLETED", order={"id": placed["id"], "name": placed["name"]})
    return {"draftOrder": _draft(draft), "userErrors": []}
