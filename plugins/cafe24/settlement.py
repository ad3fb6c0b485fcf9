"""Settling an approved guarantee claim on Cafe24: an order return through the Admin API.

Cafe24's Admin API has no endpoint that creates a refund of an amount: refunds (``GET
/api/v2/admin/refunds``) are read-only records that Cafe24 computes when a cancellation or a return
is completed. So both actions are an order return (developers.cafe24.com, Admin API, Order > Orders
return, "Create an order return", scope ``mall.write_order``, one order per call):

``POST /api/v2/admin/orders/{order_id}/return`` with ``{"shop_no": N, "request": {"status", "items":
[{"order_item_code", "quantity"}], "recover_inventory", "reason" (≤ 2000 characters),
"claim_reason_type", "add_memo_too", "payment_gateway_cancel"}}`` → ``{"return": {"claim_code",
"status", "items", ...}}``.

* ``action="return"`` → ``status: "accepted"`` (반품접수): the goods come back, the merchant completes
  the return in the Cafe24 admin and Cafe24 refunds the items then.
* ``action="refund"`` → ``status: "returned"`` (반품완료): Cafe24 completes the return at once and
  refunds each item's value, calculated by Cafe24; ``payment_gateway_cancel: "T"`` asks it to cancel
  the card / real-time transfer payment with the PG at the same time (the shop setting
  ``cafe24_pg_cancel=false`` turns that off, for merchants who cancel at the PG themselves).
  Because Cafe24 decides the amount, a refund whose approved amount differs from the value of the
  items is refused with an explanation instead of refunding a different sum.

Before creating, the order is read with ``GET /api/v2/admin/orders/{order_id}?embed=items,return``
("Retrieve an order"): 404 is an unknown order; the embedded ``return`` claims are searched for the
claim's reference in ``claim_reason`` (the ``reason`` we wrote), and the items give the codes,
quantities and prices (``payment_amount`` when the mall calculates it, else ``product_price`` +
``option_price``). Cafe24 offers no idempotency key, so that look-up is the exactly-once guard; the
shared client never repeats a POST except after a 429, which Cafe24 did not process.
Call limits: the client reads ``X-Api-Call-Limit`` and pauses before the bucket overflows, retries a
429 after ``Retry-After`` (capped); 5xx and a 429 that outlasts the retries are
:class:`PlatformUnavailableError`. Cafe24's 4xx refusals (422 invalid item or quantity) become
:class:`PlatformError` with Cafe24's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from ccms_addon.money import quantize
from ccms_addon.platforms import (PlatformAuthError, PlatformError, PlatformUnavailableError,
                                  ReturnLine, SettlementRequest, SettlementResult,
                                  carries_reference, exact_amount)

from .client import Cafe24Client

ORDER_PATH = "/api/v2/admin/orders/{order_id}"
RETURN_PATH = "/api/v2/admin/orders/{order_id}/return"
#: ``reason`` maximum length (Create an order return)
REASON_MAX = 2000
#: ``claim_reason_type`` I: 기타 (other); the reason text says what the claim was
CLAIM_REASON_TYPE = "I"
#: the currency of a mall that names none
DEFAULT_CURRENCY = "KRW"
#: item ``order_status`` prefixes of items already in a cancellation, return or exchange
CLAIMED_STATUS_PREFIXES = ("C", "R", "E")
#: item ``order_status`` codes before shipping: those are cancelled, not returned
UNSHIPPED_STATUSES = frozenset({"N00", "N01", "N02", "N03", "N10", "N20", "N21", "N22"})


def settle_claim(client: Cafe24Client, *, shop_no: str, request: SettlementRequest,
                 pg_cancel: bool = True) -> SettlementResult:
    """Create (or find) the Cafe24 return for ``request``; see the module docstring."""
    request.check()
    order_id = request.platform_order_id.strip()
    answer = client.get(ORDER_PATH.format(order_id=quote(order_id, safe="")),
                        {"shop_no": shop_no, "embed": "items,return"})
    if answer is None:
        raise PlatformError(f"Cafe24 has no order {order_id} in this mall (shop no. {shop_no}): "
                            "nothing was refunded or returned")
    order = answer.get("order") if isinstance(answer, dict) else None
    if not isinstance(order, dict):
        raise PlatformUnavailableError("Cafe24 answered the order without an 'order' object")
    existing = find_existing(order, request.reference)
    if existing is not None:
        return existing
    currency = str(order.get("currency") or DEFAULT_CURRENCY).upper()
    if currency != request.currency.upper():
        raise PlatformError(f"order {order_id} is in {currency}, the claim is in {request.currency}")
    items = {str(item.get("order_item_code")): item for item in order.get("items") or []
             if isinstance(item, dict) and item.get("order_item_code")}
    lines = _lines(order_id, items, request.lines)
    value = quantize(sum((unit_value(items[line.platform_line_id]) * line.quantity
                          for line in lines), Decimal(0)), currency)
    if request.amount is not None and request.amount > value:
        raise PlatformError(
            f"the refund of {exact_amount(request.amount, currency)} {currency} is more than the "
            f"{exact_amount(value, currency)} {currency} the returned items of order {order_id} are worth")
    if (request.action == "refund" and request.amount is not None
            and request.amount < value):
        raise PlatformError(
            f"Cafe24 refunds the full value of returned items ({exact_amount(value, currency)} "
            f"{currency} for these items of order {order_id}) and its API takes no amount, so a "
            f"refund of {exact_amount(request.amount, currency)} {currency} cannot be made through it: "
            "settle the difference in the Cafe24 admin, or approve the items' value")
    refund = request.action == "refund"
    body_request: dict[str, Any] = {
        "status": "returned" if refund else "accepted",
        "recover_inventory": "T" if request.restock else "F",
        "add_memo_too": "T",
        "claim_reason_type": CLAIM_REASON_TYPE,
        "reason": reason_for(request, currency),
        "items": [{"order_item_code": line.platform_line_id, "quantity": line.quantity}
                  for line in lines],
    }
    if refund:
        body_request["payment_gateway_cancel"] = "T" if pg_cancel else "F"
    try:
        created = client.post(RETURN_PATH.format(order_id=quote(order_id, safe="")),
                              {"shop_no": int(shop_no), "request": body_request})
    except (PlatformUnavailableError, PlatformAuthError):
        raise
    except PlatformError as exc:
        raise PlatformError(f"Cafe24 refused the return of order {order_id}: {exc}") from None
    claim = created.get("return") if isinstance(created, dict) else None
    if isinstance(claim, list):  # the bulk endpoint's shape, should a proxy answer with it
        claim = claim[0] if claim else None
    if not isinstance(claim, dict) or not claim.get("claim_code"):
        raise PlatformUnavailableError("Cafe24 answered the return without a claim_code")
    claim_code = str(claim["claim_code"])
    if refund:
        return SettlementResult(
            action="refund", platform_id=claim_code, status="created", amount=value,
            detail=f"Cafe24 completed return {claim_code} on order {order_id} and refunds the "
                   f"items' value ({exact_amount(value, currency)} {currency}, as Cafe24 calculates it)"
                   + (" through the payment gateway" if pg_cancel else
                      "; cancel the payment at the PG yourself")
                   + ("; the items are back in stock." if request.restock else "."))
    return SettlementResult(
        action="return", platform_id=claim_code, status="created",
        detail=f"Cafe24 return {claim_code} is accepted on order {order_id}: complete it in the "
               "Cafe24 admin when the items arrive, and Cafe24 refunds them then"
               + (f" (approved: {exact_amount(request.amount, currency)} {currency})."
                  if request.amount is not None else "."))








def reason_for(request: SettlementRequest, currency: str) -> str:
    """The reference first (so truncation never cuts it), the approved amount, then the reason."""
    parts = [request.reference]
    if request.amount is not None:
        parts.append(f"approved {exact_amount(request.amount, currency)} {currency}")
    reason = " ".join(request.reason.split())
    text = " · ".join(parts) + (f": {reason}" if reason else "")
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def find_existing(order: Mapping[str, Any], reference: str) -> SettlementResult | None:
    """The order's return claim whose reason carries ``reference``, as ``already_existed``."""
    claims = order.get("return") or []
    if isinstance(claims, dict):
        claims = [claims]
    for claim in claims:
        if not isinstance(claim, dict) or not carries_reference(claim.get("claim_reason"), reference):
            continue
        status = str(claim.get("status") or "")
        withdrawn = str(claim.get("undone") or "").upper() == "T"
        return SettlementResult(
            action="refund" if status == "returned" else "return",
            platform_id=str(claim.get("claim_code") or ""), status="already_existed",
            detail=f"Cafe24 return {claim.get('claim_code')} ({status or 'unknown status'}"
                   + (", withdrawn" if withdrawn else "")
                   + f") on order {order.get('order_id')} already carries {reference}; nothing new "
                     "was created.")
    return None


