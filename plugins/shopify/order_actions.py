"""Cancelling an order, or sending its goods again, on Shopify through the GraphQL Admin API.

Operations used, as documented for 2026-07 at shopify.dev/docs/api/admin-graphql/2026-07:

* ``query order(id:)`` with ``cancelledAt``, ``presentmentCurrencyCode``, ``email``,
  ``customer { id }``, ``shippingAddress`` (``MailingAddress``: ``countryCodeV2``,
  ``provinceCode``…) and ``lineItems { nodes { id title quantity variant { id } } }``;
* ``mutation orderCancel(orderId:, reason:, refundMethod:, restock:, notifyCustomer:,
  staffNote:)`` → ``job { id done }`` and ``orderCancelUserErrors { field message code }``
  (mutations/orderCancel, "Cancel an order"). ``refundMethod`` is an
  ``OrderCancelRefundMethodInput`` (``originalPaymentMethodsRefund: Boolean``) from 2025-07; older
  versions take ``refund: Boolean!`` instead. ``reason`` is an ``OrderCancelReason`` (CUSTOMER,
  DECLINED, FRAUD, INVENTORY, OTHER, STAFF): a cancel asked from a customer's voice is
  ``CUSTOMER``. Shopify cancels in a background job, so the result is ``requested``; the
  ``orders/cancelled`` webhook brings the cancelled order back to the store. An order is
  cancelled once ("Order cancellation is irreversible"): an order whose ``cancelledAt`` is set is
  the goal already reached, whoever cancelled it.
* a resend is a replacement order at no charge: ``mutation draftOrderCreate(input:
  DraftOrderInput!)`` with ``lineItems [{variantId, quantity}]`` (a line without a variant as a
  custom item: ``title``, ``quantity``, ``originalUnitPriceWithCurrency``), an order-level
  ``appliedDiscount {valueType: PERCENTAGE, value: 100}``, the original ``shippingAddress``,
  ``email``, ``purchasingEntity {customerId}``, ``presentmentCurrencyCode``, a ``note`` and the
  reference as a ``tag``; then ``mutation draftOrderComplete(id:)`` turns the zero-total draft
  into an order (``draftOrder { order { id name } }``). Neither takes an idempotency key: the
  draft is found again with ``query draftOrders(query: "tag:…")`` (the ``tag`` filter of the
  draft-order search syntax) before anything is created, and a draft left open by a job that
  died between the two mutations is completed rather than duplicated. Search results can lag a
  few seconds behind a write; the job's retries come minutes later.

Errors: user errors are :class:`PlatformError` with Shopify's message; a missing order too;
throttling, 5xx and timeouts are :class:`PlatformUnavailableError` (the client's mapping).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccms_addon.platforms import (OrderActionRequest, OrderActionResult, PlatformError,
                                  PlatformUnavailableError, ShopContext, carries_reference)

from .client import ShopifyAdminClient
from .settlement import gid, legacy_id

#: the first Admin API version whose ``orderCancel`` takes ``refundMethod`` (``refund`` before)
REFUND_METHOD_SINCE = "2025-07"
#: how a cancel asked from a customer's voice is recorded (``OrderCancelReason``)
CANCEL_REASON = "CUSTOMER"
#: staff notes and draft notes stay short and readable in the Shopify admin
NOTE_MAX = 255
#: the tag every replacement carries besides its reference, to list them in the admin
REPLACEMENT_TAG = "ccms-replacement"

ORDER_QUERY = """
query ccmsOrderActionOrder($id: ID!) {
  order(id: $id) {
    id
    name
    cancelledAt
    presentmentCurrencyCode
    email
    customer { id }
    shippingAddress {
      firstName lastName company address1 address2 city provinceCode countryCodeV2 zip phone
    }
    lineItems(first: 250) { nodes { id title quantity variant { id } } }
  }
}
"""

_CANCEL_SELECTION = """{
    job { id done }
    orderCancelUserErrors { field message code }
  }"""

ORDER_CANCEL_MUTATION = (
    "mutation ccmsOrderCancel($orderId: ID!, $reason: OrderCancelReason!, "
    "$refundMethod: OrderCancelRefundMethodInput!, $restock: Boolean!, $notifyCustomer: Boolean, "
    "$staffNote: String) {\n"
    "  orderCancel(orderId: $orderId, reason: $reason, refundMethod: $refundMethod, "
    "restock: $restock, notifyCustomer: $notifyCustomer, staffNote: $staffNote) "
    + _CANCEL_SELECTION + "\n}\n")
#: for a shop pinned to a version before ``refundMethod`` existed
ORDER_CANCEL_MUTATION_LEGACY = (
    "mutation ccmsOrderCancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, "
    "$restock: Boolean!, $notifyCustomer: Boolean, $staffNote: String) {\n"
    "  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock, "
    "notifyCustomer: $notifyCustomer, staffNote: $staffNote) " + _CANCEL_SELECTION + "\n}\n")

DRAFTS_QUERY = """
query ccmsReplacementDrafts($query: String!) {
  draftOrders(first: 10, query: $query) {
    nodes { id name status tags order { id name } }
  }
}
"""

DRAFT_CREATE_MUTATION = """
mutation ccmsReplacementDraft($input: DraftOrderInput!) {
  draftOrderCreate(input: $input) {
    draftOrder { id name status }
    userErrors { field message }
  }
}
"""

DRAFT_COMPLETE_MUTATION = """
mutation ccmsReplacementComplete($id: ID!) {
  draftOrderComplete(id: $id) {
    draftOrder { id status order { id name } }
    userErrors { field message }
  }
}
"""


def order_action(shop: ShopContext, request: OrderActionRequest,
                 **client_kwargs: Any) -> OrderActionResult:
    """Cancel ``request``'s order or send its lines again; see the module docstring."""
    request.check()
    order_gid = gid("Order", request.platform_order_id, what="order")
    with ShopifyAdminClient.for_shop(shop, **client_kwargs) as client:
        order = client.graphql(ORDER_QUERY, {"id": order_gid}).get("order")
        if order is None:
            raise PlatformError(f"Shopify has no order {request.platform_order_id} in this shop "
                                "(deleted, or another shop's order): nothing was done")
        if not isinstance(order, dict) or not order.get("id"):
            raise PlatformUnavailableError("Shopify answered the order query without an order")
        if request.action == "cancel":
            return _cancel(client, order, request)
        return _resend(client, order, request)


