"""Cancelling an order, or sending its goods again, on WooCommerce through the REST API v3.

Endpoints (developer.woocommerce.com/docs/apis/rest-api/v3 — orders, order notes — and
WooCommerce's ``WC_REST_Orders_Controller``):

* ``GET /wp-json/wc/v3/orders/{id}``: the order (404 when unknown or trashed): ``status``,
  ``currency``, ``total``, ``refunds``, ``line_items`` (``id``, ``product_id``,
  ``variation_id``, ``quantity``, ``name``), ``billing``, ``shipping``, ``customer_id``,
  ``meta_data``.
* a cancel is ``PUT /wp-json/wc/v3/orders/{id}`` with ``status: "cancelled"`` and the reference
  in ``meta_data`` (``ccms_reference``) in the same write, then ``POST
  /wp-json/wc/v3/orders/{id}/notes`` (``note``, ``customer_note: false``: a private note; the
  reason staff wrote is not the customer's to read, and WooCommerce's own "cancelled order"
  e-mail settings decide who hears of it, so ``notify_customer`` has no switch here). Only
  ``pending``, ``on-hold``, ``processing`` and ``failed`` orders are cancelled (a
  ``completed`` order has shipped). WooCommerce keeps the money on a
  status change: with ``refund``, what is left to refund (total less refunds) is refunded first
  through :func:`.settlement.settle_claim` — the same reference, so a retry finds it — with
  ``api_restock: false``, because WooCommerce puts a cancelled order's stock back itself
  (``wc_maybe_increase_stock_levels`` on the ``cancelled`` transition): a cancel without restock
  cannot be done through the API and is refused before any call. An order already
  ``cancelled`` is the goal reached.
* a resend is a replacement order: ``POST /wp-json/wc/v3/orders`` with ``parent_id`` (the
  original order), ``status: "processing"``, ``set_paid: true``, ``customer_id``, ``billing``,
  ``shipping``, ``line_items [{product_id, variation_id, quantity, subtotal: "0", total: "0"}]``,
  ``meta_data [{key: "ccms_reference", value}]`` and a ``customer_note``; WooCommerce takes no
  idempotency key, so the replacement is looked for first with ``GET /wp-json/wc/v3/orders?
  parent={id}`` (the collection's ``parent`` filter) and its ``meta_data``.

Errors: 4xx refusals are :class:`PlatformError` (the client's mapping), 5xx and timeouts
:class:`PlatformUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ccms_addon.money import quantize
from ccms_addon.platforms import (OrderActionRequest, OrderActionResult, PlatformError,
                                  PlatformUnavailableError, SettlementRequest, carries_reference)

from . import settlement
from .client import WooCommerceClient
from .settlement import _decimal

#: the order meta key that carries an action's reference
REFERENCE_META_KEY = settlement.REFERENCE_META_KEY
#: statuses WooCommerce lets a shop cancel: not yet shipped (``completed``) nor closed
CANCELLABLE = frozenset({"pending", "on-hold", "processing", "failed"})
#: note text stays readable in WooCommerce > Orders
NOTE_MAX = 500


def order_action(client: WooCommerceClient, request: OrderActionRequest, *,
                 api_refund: bool = True) -> OrderActionResult:
    """Cancel ``request``'s order or place its replacement; see the module docstring."""
    request.check()
    order_id = request.platform_order_id.strip()
    if not (order_id.isascii() and order_id.isdigit()):
        raise PlatformError(f"{order_id!r} is not a WooCommerce order id (they are numbers)")
    if request.action == "cancel" and not request.restock:
        raise PlatformError("WooCommerce puts a cancelled order's items back in stock itself: a "
                            "cancel without restock cannot be made through its API")
    order = client.call("GET", f"orders/{order_id}", missing_ok=True)
    if order is None:
        raise PlatformError(f"WooCommerce has no order {order_id} on this site (deleted or "
                            "trashed): nothing was done")
    if not isinstance(order, dict):
        raise PlatformUnavailableError(f"WooCommerce answered order {order_id} without an object")
    if request.action == "cancel":
        return _cancel(client, order_id, order, request, api_refund)
    return _resend(client, order_id, order, request)


def note_for(request: OrderActionRequest, what: str) -> str:
    """The reference first (so truncation never cuts it), what was done, then the reason."""
    reason = " ".join(request.reason.split())
    text = f"{request.reference}: {what}" + (f" ({reason})" if reason else "")
    return text if len(text) <= NOTE_MAX else text[: NOTE_MAX - 1] + "…"


def _carries(meta: Any, reference: str) -> bool:
    return any(isinstance(m, dict) and m.get("key") == REFERENCE_META_KEY
               and carries_reference(m.get("value"), reference) for m in meta or [])


# --------------------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------------------


