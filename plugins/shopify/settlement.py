"""Settling an approved guarantee claim on Shopify: a refund or a return through the GraphQL Admin API.

Why GraphQL: the REST Admin API is legacy since 2024-10 and has no returns at all, while the GraphQL
``refundCreate`` mutation takes an idempotency key (the ``@idempotent`` directive, added in 2026-01 and
mandatory from 2026-04: shopify.dev changelog "Making idempotency mandatory for inventory adjustments
and refund mutations"). The client pins 2026-07. Operations used, as documented for 2026-07 at
shopify.dev/docs/api/admin-graphql/2026-07:

* ``query order(id:)`` with ``refunds { id note totalRefundedSet }`` and ``returns { nodes { id name
  status returnLineItems { ... on ReturnLineItem { returnReasonNote } } } }``: the look-up of what
  already carries the claim's reference, and the order's ``presentmentCurrencyCode`` (refunds are
  made in the presentment currency, ``RefundInput.currency``);
* ``Order.suggestedRefund(refundLineItems:, suggestFullRefund:)``: what is still refundable
  (``maximumRefundableSet``), through which gateway and parent transaction
  (``suggestedTransactions``) and, for a restock, at which location (``refundLineItems.location``):
  the GraphQL counterpart of REST ``POST orders/{id}/refunds/calculate.json``;
* ``mutation refundCreate(input: RefundInput!) @idempotent(key:)``: ``orderId``, ``note``,
  ``notify``, ``currency``, ``refundLineItems [{lineItemId, quantity, restockType, locationId}]``,
  ``transactions [{orderId, parentId, gateway, kind: REFUND, amount}]`` (``OrderTransactionInput``);
* ``query returnableFulfillments(orderId:)``: ``returnCreate`` takes ``FulfillmentLineItem`` ids,
  not ``LineItem`` ids, and only what was fulfilled and not yet returned can come back;
* ``mutation returnCreate(returnInput: ReturnInput!)``: an ``OPEN`` return (approved: the merchant
  approved the claim), ``returnLineItems [{fulfillmentLineItemId, quantity, returnReasonNote}]``
  (``returnReasonNote`` at most 255 characters). ``returnCreate`` takes no idempotency key, so the
  look-up by reference is its only guard. The refund and restock follow when the goods arrive and
  the merchant processes the return in Shopify.

Exactly once: the look-up by reference runs first; the refund's idempotency key is derived from the
shop, the order, the reference and the settlement's content, so a retried job (same request) gets
Shopify's original answer inside the key's retention window and the look-up catches it afterwards.
Rate limits: HTTP 429 is retried in the call by the client (``Retry-After``); a GraphQL ``THROTTLED``
error, 5xx and timeouts are :class:`PlatformUnavailableError` for the job's backoff.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ccms_addon.money import quantize
from ccms_addon.platforms import (PlatformError, PlatformUnavailableError, ReturnLine,
                                  SettlementRequest, SettlementResult, ShopContext,
                                  carries_reference, exact_amount)

from .client import ShopifyAdminClient

#: the first Admin API version whose ``refundCreate`` takes ``@idempotent`` (mandatory from 2026-04)
IDEMPOTENT_SINCE = "2026-01"
#: versions before this one require ``ReturnLineItemInput.returnReason`` (deprecated since)
RETURN_REASON_OPTIONAL_SINCE = "2026-01"
#: ``ReturnLineItemInput.returnReasonNote`` maximum length
RETURN_NOTE_MAX = 255
#: a refund note is free text; keep it readable in the Shopify admin
REFUND_NOTE_MAX = 500
#: namespace of the derived idempotency keys (UUIDs, as Shopify recommends)
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0f7a8e-1d2c-4e3f-9a6b-c7d8e9f0a1b2")

ORDER_QUERY = """
query ccmsSettlementOrder($id: ID!) {
  order(id: $id) {
    id
    name
    presentmentCurrencyCode
    refunds(first: 250) {
      id
      note
      totalRefundedSet { presentmentMoney { amount currencyCode } }
    }
    returns(first: 50) {
      nodes {
        id
        name
        status
        returnLineItems(first: 50) { nodes { ... on ReturnLineItem { returnReasonNote } } }
      }
    }
  }
}
"""

SUGGESTED_REFUND_QUERY = """
query ccmsSuggestedRefund($id: ID!, $refundLineItems: [RefundLineItemInput!], $suggestFullRefund: Boolean) {
  order(id: $id) {
    suggestedRefund(refundLineItems: $refundLineItems, suggestFullRefund: $suggestFullRefund) {
      amountSet { presentmentMoney { amount currencyCode } }
      maximumRefundableSet { presentmentMoney { amount currencyCode } }
      refundLineItems { lineItem { id } quantity restockType location { id } }
      suggestedTransactions {
        gateway
        parentTransaction { id }
        amountSet { presentmentMoney { amount currencyCode } }
        maximumRefundableSet { presentmentMoney { amount currencyCode } }
      }
    }
  }
}
"""

_REFUND_SELECTION = """{
    refund { id note totalRefundedSet { presentmentMoney { amount currencyCode } } }
    userErrors { field message }
  }"""

REFUND_CREATE_MUTATION = ("mutation ccmsRefundCreate($input: RefundInput!, $idempotencyKey: String!) {\n"
                          "  refundCreate(input: $input) @idempotent(key: $idempotencyKey) "
                          + _REFUND_SELECTION + "\n}\n")
#: for a shop pinned to a version before ``@idempotent`` existed
REFUND_CREATE_MUTATION_LEGACY = ("mutation ccmsRefundCreate($input: RefundInput!) {\n"
                                 "  refundCreate(input: $input) " + _REFUND_SELECTION + "\n}\n")

RETURNABLE_QUERY = """
query ccmsReturnableFulfillments($orderId: ID!) {
  returnableFulfillments(orderId: $orderId, first: 50) {
    nodes {
      id
      returnableFulfillmentLineItems(first: 100) {
        nodes { quantity fulfillmentLineItem { id lineItem { id } } }
      }
    }
  }
}
"""

RETURN_CREATE_MUTATION = """
mutation ccmsReturnCreate($returnInput: ReturnInput!) {
  returnCreate(returnInput: $returnInput) {
    return { id name status }
    userErrors { field message code }
  }
}
"""



def settle_claim(shop: ShopContext, request: SettlementRequest, **client_kwargs: Any) -> SettlementResult:
    """Create (or find) the Shopify refund or return for ``request``; see the module docstring."""
    request.check()
    order_gid = gid("Order", request.platform_order_id, what="order")
    with ShopifyAdminClient.for_shop(shop, **client_kwargs) as client:
        order = _order(client, order_gid, request.platform_order_id)
        existing = find_existing(order, request.reference)
        if existing is not None:
            return existing
        if request.action == "refund":
            return _refund(client, shop, order, request)
        return _return(client, order, request)


# --------------------------------------------------------------------------------------------------
# the request, the reference, money and ids
# --------------------------------------------------------------------------------------------------






def note_for(request: SettlementRequest, limit: int) -> str:
    """The reference first (so truncation never cuts it), then the reason."""
    reason = " ".join(request.reason.split())
    text = f"{request.reference}: {reason}" if reason else request.reference
    return text if len(text) <= limit else text[: limit - 1] + "…"




def gid(kind: str, value: str, *, what: str) -> str:
    """A GraphQL id from a REST id (``"450789469"`` → ``gid://shopify/Order/450789469``)."""
    text = str(value).strip()
    if text.startswith(f"gid://shopify/{kind}/"):
        return text
    if not (text.isascii() and text.isdigit()):
        raise PlatformError(f"{text!r} is not a Shopify {what} id (Shopify ids are numbers)")
    return f"gid://shopify/{kind}/{text}"


def legacy_id(global_id: Any) -> str:
    """The REST id at the end of a GraphQL id, the form webhooks and the canonical records use."""
    return str(global_id or "").rsplit("/", 1)[-1].split("?", 1)[0]


def _money(money_set: Any) -> tuple[Decimal, str | None]:
    money = (money_set or {}).get("presentmentMoney") if isinstance(money_set, dict) else None
    if not isinstance(money, dict):
        raise PlatformUnavailableError("Shopify answered a money field without presentmentMoney")
    try:
        return Decimal(str(money.get("amount"))), money.get("currencyCode")
    except InvalidOperation:
        raise PlatformUnavailableError("Shopify answered an amount that is not a number") from None


def _idempotency_key(shop: ShopContext, order_gid: str, request: SettlementRequest,
                     body: Mapping[str, Any]) -> str:
    """A UUID for this settlement: the same request retried gets the same key, a changed one a new key
    (Shopify refuses a key reused with different variables)."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE,
                          f"{shop.domain}|{order_gid}|{request.reference}|{digest}"))


# --------------------------------------------------------------------------------------------------
# look-up
# --------------------------------------------------------------------------------------------------


def _order(client: ShopifyAdminClient, order_gid: str, order_id: str) -> dict[str, Any]:
    order = client.graphql(ORDER_QUERY, {"id": order_gid}).get("order")
    if order is None:
        raise PlatformError(f"Shopify has no order {order_id} in this shop (deleted, or another "
                            "shop's order): nothing was refunded or returned")
    if not isinstance(order, dict):
        raise PlatformUnavailableError("Shopify answered the order query without an order object")
    return order


def find_existing(order: Mapping[str, Any], reference: str) -> SettlementResult | None:
    """The refund or return that already carries ``reference``, as an ``already_existed`` result."""
    name = order.get("name") or legacy_id(order.get("id"))
    for refund in order.get("refunds") or []:
        if isinstance(refund, dict) and carries_reference(refund.get("note"), reference):
            amount, currency = _money(refund.get("totalRefundedSet"))
            return SettlementResult(
                action="refund", platform_id=legacy_id(refund.get("id")), status="already_existed",
                amount=amount,
                detail=f"Shopify refund {legacy_id(refund.get('id'))} of {amount} {currency} on order "
                       f"{name} already carries {reference}; nothing new was created.")
    for ret in ((order.get("returns") or {}).get("nodes") or []):
        if not isinstance(ret, dict):
            continue
        notes = [(n or {}).get("returnReasonNote")
                 for n in ((ret.get("returnLineItems") or {}).get("nodes") or [])]
        if any(carries_reference(note, reference) for note in notes):
            return SettlementResult(
                action="return", platform_id=legacy_id(ret.get("id")), status="already_existed",
                detail=f"Shopify return {ret.get('name') or legacy_id(ret.get('id'))} "
                       f"({str(ret.get('status', '')).lower()}) on order {name} already carries "
                       f"{reference}; nothing new was created.")
    return None


# --------------------------------------------------------------------------------------------------
# refund
# --------------------------------------------------------------------------------------------------


def _refund(client: ShopifyAdminClient, shop: ShopContext, order: Mapping[str, Any],
            request: SettlementRequest) -> SettlementResult:
    order_gid, name = str(order["id"]), order.get("name") or request.platform_order_id
    currency = str(order.get("presentmentCurrencyCode") or request.currency)
    if currency.upper() != request.currency.upper():
        raise PlatformError(
            f"order {name} was paid in {currency}, the claim is in {request.currency}: refund it "
            f"from the Shopify admin, or settle the claim in {currency}")
    restock_type = "RETURN" if request.restock else "NO_RESTOCK"
    lines = [{"lineItemId": gid("LineItem", line.platform_line_id, what="order line"),
              "quantity": line.quantity, "restockType": restock_type}
             for line in _merged(request.lines)]
    data = client.graphql(SUGGESTED_REFUND_QUERY, {
        "id": order_gid, "refundLineItems": lines or None, "suggestFullRefund": not lines})
    suggestion = (data.get("order") or {}).get("suggestedRefund")
    if not isinstance(suggestion, dict):
        raise PlatformError(f"Shopify has nothing to refund on order {name}")
    maximum, _ = _money(suggestion.get("maximumRefundableSet"))
    amount = request.amount if request.amount is not None else _money(suggestion.get("amountSet"))[0]
    if amount <= 0:
        raise PlatformError(f"nothing is left to refund on order {name}")
    if amount > maximum:
        raise PlatformError(
            f"the refund of {exact_amount(quantize(amount, currency), currency)} {currency} is "
            f"more than the "
            f"{exact_amount(quantize(maximum, currency), currency)} {currency} still refundable "
            f"on order {name}; lower the amount or check earlier refunds in the Shopify admin")
    transactions = _allocate(amount, currency, order_gid, suggestion.get("suggestedTransactions"), name)
    locations = {legacy_id(((item or {}).get("lineItem") or {}).get("id")):
                 ((item or {}).get("location") or {}).get("id")
                 for item in suggestion.get("refundLineItems") or [] if isinstance(item, dict)}
    for line in lines:
        location = locations.get(legacy_id(line["lineItemId"]))
        if request.restock and location:
            line["locationId"] = location
    refund_input: dict[str, Any] = {
        "orderId": order_gid, "note": note_for(request, REFUND_NOTE_MAX),
        "notify": bool(request.notify_customer), "currency": currency,
        "transactions": transactions,
    }
    if lines:
        refund_input["refundLineItems"] = lines
    if client.api_version >= IDEMPOTENT_SINCE:
        key = _idempotency_key(shop, order_gid, request, refund_input)
        data = client.graphql(REFUND_CREATE_MUTATION, {"input": refund_input, "idempotencyKey": key})
    else:
        data = client.graphql(REFUND_CREATE_MUTATION_LEGACY, {"input": refund_input})
    payload = data.get("refundCreate") or {}
    _raise_user_errors(payload, f"the refund of order {name}")
    refund = payload.get("refund")
    if not isinstance(refund, dict) or not refund.get("id"):
        raise PlatformUnavailableError("Shopify refundCreate answered without a refund")
    refunded, refunded_currency = _money(refund.get("totalRefundedSet"))
    return SettlementResult(
        action="refund", platform_id=legacy_id(refund["id"]), status="created", amount=refunded,
        detail=f"Shopify refunded {exact_amount(quantize(refunded, currency), currency)} "
               f"{refunded_currency or currency} on order {name}"
               + (" and restocks the returned items." if request.restock and lines else "."))


def _allocate(amount: Decimal, currency: str, order_gid: str, suggested: Any,
              name: str) -> list[dict[str, Any]]:
    """Spread ``amount`` over the suggested parent transactions, each up to what it can refund."""
    left, out = amount, []
    for txn in suggested or []:
        if not isinstance(txn, dict) or left <= 0:
            continue
        parent = (txn.get("parentTransaction") or {}).get("id")
        cap_set = txn.get("maximumRefundableSet") or txn.get("amountSet")
        cap, _ = _money(cap_set)
        take = min(left, cap)
        if take <= 0 or not txn.get("gateway"):
            continue
        entry = {"orderId": order_gid, "gateway": txn["gateway"], "kind": "REFUND",
                 "amount": exact_amount(quantize(take, currency), currency)}
        if parent:
            entry["parentId"] = parent
        out.append(entry)
        left -= take
    if left > 0:
        raise PlatformError(f"order {name} has no payment left to refund {left} {currency} to; "
                            "refund it from the Shopify admin")
    return out


def _merged(lines: Sequence[ReturnLine]) -> list[ReturnLine]:
    """One entry per order line (the same line named twice is added up)."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.platform_line_id] = totals.get(line.platform_line_id, 0) + line.quantity
    return [ReturnLine(line_id, quantity) for line_id, quantity in totals.items()]


def _raise_user_errors(payload: Mapping[str, Any], what: str) -> None:
    errors = [e for e in payload.get("userErrors") or [] if isinstance(e, dict)]
    if errors:
        text = "; ".join(str(e.get("message") or e.get("code") or "refused") for e in errors)
        raise PlatformError(f"Shopify refused {what}: {text}"[:500])


# --------------------------------------------------------------------------------------------------
# return
# --------------------------------------------------------------------------------------------------


def _return(client: ShopifyAdminClient, order: Mapping[str, Any],
            request: SettlementRequest) -> SettlementResult:
    order_gid, name = str(order["id"]), order.get("name") or request.platform_order_id
    data = client.graphql(RETURNABLE_QUERY, {"orderId": order_gid})
    returnable: dict[str, list[tuple[str, int]]] = {}
    for fulfillment in ((data.get("returnableFulfillments") or {}).get("nodes") or []):
        for node in (((fulfillment or {}).get("returnableFulfillmentLineItems") or {})
                     .get("nodes") or []):
            item = (node or {}).get("fulfillmentLineItem") or {}
            line_id = legacy_id((item.get("lineItem") or {}).get("id"))
            if item.get("id") and int(node.get("quantity") or 0) > 0:
                returnable.setdefault(line_id, []).append((item["id"], int(node["quantity"])))
    wanted = _merged(request.lines) or [
        ReturnLine(line_id, sum(q for _, q in parts)) for line_id, parts in returnable.items()]
    if not wanted:
        raise PlatformError(f"nothing on order {name} can be returned yet: Shopify returns only "
                            "fulfilled items that were not returned or refunded before")
    note = note_for(request, RETURN_NOTE_MAX)
    return_lines: list[dict[str, Any]] = []
    for line in wanted:
        gid("LineItem", line.platform_line_id, what="order line")  # a malformed id is refused here
        left = line.quantity
        for fulfillment_line_id, available in returnable.get(legacy_id(line.platform_line_id), []):
            take = min(left, available)
            if take > 0:
                entry: dict[str, Any] = {"fulfillmentLineItemId": fulfillment_line_id,
                                         "quantity": take, "returnReasonNote": note}
                if client.api_version < RETURN_REASON_OPTIONAL_SINCE:
                    entry["returnReason"] = "OTHER"
                return_lines.append(entry)
                left -= take
        if left > 0:
            can = line.quantity - left
            raise PlatformError(
                f"order {name}, line {line.platform_line_id}: {line.quantity} to return but only "
                f"{can} fulfilled and not yet returned; fulfil the items first or return fewer")
    data = client.graphql(RETURN_CREATE_MUTATION, {"returnInput": {
        "orderId": order_gid, "returnLineItems": return_lines}})
    payload = data.get("returnCreate") or {}
    _raise_user_errors(payload, f"the return of order {name}")
    created = payload.get("return")
    if not isinstance(created, dict) or not created.get("id"):
        raise PlatformUnavailableError("Shopify returnCreate answered without a return")
    return SettlementResult(
        action="return", platform_id=legacy_id(created["id"]), status="created",
        detail=f"Shopify return {created.get('name') or legacy_id(created['id'])} is open on order "
               f"{name}: the customer sends the items back, and the refund"
               + (" and restock" if request.restock else "")
               + " follow when the return is processed in the Shopify admin.")
