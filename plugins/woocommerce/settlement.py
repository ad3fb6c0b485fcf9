"""Settling an approved guarantee claim on WooCommerce: an order refund through the REST API v3.

Endpoints (developer.woocommerce.com/docs/apis/rest-api/v3/order-refunds/ and WooCommerce's
``WC_REST_Order_Refunds_Controller``):

* ``GET /wp-json/wc/v3/orders/{id}``: the order (404 ``woocommerce_rest_shop_order_invalid_id`` when
  unknown): currency, total, ``line_items`` (``id``, ``quantity``, ``total``, ``taxes [{id,
  total}]``) and ``refunds [{id, reason, total}]`` (totals negative);
* ``GET /wp-json/wc/v3/orders/{id}/refunds``: the refunds with their ``reason``, ``meta_data`` and
  ``line_items`` (refunded quantities are negative);
* ``POST /wp-json/wc/v3/orders/{id}/refunds`` with ``amount`` (a decimal string; it "takes precedence
  over line item totals"), ``reason``, ``line_items [{id, quantity, refund_total, refund_tax [{id,
  refund_total}]}]``, ``meta_data``, ``api_refund`` (refund through the payment gateway; default
  true) and ``api_restock`` (restock the refunded line items; default **true**, so it is always
  sent). WooCommerce answers ``201`` with the refund. ``wc_create_refund`` failures (an amount above
  what remains refundable: "Invalid refund amount.", a gateway that cannot refund automatically)
  come back as HTTP **500** ``woocommerce_rest_cannot_create_order_refund``: the client reads that
  code as a refusal (:class:`PlatformError`), not an outage.

WooCommerce core has no returns: a ``return`` becomes a refund of the lines with ``api_restock``, and
the result's ``action`` says ``refund``. Exactly once: the reference is written in the refund's
``reason`` and in its ``meta_data`` (``ccms_reference``) and looked for before anything is created;
WooCommerce takes no idempotency key. The remaining refundable amount (order total less refunds) is
checked before the POST, so an amount too high never reaches the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ccms_addon.money import quantize
from ccms_addon.platforms import (PlatformError, PlatformUnavailableError, SettlementRequest,
                                  SettlementResult, carries_reference, exact_amount)

from .client import WooCommerceClient

#: the refund meta key that carries the claim's reference
REFERENCE_META_KEY = "ccms_reference"
#: the refund reason is free text; keep it readable in the order notes
REASON_MAX = 500


def settle_claim(client: WooCommerceClient, request: SettlementRequest, *,
                 api_refund: bool = True) -> SettlementResult:
    """Create (or find) the WooCommerce refund for ``request``; see the module docstring."""
    request.check()
    order_id = request.platform_order_id.strip()
    if not (order_id.isascii() and order_id.isdigit()):
        raise PlatformError(f"{order_id!r} is not a WooCommerce order id (they are numbers)")
    order = client.call("GET", f"orders/{order_id}", missing_ok=True)
    if order is None:
        raise PlatformError(f"WooCommerce has no order {order_id} on this site (deleted or "
                            "trashed): nothing was refunded")
    if not isinstance(order, dict):
        raise PlatformUnavailableError(f"WooCommerce answered order {order_id} without an object")
    refunds = client.call("GET", f"orders/{order_id}/refunds", params={"per_page": 100})
    if not isinstance(refunds, list):
        raise PlatformUnavailableError(f"WooCommerce answered the refunds of order {order_id} "
                                       "without a list")
    currency = str(order.get("currency") or "").upper()
    existing = find_existing(order_id, refunds, request.reference, currency)
    if existing is not None:
        return existing
    if currency != request.currency.upper():
        raise PlatformError(f"order {order_id} is in {currency}, the claim is in {request.currency}")
    number = order.get("number") or order_id
    refunded = sum((abs(_decimal(r.get("total"))) for r in order.get("refunds") or []
                    if isinstance(r, dict)), Decimal(0))
    remaining = quantize(_decimal(order.get("total")) - refunded, currency)
    line_items, lines_total = _line_items(order, refunds, request, currency)
    amount = request.amount if request.amount is not None else lines_total
    if amount <= 0:
        raise PlatformError(f"nothing is left to refund on order {number}")
    if amount > remaining:
        raise PlatformError(
            f"the refund of {exact_amount(amount, currency)} {currency} is more than the "
            f"{exact_amount(remaining, currency)} {currency} still refundable on order {number}; lower "
            "the amount or check earlier refunds in WooCommerce > Orders")
    restock = bool(line_items) and (request.restock or request.action == "return")
    body: dict[str, Any] = {
        "amount": exact_amount(amount, currency),
        "reason": reason_for(request),
        "api_refund": api_refund,
        "api_restock": restock,
        "line_items": line_items,
        "meta_data": [{"key": REFERENCE_META_KEY, "value": request.reference}],
    }
    created = client.call("POST", f"orders/{order_id}/refunds", json_body=body)
    if not isinstance(created, dict) or created.get("id") in (None, ""):
        raise PlatformUnavailableError("WooCommerce answered the refund without an id")
    refund_id = str(created["id"])
    refunded_amount = abs(_decimal(created.get("amount", amount)))
    how = "through the payment gateway" if api_refund else "as a manual refund (pay it back yourself)"
    if request.action == "return":
        detail = (f"WooCommerce has no returns: refund {refund_id} of {exact_amount(amount, currency)} "
                  f"{currency} on order {number} was made {how} for the returned lines, which are "
                  "restocked.")
    else:
        detail = (f"WooCommerce refund {refund_id} of {exact_amount(amount, currency)} {currency} on order "
                  f"{number} was made {how}" + ("; the lines are restocked." if restock else "."))
    return SettlementResult(action="refund", platform_id=refund_id, status="created",
                            amount=refunded_amount, detail=detail)








def reason_for(request: SettlementRequest) -> str:
    """The reference first (so truncation never cuts it), then the reason."""
    reason = " ".join(request.reason.split())
    text = f"{request.reference}: {reason}" if reason else request.reference
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def find_existing(order_id: str, refunds: Sequence[Any], reference: str,
                  currency: str = "") -> SettlementResult | None:
    """The refund whose reason or ``ccms_reference`` meta carries ``reference``."""
    for refund in refunds:
        if not isinstance(refund, dict):
            continue
        meta = [m.get("value") for m in refund.get("meta_data") or []
                if isinstance(m, dict) and m.get("key") == REFERENCE_META_KEY]
        if carries_reference(refund.get("reason"), reference) or reference in meta:
            amount = abs(_decimal(refund.get("amount") or refund.get("total")))
            return SettlementResult(
                action="refund", platform_id=str(refund.get("id")), status="already_existed",
                amount=amount,
                detail=f"WooCommerce refund {refund.get('id')} of {amount} {currency} on order {order_id} "
                       f"already carries {reference}; nothing new was created.")
    return None


def _line_items(order: Mapping[str, Any], refunds: Sequence[Any], request: SettlementRequest,
                currency: str) -> tuple[list[dict[str, Any]], Decimal]:
    """The refund's ``line_items`` (each line's share of its total and taxes) and their sum.

    For a return without lines, every line still not refunded is given back.
    """
    lines = {str(line.get("id")): line for line in order.get("line_items") or []
             if isinstance(line, dict) and line.get("id") is not None}
    # what earlier refunds gave back per order line, where the refund's line says which line it
    # refunds (WooCommerce keeps that in the item meta ``_refunded_item_id``, which sites may expose)
    refunded_qty: dict[str, int] = {}
    for refund in refunds:
        for item in (refund.get("line_items") or []) if isinstance(refund, dict) else []:
            if not isinstance(item, dict):
                continue
            source = item.get("refunded_item_id") or next(
                (m.get("value") for m in item.get("meta_data") or []
                 if isinstance(m, dict) and m.get("key") == "_refunded_item_id"), None)
            if source:
                key = str(source)
                refunded_qty[key] = refunded_qty.get(key, 0) + abs(int(item.get("quantity") or 0))
    wanted: dict[str, int] = {}
    for line in request.lines:
        wanted[line.platform_line_id] = wanted.get(line.platform_line_id, 0) + line.quantity
    if not wanted and request.action == "return":
        wanted = {line_id: int(line.get("quantity") or 0) - refunded_qty.get(line_id, 0)
                  for line_id, line in lines.items()}
        wanted = {line_id: q for line_id, q in wanted.items() if q > 0}
        if not wanted:
            raise PlatformError(f"every line of order {order.get('number') or order.get('id')} is "
                                "already refunded")
    items, total = [], Decimal(0)
    for line_id, quantity in wanted.items():
        line = lines.get(line_id)
        if line is None:
            raise PlatformError(f"order {order.get('number') or order.get('id')} has no line "
                                f"{line_id}")
        ordered = int(line.get("quantity") or 0)
        left = ordered - refunded_qty.get(line_id, 0)
        if quantity > left:
            raise PlatformError(f"order {order.get('number') or order.get('id')}, line {line_id}: "
                                f"{quantity} to give back but only {left} of {ordered} not refunded")
        share = Decimal(quantity) / Decimal(ordered) if ordered else Decimal(0)
        line_total = quantize(_decimal(line.get("total")) * share, currency)
        taxes = [{"id": tax.get("id"),
                  "refund_total": exact_amount(quantize(_decimal(tax.get("total")) * share, currency),
                                        currency)}
                 for tax in line.get("taxes") or [] if isinstance(tax, dict) and tax.get("id")]
        items.append({"id": int(line_id) if line_id.isdigit() else line_id, "quantity": quantity,
                      "refund_total": exact_amount(line_total, currency),
                      **({"refund_tax": taxes} if taxes else {})})
        total += line_total + sum((Decimal(t["refund_total"]) for t in taxes), Decimal(0))
    return items, total


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else 0))
    except InvalidOperation:
        raise PlatformUnavailableError(f"WooCommerce answered an amount that is not a number: "
                                       f"{str(value)[:20]!r}") from None