def _cancel(client: WooCommerceClient, order_id: str, order: Mapping[str, Any],
            request: OrderActionRequest, api_refund: bool) -> OrderActionResult:
    number = order.get("number") or order_id
    status = str(order.get("status") or "")
    if status == "cancelled":
        if _carries(order.get("meta_data"), request.reference):
            _note_once(client, order_id, request, "order cancelled from the add-on")
        return OrderActionResult(
            action="cancel", platform_id=order_id, status="already_existed",
            detail=f"WooCommerce order {number} is already cancelled; nothing new was done.")
    # a full refund turns an order "refunded": an earlier attempt of this cancel may have done it
    if status not in CANCELLABLE and not (request.refund and status == "refunded"):
        raise PlatformError(f"WooCommerce order {number} is {status or 'in an unknown status'}: "
                            "only pending, on-hold, processing or failed orders can be cancelled")
    refunded_now = (_refund_rest(client, order_id, order, request, api_refund)
                    if request.refund and status != "refunded" else None)
    client.call("PUT", f"orders/{order_id}", json_body={
        "status": "cancelled",
        "meta_data": [{"key": REFERENCE_META_KEY, "value": request.reference}]})
    _note_once(client, order_id, request, "order cancelled from the add-on")
    detail = f"WooCommerce order {number} is cancelled and its items are back in stock"
    if refunded_now is not None:
        detail += f"; {refunded_now}"
    return OrderActionResult(action="cancel", platform_id=order_id, status="created",
                             detail=detail + ".")


def _refund_rest(client: WooCommerceClient, order_id: str, order: Mapping[str, Any],
                 request: OrderActionRequest, api_refund: bool) -> str | None:
    """Refund what is left of the order (idempotent by the reference); None when nothing was
    paid or nothing is left."""
    currency = str(order.get("currency") or "").upper()
    refunded = sum((abs(_decimal(r.get("total"))) for r in order.get("refunds") or []
                    if isinstance(r, dict)), Decimal(0))
    left = quantize(_decimal(order.get("total")) - refunded, currency)
    if not order.get("date_paid") or left <= 0:
        return None
    result = settlement.settle_claim(client, SettlementRequest(
        platform_order_id=order_id, action="refund", reference=request.reference,
        currency=currency, amount=left, reason=f"cancelled: {request.reason}".strip(": "),
        restock=False), api_refund=api_refund)
    return result.detail.rstrip(".")


def _note_once(client: WooCommerceClient, order_id: str, request: OrderActionRequest,
               what: str) -> None:
    notes = client.call("GET", f"orders/{order_id}/notes")
    if isinstance(notes, list) and any(isinstance(n, dict) and carries_reference(n.get("note"),
                                                                                request.reference)
                                       for n in notes):
        return
    client.call("POST", f"orders/{order_id}/notes", json_body={
        "note": note_for(request, what), "customer_note": False})


# --------------------------------------------------------------------------------------------------
# resend: a replacement order at no charge
# --------------------------------------------------------------------------------------------------


def _resend(client: WooCommerceClient, order_id: str, order: Mapping[str, Any],
            request: OrderActionRequest) -> OrderActionResult:
    number = order.get("number") or order_id
    for child in client.list_all("orders", {"parent": order_id, "status": "any"}):
        if _carries(child.get("meta_data"), request.reference):
            return OrderActionResult(
                action="resend", platform_id=str(child.get("id")), status="already_existed",
                detail=f"WooCommerce replacement order {child.get('number') or child.get('id')} "
                       f"for order {number} already carries {request.reference}; nothing new was "
                       "created.")
    status = str(order.get("status") or "")
    if status != "completed":
        raise PlatformError(f"WooCommerce order {number} is {status or 'in an unknown status'}, "
                            "not completed: only a shipped order is sent again")
    lines = {str(line.get("id")): line for line in order.get("line_items") or []
             if isinstance(line, dict) and line.get("id") is not None}
    wanted: dict[str, int] = {}
    for line in request.lines:
        wanted[line.platform_line_id] = wanted.get(line.platform_line_id, 0) + line.quantity
    if not wanted:
        wanted = {key: int(line.get("quantity") or 0) for key, line in lines.items()
                  if int(line.get("quantity") or 0) > 0}
    items = []
    for key, quantity in wanted.items():
        line = lines.get(key)
        if line is None:
            raise PlatformError(f"order {number} has no line {key}")
        if quantity > int(line.get("quantity") or 0):
            raise PlatformError(f"order {number}, line {key}: {quantity} to send again but only "
                                f"{line.get('quantity')} ordered")
        item = {"product_id": line.get("product_id"), "quantity": quantity,
                "subtotal": "0", "total": "0"}
        if line.get("variation_id"):
            item["variation_id"] = line["variation_id"]
        items.append(item)
    if not items:
        raise PlatformError(f"order {number} has no line to send again")
    body: dict[str, Any] = {
        "parent_id": int(order_id), "status": "processing", "set_paid": True,
        "currency": order.get("currency"), "customer_id": order.get("customer_id") or 0,
        "billing": order.get("billing") or {}, "shipping": order.get("shipping") or {},
        "line_items": items, "customer_note": note_for(request, f"replacement for order {number}"),
        "meta_data": [{"key": REFERENCE_META_KEY, "value": request.reference}],
    }
    created = client.call("POST", "orders", json_body=body)
    if not isinstance(created, dict) or created.get("id") in (None, ""):
        raise PlatformUnavailableError("WooCommerce answered the replacement order without an id")
    return OrderActionResult(
        action="resend", platform_id=str(created["id"]), status="created",
        detail=f"WooCommerce replacement order {created.get('number') or created['id']} (no "
               f"charge) ships the items of order {number} again; fulfil it as usual.")