def note_for(request: OrderActionRequest) -> str:
    """The reference first (so truncation never cuts it), then the reason."""
    reason = " ".join(request.reason.split())
    text = f"{request.reference}: {reason}" if reason else request.reference
    return text if len(text) <= NOTE_MAX else text[: NOTE_MAX - 1] + "…"


def _user_errors(payload: Mapping[str, Any], key: str, what: str) -> None:
    errors = [e for e in payload.get(key) or [] if isinstance(e, dict)]
    if errors:
        text = "; ".join(str(e.get("message") or e.get("code") or "refused") for e in errors)
        raise PlatformError(f"Shopify refused {what}: {text}"[:500])


# --------------------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------------------


def _cancel(client: ShopifyAdminClient, order: Mapping[str, Any],
            request: OrderActionRequest) -> OrderActionResult:
    name = order.get("name") or request.platform_order_id
    order_id = legacy_id(order["id"])
    if order.get("cancelledAt"):
        return OrderActionResult(
            action="cancel", platform_id=order_id, status="already_existed",
            detail=f"Shopify order {name} was already cancelled ({order['cancelledAt']}); "
                   "nothing new was done.")
    variables: dict[str, Any] = {
        "orderId": order["id"], "reason": CANCEL_REASON, "restock": bool(request.restock),
        "notifyCustomer": bool(request.notify_customer), "staffNote": note_for(request)}
    if client.api_version >= REFUND_METHOD_SINCE:
        variables["refundMethod"] = {"originalPaymentMethodsRefund": bool(request.refund)}
        data = client.graphql(ORDER_CANCEL_MUTATION, variables)
    else:
        variables["refund"] = bool(request.refund)
        data = client.graphql(ORDER_CANCEL_MUTATION_LEGACY, variables)
    payload = data.get("orderCancel") or {}
    _user_errors(payload, "orderCancelUserErrors", f"the cancellation of order {name}")
    job = payload.get("job")
    if not isinstance(job, dict) or not job.get("id"):
        raise PlatformUnavailableError("Shopify orderCancel answered without a job")
    return OrderActionResult(
        action="cancel", platform_id=order_id, status="created" if job.get("done") else "requested",
        detail=f"Shopify is cancelling order {name} (job {legacy_id(job['id'])})"
               + ("; the payment goes back to the original payment method" if request.refund
                  else "; the payment is kept")
               + ("; the items go back in stock." if request.restock else "."))


# --------------------------------------------------------------------------------------------------
# resend: a zero-priced replacement order
# --------------------------------------------------------------------------------------------------