def unit_value(item: Mapping[str, Any]) -> Decimal:
    """What one unit of an item was paid: ``payment_amount / quantity`` where the mall calculates
    per-item payments, else the sale price plus the option's surcharge."""
    try:
        quantity = int(item.get("quantity") or 0)
        if item.get("payment_amount") not in (None, "") and quantity > 0:
            return Decimal(str(item["payment_amount"])) / quantity
        return (Decimal(str(item.get("product_price") or 0))
                + Decimal(str(item.get("option_price") or 0)))
    except (InvalidOperation, ValueError):
        raise PlatformUnavailableError(
            f"Cafe24 item {item.get('order_item_code')} came with an unreadable price") from None


def _lines(order_id: str, items: Mapping[str, Mapping[str, Any]],
           wanted: Sequence[ReturnLine]) -> list[ReturnLine]:
    """The items to return, checked: known, shipped, not already claimed, not more than ordered.
    No lines means every item still returnable."""
    if not wanted:
        lines = [ReturnLine(code, int(item.get("quantity") or 0)) for code, item in items.items()
                 if _returnable(item) and int(item.get("quantity") or 0) > 0]
        if not lines:
            raise PlatformError(f"no item of order {order_id} can be returned: every item is "
                                "either not shipped yet or already cancelled, returned or exchanged")
        return lines
    totals: dict[str, int] = {}
    for line in wanted:
        totals[line.platform_line_id] = totals.get(line.platform_line_id, 0) + line.quantity
    for code, quantity in totals.items():
        item = items.get(code)
        if item is None:
            raise PlatformError(f"order {order_id} has no item {code}")
        status = str(item.get("order_status") or "").upper()
        if status.startswith(CLAIMED_STATUS_PREFIXES):
            raise PlatformError(f"item {code} of order {order_id} is already in a cancellation, "
                                f"return or exchange ({status})")
        if status in UNSHIPPED_STATUSES:
            raise PlatformError(f"item {code} of order {order_id} has not shipped yet ({status}): "
                                "cancel it in the Cafe24 admin instead of returning it")
        if quantity > int(item.get("quantity") or 0):
            raise PlatformError(f"item {code} of order {order_id}: {quantity} to return but only "
                                f"{item.get('quantity')} ordered")
    return [ReturnLine(code, quantity) for code, quantity in totals.items()]


def _returnable(item: Mapping[str, Any]) -> bool:
    status = str(item.get("order_status") or "").upper()
    return not status.startswith(CLAIMED_STATUS_PREFIXES) and status not in UNSHIPPED_STATUSES
