"""Listing a WooCommerce site's orders for the backfill and the reconciliation (REST API v3).

What WooCommerce's REST API offers for ``GET /wp-json/wc/v3/orders`` (``WC_REST_CRUD_Controller::
get_collection_params`` and ``prepare_objects_query``): ``per_page`` 1–100, ``page``,
``modified_after`` (exclusive, an ISO 8601 date), ``dates_are_gmt`` (compare against
``post_modified_gmt``), ``orderby=modified`` with ``order=asc`` (WooCommerce appends ``ID`` to the
sort "for consistency with pagination"), and the ``X-WP-Total`` / ``X-WP-TotalPages`` headers (and
``Link: rel="next"``). The default ``status=any`` lists every order but the trashed.

Page numbers alone are not a safe way through a listing sorted by modification time: an order
modified while the listing runs moves to its end, the orders behind its old place move up one, and
the page boundary skips one of them. So the listing is keyed by time: after each page it asks again
with ``modified_after`` one second before the last order's ``date_modified_gmt`` (seconds are the
resolution), ``page=1``; the orders of that last second are read twice (no-ops in the store). Only
when a whole page shares one second (a bulk status change) does it turn to the next page of that
second.

WooCommerce has no rate-limit headers of its own; hosts and security plugins that rate-limit answer
429 with ``Retry-After``, which the shared client honours.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ccms_addon.platforms import (CursorInvalidError, OrderPage, PayloadInvalidError,
                                  PlatformUnavailableError, ShopContext)

from .client import MAX_PER_PAGE, WooCommerceClient

ORDERS = "orders"
CURSOR_PREFIX = "woocommerce:1:"
GMT_FORMAT = "%Y-%m-%dT%H:%M:%S"


def encode_cursor(state: Mapping[str, Any]) -> str:
    raw = json.dumps(dict(state), separators=(",", ":"), sort_keys=True).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_PREFIX):
        raise CursorInvalidError("not a cursor of this WooCommerce adapter version")
    text = cursor[len(CURSOR_PREFIX):]
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if state.get("after") is not None:
            _parse_gmt(state["after"])
        if int(state["page"]) < 1:
            raise ValueError
    except (ValueError, binascii.Error, KeyError, TypeError, AttributeError):
        raise CursorInvalidError("a WooCommerce cursor that cannot be read") from None
    return state


def _parse_gmt(value: Any) -> datetime:
    return datetime.strptime(str(value), GMT_FORMAT).replace(tzinfo=timezone.utc)


def _gmt(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(GMT_FORMAT)


def list_orders(shop: ShopContext, client: WooCommerceClient, *,
                updated_since: datetime | None, cursor: str | None) -> OrderPage:
    """One page of the site's orders modified at or after ``updated_since``."""
    from .adapter import _load, order_record
    from .schemas import WooCommerceOrderPayloadSchema

    if cursor:
        state = decode_cursor(cursor)
    else:
        after = _gmt(updated_since - timedelta(seconds=1)) if updated_since is not None else None
        state = {"after": after, "page": 1, "read": 0}
    params: dict[str, Any] = {"orderby": "modified", "order": "asc", "dates_are_gmt": "true",
                              "per_page": MAX_PER_PAGE, "page": state["page"]}
    if state.get("after"):
        params["modified_after"] = state["after"]
    response = client.send("GET", ORDERS, params=params)
    items = client._json_list(response, ORDERS)
    schema = WooCommerceOrderPayloadSchema()
    try:
        loaded = [_load(schema, item, "GET orders") for item in items]
    except PayloadInvalidError as exc:
        raise PlatformUnavailableError(f"WooCommerce answered an unexpected order: {exc}") from None
    records = tuple(order_record(order) for order in loaded)
    read = int(state.get("read") or 0)
    total = _header_int(response.headers.get("X-WP-Total"))
    estimate = read + total - (int(state["page"]) - 1) * MAX_PER_PAGE if total is not None else None
    pages = _header_int(response.headers.get("X-WP-TotalPages"))
    if len(items) < MAX_PER_PAGE or (pages is not None and state["page"] >= pages):
        return OrderPage(records, None, estimate)
    last = max((o["date_modified_gmt"] or o["date_created_gmt"] for o in loaded), default=None)
    if last is None:
        raise PlatformUnavailableError("WooCommerce listed orders without a modification date")
    new_after = _gmt(last - timedelta(seconds=1))
    if state.get("after") is None or _parse_gmt(new_after) > _parse_gmt(state["after"]):
        # the orders of the last second are read again on the next page: no-ops in the store
        repeat = sum(1 for o in loaded if (o["date_modified_gmt"] or o["date_created_gmt"]) == last)
        nxt = {"after": new_after, "page": 1, "read": read + len(items) - repeat}
    else:  # the whole page is one second: the next page of that second
        nxt = {"after": state["after"], "page": int(state["page"]) + 1, "read": read + len(items)}
    return OrderPage(records, encode_cursor(nxt), estimate)


def _header_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
