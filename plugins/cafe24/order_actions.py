"""Cancelling an order, or sending its goods again, on Cafe24 through the Admin API.

Endpoints (developers.cafe24.com/docs/api/admin, Order section; bodies are ``{"shop_no": N,
"request": {...}}`` like every Cafe24 write):

* "Retrieve an order": ``GET /api/v2/admin/orders/{order_id}?embed=items,cancellation,exchange``
  — 404 for an unknown order; the order's ``canceled`` flag, its items (``order_item_code``,
  ``quantity``, ``order_status``: N00–N22 before shipping, N30 in transit, N40/N50 delivered,
  C/R/E prefixes already in a cancellation, return or exchange) and its cancellation and
  exchange claims (``claim_code``, ``claim_reason``, ``status``, ``items``, ``undone``).
* "Create an order cancellation" (Orders cancellation, scope ``mall.write_order``):
  ``POST /api/v2/admin/orders/{order_id}/cancellation`` with ``status`` (``canceled`` 취소완료,
  which completes the refund — ``payment_gateway_cancel: "T"`` cancels the card or real-time
  transfer payment at the PG at once — or ``canceling`` 취소처리중, which leaves the refund to the
  merchant), ``recover_inventory``, ``add_memo_too``, ``reason`` (≤ 2000 characters),
  ``claim_reason_type`` and ``items [{order_item_code, quantity}]`` → ``{"cancellation":
  {"claim_code", "status", "items"}}``. It cancels "an order before shipping": a shipped item
  is refused here, before the call. The reference is written first in ``reason`` and looked
  for in the claims' ``claim_reason`` (Cafe24 takes no idempotency key).
* a resend is a same-product exchange, "Create an order exchange": ``POST
  /api/v2/admin/orders/{order_id}/exchange`` with ``status: "accepted"`` (교환접수),
  ``same_product: "T"``, ``recover_inventory``, ``add_memo_too`` and ``items
  [{order_item_code, quantity}]`` → ``{"exchange": {"claim_code", "status", "items",
  "exchanged_items"}}``: Cafe24 ships the same items again, and the merchant completes the
  exchange in the admin. An exchange carries no reason, so the reference lives in the order's
  admin memos ("Create an order memo": ``POST /api/v2/admin/orders/{order_id}/memos`` with
  ``content`` ≤ 1000 characters; "Retrieve a list of order memos": ``GET`` the same path →
  ``{"memos": [{"memo_no", "content", ...}]}``): a memo naming the reference is written before
  the exchange, and one naming the reference and the exchange's claim code after it. A retry
  that finds the first without the second adopts the latest exchange still standing with
  exactly the asked items (any, when none were named), if there is one, instead of creating
  another.

Cafe24 has no "notify the customer" switch on these calls; the mall's own notification settings
apply. Errors as :mod:`.settlement`: 4xx refusals are :class:`PlatformError` with Cafe24's
message, 5xx and call-limit exhaustion :class:`PlatformUnavailableError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ccms_addon.platforms import (OrderActionRequest, OrderActionResult, PlatformAuthError,
                                  PlatformError, PlatformUnavailableError, ReturnLine,
                                  carries_reference)

from .client import Cafe24Client
from .settlement import CLAIMED_STATUS_PREFIXES, CLAIM_REASON_TYPE, ORDER_PATH, UNSHIPPED_STATUSES

CANCELLATION_PATH = "/api/v2/admin/orders/{order_id}/cancellation"
EXCHANGE_PATH = "/api/v2/admin/orders/{order_id}/exchange"
MEMOS_PATH = "/api/v2/admin/orders/{order_id}/memos"
#: ``reason`` maximum length (Create an order cancellation)
REASON_MAX = 2000
#: ``content`` maximum length (Create an order memo)
MEMO_MAX = 1000


def order_action(client: Cafe24Client, *, shop_no: str, request: OrderActionRequest,
                 pg_cancel: bool = True) -> OrderActionResult:
    """Cancel ``request``'s order or exchange its items for the same ones; see the module
    docstring. ``pg_cancel=False`` leaves the payment at the PG for the merchant to cancel."""
    request.check()
    order_id = request.platform_order_id.strip()
    path_id = quote(order_id, safe="")
    answer = client.get(ORDER_PATH.format(order_id=path_id),
                        {"shop_no": shop_no, "embed": "items,cancellation,exchange"})
    if answer is None:
        raise PlatformError(f"Cafe24 has no order {order_id} in this mall (shop no. {shop_no}): "
                            "nothing was done")
    order = answer.get("order") if isinstance(answer, dict) else None
    if not isinstance(order, dict):
        raise PlatformUnavailableError("Cafe24 answered the order without an 'order' object")
    items = {str(item.get("order_item_code")): item for item in order.get("items") or []
             if isinstance(item, dict) and item.get("order_item_code")}
    if request.action == "cancel":
        return _cancel(client, shop_no, order_id, order, items, request, pg_cancel)
    return _resend(client, shop_no, order_id, order, items, request)


def _post(client: Cafe24Client, path: str, body: Mapping[str, Any], what: str) -> Any:
    """POST, with Cafe24's refusal (a 4xx) named after what was asked."""
    try:
        return client.post(path, body)
    except (PlatformUnavailableError, PlatformAuthError):
        raise
    except PlatformError as exc:
        raise PlatformError(f"Cafe24 refused {what}: {exc}") from None