def _resend(client: ShopifyAdminClient, order: Mapping[str, Any],
            request: OrderActionRequest) -> OrderActionResult:
    name = order.get("name") or request.platform_order_id
    found = _replacement_draft(client, request.reference)
    if found is not None:
        placed = found.get("order")
        if isinstance(placed, dict) and placed.get("id"):
            return OrderActionResult(
                action="resend", platform_id=legacy_id(placed["id"]), status="already_existed",
                detail=f"Shopify replacement order {placed.get('name') or legacy_id(placed['id'])} "
                       f"for order {name} already carries {request.reference}; nothing new was "
                       "created.")
        return _complete(client, found, name, request)
    line_items = _replacement_lines(order, request, name)
    currency = str(order.get("presentmentCurrencyCode") or "")
    draft_input: dict[str, Any] = {
        "lineItems": line_items,
        "appliedDiscount": {"valueType": "PERCENTAGE", "value": 100.0, "title": "Replacement",
                            "description": request.reference},
        "note": note_for(request),
        "tags": [request.reference, REPLACEMENT_TAG],
    }
    if currency:
        draft_input["presentmentCurrencyCode"] = currency
    if order.get("email"):
        draft_input["email"] = order["email"]
    customer = order.get("customer")
    if isinstance(customer, dict) and customer.get("id"):
        draft_input["purchasingEntity"] = {"customerId": customer["id"]}
    address = _address(order.get("shippingAddress"))
    if address:
        draft_input["shippingAddress"] = address
    data = client.graphql(DRAFT_CREATE_MUTATION, {"input": draft_input})
    payload = data.get("draftOrderCreate") or {}
    _user_errors(payload, "userErrors", f"the replacement of order {name}")
    draft = payload.get("draftOrder")
    if not isinstance(draft, dict) or not draft.get("id"):
        raise PlatformUnavailableError("Shopify draftOrderCreate answered without a draft order")
    return _complete(client, draft, name, request)


def _replacement_draft(client: ShopifyAdminClient, reference: str) -> dict[str, Any] | None:
    data = client.graphql(DRAFTS_QUERY, {"query": f'tag:"{reference}"'})
    for draft in ((data.get("draftOrders") or {}).get("nodes") or []):
        if isinstance(draft, dict) and any(carries_reference(tag, reference)
                                           for tag in draft.get("tags") or []):
            return draft
    return None


def _complete(client: ShopifyAdminClient, draft: Mapping[str, Any], name: str,
              request: OrderActionRequest) -> OrderActionResult:
    data = client.graphql(DRAFT_COMPLETE_MUTATION, {"id": draft["id"]})
    payload = data.get("draftOrderComplete") or {}
    _user_errors(payload, "userErrors", f"the replacement of order {name}")
    placed = ((payload.get("draftOrder") or {}).get("order")) or {}
    if not isinstance(placed, dict) or not placed.get("id"):
        raise PlatformUnavailableError("Shopify draftOrderComplete answered without an order")
    return OrderActionResult(
        action="resend", platform_id=legacy_id(placed["id"]), status="created",
        detail=f"Shopify replacement order {placed.get('name') or legacy_id(placed['id'])} (no "
               f"charge) ships the items of order {name} again; fulfil it as usual.")


def _replacement_lines(order: Mapping[str, Any], request: OrderActionRequest,
                       name: str) -> list[dict[str, Any]]:
    nodes = {legacy_id(node.get("id")): node
             for node in ((order.get("lineItems") or {}).get("nodes") or [])
             if isinstance(node, dict) and node.get("id")}
    wanted: dict[str, int] = {}
    for line in request.lines:
        key = legacy_id(line.platform_line_id)
        wanted[key] = wanted.get(key, 0) + line.quantity
    if not wanted:
        wanted = {key: int(node.get("quantity") or 0) for key, node in nodes.items()
                  if int(node.get("quantity") or 0) > 0}
    if not wanted:
        raise PlatformError(f"order {name} has no line to send again")
    currency = str(order.get("presentmentCurrencyCode") or "")
    items: list[dict[str, Any]] = []
    for key, quantity in wanted.items():
        node = nodes.get(key)
        if node is None:
            raise PlatformError(f"order {name} has no line {key}")
        if quantity > int(node.get("quantity") or 0):
            raise PlatformError(f"order {name}, line {key}: {quantity} to send again but only "
                                f"{node.get('quantity')} ordered")
        variant = (node.get("variant") or {}).get("id") if isinstance(node.get("variant"), dict) \
            else None
        if variant:
            items.append({"variantId": variant, "quantity": quantity})
        else:  # a custom item of the original order: the same title, at no charge
            items.append({"title": str(node.get("title") or "Replacement item"),
                          "quantity": quantity,
                          "originalUnitPriceWithCurrency": {"amount": "0",
                                                            "currencyCode": currency}})
    return items


def _address(value: Any) -> dict[str, Any] | None:
    """``MailingAddress`` (read) → ``MailingAddressInput`` (write): ``countryCodeV2`` is written
    back as ``countryCode``; empty fields are left out."""
    if not isinstance(value, dict):
        return None
    names = ("firstName", "lastName", "company", "address1", "address2", "city", "provinceCode",
             "zip", "phone")
    address = {key: value[key] for key in names if value.get(key)}
    if value.get("countryCodeV2"):
        address["countryCode"] = value["countryCodeV2"]
    return address or None