def text_for(request: OrderActionRequest, limit: int, middle: str = "") -> str:
    """The reference first (so truncation never cuts it), an optional middle part, the reason."""
    reason = " ".join(request.reason.split())
    head = request.reference + (f" · {middle}" if middle else "")
    text = f"{head}: {reason}" if reason else head
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _claims(order: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    claims = order.get(key) or []
    if isinstance(claims, dict):
        claims = [claims]
    return [claim for claim in claims if isinstance(claim, dict)]


def _status(item: Mapping[str, Any]) -> str:
    return str(item.get("order_status") or "").upper()


# --------------------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------------------


def _cancel(client: Cafe24Client, shop_no: str, order_id: str, order: Mapping[str, Any],
            items: Mapping[str, Mapping[str, Any]], request: OrderActionRequest,
            pg_cancel: bool) -> OrderActionResult:
    for claim in _claims(order, "cancellation"):
        if carries_reference(claim.get("claim_reason"), request.reference):
            return OrderActionResult(
                action="cancel", platform_id=str(claim.get("claim_code") or order_id),
                status="already_existed",
                detail=f"Cafe24 cancellation {claim.get('claim_code')} "
                       f"({claim.get('status') or 'unknown status'}) of order {order_id} already "
                       f"carries {request.reference}; nothing new was done.")
    if str(order.get("canceled") or "").upper() == "T":
        return OrderActionResult(
            action="cancel", platform_id=order_id, status="already_existed",
            detail=f"Cafe24 order {order_id} is already cancelled; nothing new was done.")
    shipped = [code for code, item in items.items()
               if not _status(item).startswith(CLAIMED_STATUS_PREFIXES)
               and _status(item) not in UNSHIPPED_STATUSES]
    if shipped:
        raise PlatformError(f"order {order_id} has shipped items ({', '.join(sorted(shipped))}): "
                            "Cafe24 cancels only before shipping; return them instead")
    lines = [ReturnLine(code, int(item.get("quantity") or 0)) for code, item in items.items()
             if _status(item) in UNSHIPPED_STATUSES and int(item.get("quantity") or 0) > 0]
    if not lines:
        raise PlatformError(f"order {order_id} has no item left to cancel: every item is already "
                            "in a cancellation, return or exchange")
    body_request: dict[str, Any] = {
        "status": "canceled" if request.refund else "canceling",
        "payment_gateway_cancel": "T" if request.refund and pg_cancel else "F",
        "recover_inventory": "T" if request.restock else "F",
        "add_memo_too": "T",
        "claim_reason_type": CLAIM_REASON_TYPE,
        "reason": text_for(request, REASON_MAX),
        "items": [{"order_item_code": line.platform_line_id, "quantity": line.quantity}
                  for line in lines],
    }
    created = _post(client, CANCELLATION_PATH.format(order_id=quote(order_id, safe="")),
                    {"shop_no": int(shop_no), "request": body_request},
                    f"the cancellation of order {order_id}")
    claim = created.get("cancellation") if isinstance(created, dict) else None
    if isinstance(claim, list):
        claim = claim[0] if claim else None
    if not isinstance(claim, dict) or not claim.get("claim_code"):
        raise PlatformUnavailableError("Cafe24 answered the cancellation without a claim_code")
    code = str(claim["claim_code"])
    if request.refund:
        detail = (f"Cafe24 cancelled order {order_id} ({code}) and refunds it"
                  + (" through the payment gateway" if pg_cancel
                     else "; cancel the payment at the PG yourself"))
    else:
        detail = (f"Cafe24 accepted the cancellation {code} of order {order_id}; complete it and "
                  "the refund in the Cafe24 admin")
    return OrderActionResult(action="cancel", platform_id=code, status="created",
                             detail=detail + ("; the items are back in stock." if request.restock
                                              else "."))


# --------------------------------------------------------------------------------------------------
# resend: a same-product exchange, its reference in the order's memos
# --------------------------------------------------------------------------------------------------


def _resend(client: Cafe24Client, shop_no: str, order_id: str, order: Mapping[str, Any],
            items: Mapping[str, Mapping[str, Any]], request: OrderActionRequest
            ) -> OrderActionResult:
    memos_path = MEMOS_PATH.format(order_id=quote(order_id, safe=""))
    answer = client.get(memos_path, {"shop_no": shop_no})
    memos = [str(m.get("content") or "") for m in (answer or {}).get("memos") or []
             if isinstance(m, dict)] if isinstance(answer, dict) else []
    done = re.compile(rf"(?<![\w-]){re.escape(request.reference)} · exchange ([\w-]+)")
    for memo in memos:
        match = done.search(memo)
        if match:
            return _existing(match.group(1), order_id, request)
    if any(carries_reference(memo, request.reference) for memo in memos):
        # an earlier attempt wrote its intent: its exchange, if Cafe24 made it, is the latest
        # one still standing with the asked items (any items when none were named)
        wanted: dict[str, int] = {}
        for line in request.lines:
            wanted[line.platform_line_id] = wanted.get(line.platform_line_id, 0) + line.quantity
        for claim in reversed(_claims(order, "exchange")):
            claimed = {str(i.get("order_item_code")): int(i.get("quantity") or 0)
                       for i in claim.get("items") or [] if isinstance(i, dict)}
            if (not wanted or claimed == wanted) and claim.get("claim_code") \
                    and str(claim.get("undone") or "").upper() != "T":
                _memo(client, memos_path, shop_no,
                      text_for(request, MEMO_MAX, f"exchange {claim['claim_code']}"))
                return _existing(str(claim["claim_code"]), order_id, request)
        lines = _lines(order_id, items, request.lines)
    else:
        lines = _lines(order_id, items, request.lines)
        _memo(client, memos_path, shop_no, text_for(request, MEMO_MAX, "resend requested"))
    created = _post(client, EXCHANGE_PATH.format(order_id=quote(order_id, safe="")), {
        "shop_no": int(shop_no), "request": {
            "status": "accepted", "same_product": "T", "recover_inventory": "F",
            "add_memo_too": "F",
            "items": [{"order_item_code": line.platform_line_id, "quantity": line.quantity}
                      for line in lines]}}, f"the exchange of order {order_id}")
    claim = created.get("exchange") if isinstance(created, dict) else None
    if isinstance(claim, list):
        claim = claim[0] if claim else None
    if not isinstance(claim, dict) or not claim.get("claim_code"):
        raise PlatformUnavailableError("Cafe24 answered the exchange without a claim_code")
    code = str(claim["claim_code"])
    _memo(client, memos_path, shop_no, text_for(request, MEMO_MAX, f"exchange {code}"))
    return OrderActionResult(
        action="resend", platform_id=code, status="created",
        detail=f"Cafe24 exchange {code} of order {order_id} is accepted: the same items ship "
               "again; complete the exchange in the Cafe24 admin.")


def _existing(code: str, order_id: str, request: OrderActionRequest) -> OrderActionResult:
    return OrderActionResult(
        action="resend", platform_id=code, status="already_existed",
        detail=f"Cafe24 exchange {code} of order {order_id} already carries {request.reference}; "
               "nothing new was created.")


def _memo(client: Cafe24Client, path: str, shop_no: str, content: str) -> None:
    _post(client, path, {"shop_no": int(shop_no), "request": {"content": content}},
          "the order memo")


def _lines(order_id: str, items: Mapping[str, Mapping[str, Any]],
           wanted: Sequence[ReturnLine]) -> list[ReturnLine]:
    """The items to send again, checked: known, shipped, not in another claim, not more than
    ordered. No lines means every shipped item."""
    def shipped(item: Mapping[str, Any]) -> bool:
        status = _status(item)
        return not status.startswith(CLAIMED_STATUS_PREFIXES) and status not in UNSHIPPED_STATUSES

    if not wanted:
        lines = [ReturnLine(code, int(item.get("quantity") or 0)) for code, item in items.items()
                 if shipped(item) and int(item.get("quantity") or 0) > 0]
        if not lines:
            raise PlatformError(f"order {order_id} has no shipped item to send again")
        return lines
    totals: dict[str, int] = {}
    for line in wanted:
        totals[line.platform_line_id] = totals.get(line.platform_line_id, 0) + line.quantity
    for code, quantity in totals.items():
        item = items.get(code)
        if item is None:
            raise PlatformError(f"order {order_id} has no item {code}")
        if not shipped(item):
            raise PlatformError(f"item {code} of order {order_id} has not shipped or is already in "
                                f"a claim ({_status(item)}): nothing to send again")
        if quantity > int(item.get("quantity") or 0):
            raise PlatformError(f"item {code} of order {order_id}: {quantity} to send again but "
                                f"only {item.get('quantity')} ordered")
    return [ReturnLine(code, quantity) for code, quantity in totals.items()]
