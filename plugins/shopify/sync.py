"""Listing a Shopify shop's orders for the backfill and the reconciliation (GraphQL Admin API).

Why GraphQL and not REST ``orders.json`` with ``Link: <…page_info=…>`` cursors: the REST Admin API
is legacy since 2024-10-01 and "starting April 1 2025, all new public apps submitted to the App Store
… must only use GraphQL" (shopify.dev/changelog, "Starting April 2025, new public apps submitted to
Shopify app store must use GraphQL"); this add-on is a new public app. The webhooks still carry the
REST Order resource (that is the webhook format, not the REST API); :func:`order_record` builds the
same :class:`~ccms_addon.platforms.OrderRecord` from the GraphQL Order, ids included: GraphQL's
``legacyResourceId`` is the REST id, so a backfilled order and a webhook's converge on one row.

Two ways to read, chosen per listing and recorded in the cursor:

* **pages** — ``orders(first:, after:, sortKey: UPDATED_AT, query: "updated_at:>='…'")``
  (``OrderSortKeys`` has ``UPDATED_AT``; the search syntax is Shopify's ``field:>=value``). The
  GraphQL Admin API limits by calculated query cost (shopify.dev, "GraphQL Admin API rate limits"):
  an object costs 1, a connection 2 plus the objects it may return; a single query may not ask for
  more than 1,000 points (``MAX_COST_EXCEEDED``); the app-and-shop bucket (``throttleStatus``:
  ``maximumAvailable``, ``currentlyAvailable``, ``restoreRate`` — 100 points/s on a standard plan,
  1,000 on Plus) must hold a query's requested cost before it runs, the difference to its actual cost
  is refunded, and a refused query is answered 200 with ``errors[].extensions.code == "THROTTLED"``.
  This module waits *before* a query until the bucket (as last reported, restored since at
  ``restoreRate``) holds the query's last requested cost, so it slows down instead of being refused,
  and sizes the page so its requested cost stays under 1,000 (halving on ``MAX_COST_EXCEEDED``,
  doubling while far below). Shopify limits pagination to 25,000 objects (shopify.dev, "Shopify API
  limits"), so a long listing restarts its connection from the high-water mark (the last
  ``updatedAt`` read) every :data:`CHAIN_OBJECTS` orders; the cursor never grows stale.
* **bulk** — for history (no ``updated_since``, or one older than :data:`BULK_WHEN_OLDER_THAN`),
  ``bulkOperationRunQuery`` (one bulk query per shop at a time; results as JSONL at ``url`` for 7
  days; nested connections become lines with ``__parentId``, grouped under their parent with
  ``groupObjects: true``). At the cost rates above a paginated history of 50,000 orders of ~20
  points each takes hours on a standard plan; the bulk export is not metered by query cost. The
  JSONL is read in pages with HTTP ``Range`` requests from the byte offset kept in the cursor (the
  signed URL is fetched without the access token: it is on another host). When the file is read,
  the listing continues in *pages* mode from the export's ``createdAt`` (less an overlap), so what
  changed while Shopify exported is read too.

Reading orders older than 60 days needs the ``read_all_orders`` scope (without it Shopify returns
only the last 60 days).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from marshmallow import EXCLUDE, Schema, ValidationError, fields

from ccms_addon.platforms import (CursorInvalidError, CustomerRecord, FinancialStatus,
                                  FulfillmentStatus, OrderLineRecord, OrderPage, OrderRecord,
                                  PlatformError, PlatformUnavailableError, RefundRecord,
                                  ShopContext)

from .client import ShopifyAdminClient, ShopifyThrottledError, QueryCostExceededError
from .schemas import Money, ShopifyId, UtcDateTime, describe_errors, parse_utc_datetime

log = logging.getLogger(__name__)

#: orders asked per page at first; adapted to the requested cost Shopify reports
FIRST_ORDERS = 10
MAX_ORDERS = 250
#: line items and refunds read with each order; an order with more lines gets them in a follow-up
LINES_PER_ORDER = 10
REFUNDS_PER_ORDER = 5
#: line items per follow-up query of an order with more than LINES_PER_ORDER (cost ~500)
MORE_LINES = 100
#: refunds read by the follow-up query of an order with REFUNDS_PER_ORDER of them (cost ~400)
MORE_REFUNDS = 100
#: the most a single query may request (Shopify refuses more before running it)
MAX_QUERY_COST = 1000
#: double the page while the requested cost is below this share of the limit
GROW_BELOW = 0.4
#: restart the connection from the high-water mark after this many orders (Shopify's pagination
#: limit is 25,000 objects)
CHAIN_OBJECTS = 20_000
#: history older than this is read with a bulk operation
BULK_WHEN_OLDER_THAN = timedelta(days=14)
#: orders per page read from the bulk export's JSONL
BULK_PAGE_ORDERS = 500
#: how long one call waits for a running bulk operation before it returns an empty page, and
#: the poll interval while it waits
BULK_POLL_WAIT = 20.0
BULK_POLL_INTERVAL = 2.0
#: what changed while Shopify exported is read again from the export's start less this
CATCH_UP_OVERLAP = timedelta(minutes=2)
#: the longest one wait for the cost bucket (a full bucket of a standard plan restores in 20 s)
WAIT_CAP = 30.0
#: added to every computed wait, so the bucket surely holds the cost (rounding, clock skew)
SAFETY_WAIT = 0.05
#: attempts of one query that Shopify answers THROTTLED (the waits are the bucket's)
THROTTLED_ATTEMPTS = 5
#: bulk operation API version from which ``groupObjects`` is an argument (before it, grouping was
#: the only behaviour)
GROUP_OBJECTS_SINCE = "2025-10"
#: (connect, read) timeouts for the JSONL download, and the bytes asked per Range request (a
#: page of 500 orders is ~1 MB)
DOWNLOAD_TIMEOUT = (5.0, 60.0)
RANGE_BYTES = 2 << 20
CURSOR_PREFIX = "shopify:1:"

_ORDER_FIELDS = """
  id legacyResourceId name createdAt updatedAt processedAt cancelledAt
  email phone currencyCode customerLocale displayFinancialStatus displayFulfillmentStatus
  totalPriceSet { shopMoney { amount currencyCode } }
  customer { legacyResourceId firstName lastName updatedAt
             defaultEmailAddress { emailAddress } defaultPhoneNumber { phoneNumber } }
  billingAddress { name }
  shippingAddress { countryCodeV2 }
  refunds(first: %(refunds)d) { legacyResourceId note createdAt
                                totalRefundedSet { shopMoney { amount currencyCode }
                                                   presentmentMoney { amount currencyCode } } }
"""
_LINE_FIELDS = """
  id title name quantity sku
  originalUnitPriceSet { shopMoney { amount currencyCode } }
  product { legacyResourceId }
  variant { legacyResourceId }
"""

ORDERS_QUERY = """
query ccmsOrders($first: Int!, $after: String, $query: String, $lines: Int!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    edges { node {
      %s
      lineItems(first: $lines) { pageInfo { hasNextPage endCursor } edges { node { %s } } }
    } }
  }
}
""" % (_ORDER_FIELDS % {"refunds": REFUNDS_PER_ORDER}, _LINE_FIELDS)

ORDER_LINES_QUERY = """
query ccmsOrderLines($id: ID!, $after: String) {
  order(id: $id) {
    lineItems(first: %d, after: $after) { pageInfo { hasNextPage endCursor }
                                          edges { node { %s } } }
  }
}
""" % (MORE_LINES, _LINE_FIELDS)

#: the bulk export: no page sizes (a bulk query is not paginated), lines as a nested connection
BULK_QUERY = """
{
  orders(query: %(query)s, sortKey: UPDATED_AT) {
    edges { node {
      %(order)s
      lineItems { edges { node { %(line)s } } }
    } }
  }
}
"""

BULK_RUN_MUTATION = """
mutation ccmsBulkOrders($query: String!) {
  bulkOperationRunQuery(query: $query%s) {
    bulkOperation { id status createdAt }
    userErrors { field message code }
  }
}
"""

ORDER_REFUNDS_QUERY = """
query ccmsOrderRefunds($id: ID!) {
  order(id: $id) {
    refunds(first: %d) { legacyResourceId note createdAt
                         totalRefundedSet { shopMoney { amount currencyCode }
                                            presentmentMoney { amount currencyCode } } }
  }
}
""" % MORE_REFUNDS

BULK_CURRENT_QUERY = """
query ccmsBulkOrdersCurrent {
  currentBulkOperation(type: QUERY) { id status query createdAt }
}
"""

BULK_POLL_QUERY = """
query ccmsBulkOrdersPoll($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode createdAt objectCount rootObjectCount url }
  }
}
"""

#: GraphQL display statuses → canonical (``EXPIRED``: an authorization lapsed, nothing was paid)
FINANCIAL = {**{s.value.upper(): s for s in FinancialStatus}, "EXPIRED": FinancialStatus.VOIDED}
FULFILLMENT = {
    "FULFILLED": FulfillmentStatus.FULFILLED,
    "PARTIALLY_FULFILLED": FulfillmentStatus.PARTIAL,
    "RESTOCKED": FulfillmentStatus.RETURNED,
    **{s: FulfillmentStatus.UNFULFILLED for s in (
        "UNFULFILLED", "OPEN", "IN_PROGRESS", "ON_HOLD", "PENDING_FULFILLMENT", "SCHEDULED",
        "REQUEST_DECLINED")},
}

Sleep = Callable[[float], None]
Clock = Callable[[], float]


# --------------------------------------------------------------------------------------------------
# The GraphQL Order, loaded (marshmallow, unknown fields excluded: Shopify adds fields)
# --------------------------------------------------------------------------------------------------


class GidTail(fields.Field):
    """``gid://shopify/LineItem/466157049`` → ``"466157049"`` (the REST id webhooks carry)."""

    default_error_messages = {"invalid": "Not a Shopify global id."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str:
        tail = str(value or "").rsplit("/", 1)[-1].split("?", 1)[0]
        if not isinstance(value, str) or not value.startswith("gid://shopify/") \
                or not (tail.isascii() and tail.isdigit()):
            raise self.make_error("invalid")
        return tail


class _Graph(Schema):
    class Meta:
        unknown = EXCLUDE


class MoneyBagField(fields.Field):
    """A ``MoneyBag`` (``{"shopMoney": {"amount", "currencyCode"}, "presentmentMoney": …}``) as
    ``{"shopMoney": {"amount": Decimal, "currencyCode": str | None}, "presentmentMoney": … | None}``.

    One field rather than nested schemas: a page of orders holds thousands of money bags, and a
    nested schema costs several times a field (the backfill benchmark's profile)."""

    default_error_messages = {"invalid": "Not a MoneyBag with a shopMoney amount."}
    _amount = Money()

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        bag: dict[str, Any] = {}
        for side, required in (("shopMoney", True), ("presentmentMoney", False)):
            money = value.get(side)
            if money is None and not required:
                bag[side] = None
                continue
            if not isinstance(money, dict):
                raise self.make_error("invalid")
            currency = money.get("currencyCode")
            if currency is not None and not isinstance(currency, str):
                raise self.make_error("invalid")
            bag[side] = {"amount": self._amount.deserialize(money.get("amount")),
                         "currencyCode": currency}
        return bag


class LegacyIdField(fields.Field):
    """``{"legacyResourceId": "788032119674292922"}`` (a product, a variant) as its id, or None."""

    default_error_messages = {"invalid": "Not an object with a legacyResourceId."}
    _id = ShopifyId(allow_none=True)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str | None:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        return self._id.deserialize(value.get("legacyResourceId"))


class _Customer(_Graph):
    legacyResourceId = ShopifyId(load_default=None)
    firstName = fields.String(load_default=None, allow_none=True)
    lastName = fields.String(load_default=None, allow_none=True)
    updatedAt = UtcDateTime(load_default=None, allow_none=True)
    defaultEmailAddress = fields.Dict(load_default=None, allow_none=True)
    defaultPhoneNumber = fields.Dict(load_default=None, allow_none=True)


class _Refund(_Graph):
    legacyResourceId = ShopifyId(required=True)
    note = fields.String(load_default=None, allow_none=True)
    createdAt = UtcDateTime(load_default=None, allow_none=True)
    totalRefundedSet = MoneyBagField(required=True)


class ShopifyGraphQLLineSchema(_Graph):
    """A ``LineItem`` node (in ``lineItems.edges`` or a bulk export line)."""

    id = GidTail(required=True)
    title = fields.String(load_default=None, allow_none=True)
    name = fields.String(load_default=None, allow_none=True)
    quantity = fields.Integer(required=True, strict=True)
    sku = fields.String(load_default=None, allow_none=True)
    originalUnitPriceSet = MoneyBagField(required=True)
    product = LegacyIdField(load_default=None, allow_none=True)
    variant = LegacyIdField(load_default=None, allow_none=True)


class ShopifyGraphQLOrderSchema(_Graph):
    """An ``Order`` node as :data:`ORDERS_QUERY` and :data:`BULK_QUERY` select it."""

    legacyResourceId = ShopifyId(required=True)
    name = fields.String(required=True)
    createdAt = UtcDateTime(load_default=None, allow_none=True)
    updatedAt = UtcDateTime(required=True)
    processedAt = UtcDateTime(load_default=None, allow_none=True)
    cancelledAt = UtcDateTime(load_default=None, allow_none=True)
    email = fields.String(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True)
    currencyCode = fields.String(required=True)
    customerLocale = fields.String(load_default=None, allow_none=True)
    displayFinancialStatus = fields.String(load_default=None, allow_none=True)
    displayFulfillmentStatus = fields.String(load_default=None, allow_none=True)
    totalPriceSet = MoneyBagField(required=True)
    customer = fields.Nested(_Customer, load_default=None, allow_none=True)
    billingAddress = fields.Dict(load_default=None, allow_none=True)
    shippingAddress = fields.Dict(load_default=None, allow_none=True)
    refunds = fields.List(fields.Nested(_Refund), load_default=list)


_ORDER = ShopifyGraphQLOrderSchema()
_LINE = ShopifyGraphQLLineSchema()


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _load(schema: Schema, data: Any, what: str) -> dict[str, Any]:
    """An answer that does not load is Shopify (or something in front of it) misbehaving."""
    if not isinstance(data, dict):
        raise PlatformUnavailableError(f"Shopify answered a {what} that is not an object")
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise PlatformUnavailableError(
            f"Shopify answered an unexpected {what}: {describe_errors(exc.messages)}") from None


def order_record(order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> OrderRecord:
    """A complete :class:`OrderRecord` from a GraphQL ``Order`` node and its ``LineItem`` nodes;
    field for field what the adapter's REST ``order_record`` makes of the webhook's Order."""
    data = _load(_ORDER, order, "order")
    order_id = data["legacyResourceId"]
    customer = data["customer"]
    customer_rec = None
    if customer is not None:
        email = _text((customer["defaultEmailAddress"] or {}).get("emailAddress"))
        if customer["legacyResourceId"] is not None or email:
            name = " ".join(p.strip() for p in (customer["firstName"], customer["lastName"])
                            if p and p.strip()) or None
            customer_rec = CustomerRecord(
                platform_customer_id=customer["legacyResourceId"], email=email, name=name,
                phone=_text((customer["defaultPhoneNumber"] or {}).get("phoneNumber")),
                updated_at=customer["updatedAt"])
    total = data["totalPriceSet"]["shopMoney"]["amount"]  # before refunds, stored apart
    refunds = []
    for refund in data["refunds"]:
        money = refund["totalRefundedSet"]["presentmentMoney"] or \
            refund["totalRefundedSet"]["shopMoney"]
        refunds.append(RefundRecord(
            platform_refund_id=refund["legacyResourceId"], platform_order_id=order_id,
            amount=money["amount"], currency=money["currencyCode"] or data["currencyCode"],
            note=_text(refund["note"]), created_at=refund["createdAt"]))
    return OrderRecord(
        platform_order_id=order_id,
        number=data["name"],
        currency=data["currencyCode"],
        total=total,
        updated_at=data["updatedAt"],
        placed_at=data["createdAt"] or data["processedAt"],
        financial_status=FINANCIAL.get((data["displayFinancialStatus"] or "").upper(),
                                       FinancialStatus.UNKNOWN),
        fulfillment_status=FULFILLMENT.get((data["displayFulfillmentStatus"] or "").upper(),
                                           FulfillmentStatus.UNKNOWN),
        cancelled_at=data["cancelledAt"],
        email=_text(data["email"]) or (customer_rec and customer_rec.email) or None,
        phone=_text(data["phone"]) or (customer_rec and customer_rec.phone) or None,
        customer_name=(customer_rec and customer_rec.name)
        or _text((data["billingAddress"] or {}).get("name")),
        customer=customer_rec,
        lines=tuple(_line_record(line) for line in lines),
        refunds=tuple(refunds),
        locale=_text(data["customerLocale"]),
        country_code=_text((data["shippingAddress"] or {}).get("countryCodeV2")),
    )


def _line_record(node: Mapping[str, Any]) -> OrderLineRecord:
    line = _load(_LINE, node, "order line")
    return OrderLineRecord(
        platform_line_id=line["id"],
        title=line["title"] or line["name"] or "",
        quantity=line["quantity"],
        unit_price=line["originalUnitPriceSet"]["shopMoney"]["amount"],
        sku=_text(line["sku"]),
        product_id=line["product"],
        variant_id=line["variant"],
    )


# --------------------------------------------------------------------------------------------------
# The cursor: what a listing needs to continue, in any process
# --------------------------------------------------------------------------------------------------


def encode_cursor(state: Mapping[str, Any]) -> str:
    raw = json.dumps(dict(state), separators=(",", ":"), sort_keys=True).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The state of a cursor this module wrote; :class:`CursorInvalidError` for anything else."""
    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_PREFIX):
        raise CursorInvalidError("not a cursor of this Shopify adapter version")
    text = cursor[len(CURSOR_PREFIX):]
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        raise CursorInvalidError("a Shopify cursor that cannot be read") from None
    if not isinstance(state, dict) or state.get("m") not in ("page", "bulk"):
        raise CursorInvalidError("a Shopify cursor of an unknown mode")
    return state


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def search_query(since: str | None) -> str | None:
    """Shopify's search syntax for "updated at or after ``since``" (None: every order)."""
    return f"updated_at:>='{since}'" if since else None


# --------------------------------------------------------------------------------------------------
# Pacing: the cost bucket as Shopify last reported it, per shop, in this process
# --------------------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    available: float
    maximum: float
    restore_rate: float
    seen_at: float

    def available_at(self, now: float) -> float:
        return min(self.maximum, self.available + max(0.0, now - self.seen_at) * self.restore_rate)


_buckets: dict[str, _Bucket] = {}
_buckets_lock = threading.Lock()


def reset_buckets() -> None:
    """Forget every shop's bucket (tests start each shop afresh)."""
    with _buckets_lock:
        _buckets.clear()


class CostPacer:
    """Waits before a query until the shop's bucket holds ``cost`` points, and records what each
    answer's ``extensions.cost.throttleStatus`` says of the bucket."""

    def __init__(self, shop_domain: str, *, sleep: Sleep, clock: Clock) -> None:
        self.shop = shop_domain
        self.sleep = sleep
        self.clock = clock
        self.waited = 0.0

    def wait_for(self, cost: float) -> None:
        with _buckets_lock:
            bucket = _buckets.get(self.shop)
        if bucket is None or cost <= 0:
            return
        missing = min(cost, bucket.maximum) - bucket.available_at(self.clock())
        if missing > 0 and bucket.restore_rate > 0:
            wait = min(missing / bucket.restore_rate + SAFETY_WAIT, WAIT_CAP)
            log.debug("Shopify bucket of %s low: waiting %.2fs for %d points", self.shop, wait, cost)
            self.waited += wait
            self.sleep(wait)

    def record(self, cost: Mapping[str, Any] | None) -> None:
        status = (cost or {}).get("throttleStatus") if isinstance(cost, Mapping) else None
        if not isinstance(status, Mapping):
            return
        try:
            bucket = _Bucket(float(status["currentlyAvailable"]), float(status["maximumAvailable"]),
                             float(status["restoreRate"]), self.clock())
        except (KeyError, TypeError, ValueError):
            return
        with _buckets_lock:
            _buckets[self.shop] = bucket


def paced_query(client: ShopifyAdminClient, pacer: CostPacer, text: str,
                variables: Mapping[str, Any], *, expected_cost: float, sleep: Sleep) -> dict:
    """One GraphQL operation, after waiting for its points; a THROTTLED answer is retried after
    the wait Shopify's cost figures imply (a few times, then ``ShopifyThrottledError``)."""
    for attempt in range(1, THROTTLED_ATTEMPTS + 1):
        pacer.wait_for(expected_cost)
        try:
            data = client.graphql(text, variables)
        except ShopifyThrottledError as exc:
            pacer.record(exc.cost)
            if attempt == THROTTLED_ATTEMPTS:
                raise
            wait = min(max(exc.wait + SAFETY_WAIT, 0.5), WAIT_CAP)
            log.info("Shopify throttled a query of %s (attempt %d): waiting %.2fs",
                     pacer.shop, attempt, wait)
            sleep(wait)
            continue
        pacer.record(client.last_cost)
        return data
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------
# The listing
# --------------------------------------------------------------------------------------------------


class OrderLister:
    """One :meth:`ShopifyAdapter.list_orders` call."""

    def __init__(self, shop: ShopContext, client: ShopifyAdminClient, *, sleep: Sleep,
                 clock: Clock, download: requests.Session | None = None) -> None:
        self.shop = shop
        self.client = client
        self.sleep = sleep
        self.clock = clock
        self.pacer = CostPacer(shop.domain, sleep=sleep, clock=clock)
        self.download = download

    # -- GraphQL with pacing and THROTTLED retries --------------------------------------------

    def query(self, text: str, variables: Mapping[str, Any], *, expected_cost: float) -> dict:
        return paced_query(self.client, self.pacer, text, variables, expected_cost=expected_cost,
                           sleep=self.sleep)

    # -- pages mode --------------------------------------------------------------------------------

    def page(self, state: dict[str, Any]) -> OrderPage:
        first = int(state.get("first") or FIRST_ORDERS)
        while True:
            variables = {"first": first, "after": state.get("after"),
                         "query": search_query(state.get("since")), "lines": LINES_PER_ORDER}
            try:
                data = self.query(ORDERS_QUERY, variables,
                                  expected_cost=float(state.get("cost") or 0))
            except QueryCostExceededError:
                if first <= 1:
                    raise PlatformError("Shopify refuses even a one-order page of the orders "
                                        "query as too costly") from None
                first = max(1, first // 2)
                state["cost"] = 0
                continue
            break
        requested = float((self.client.last_cost or {}).get("requestedQueryCost") or 0)
        connection = (data.get("orders") or {}) if isinstance(data, dict) else {}
        edges = connection.get("edges")
        info = connection.get("pageInfo") or {}
        if not isinstance(edges, list):
            raise PlatformUnavailableError("Shopify answered orders without edges")
        records = []
        last_updated = None
        for edge in edges:
            node = (edge or {}).get("node") if isinstance(edge, dict) else None
            if not isinstance(node, dict):
                raise PlatformUnavailableError("Shopify answered an order edge without a node")
            lines = self._lines(node)
            record = order_record(self._with_refunds(node), lines)
            records.append(record)
            last_updated = node.get("updatedAt")
        if requested and requested < GROW_BELOW * MAX_QUERY_COST and len(edges) == first:
            first = min(MAX_ORDERS, first * 2)
        if not info.get("hasNextPage") or not edges:
            return OrderPage(tuple(records), None)
        nxt = {"m": "page", "since": state.get("since"), "first": first, "cost": requested,
               "after": info.get("endCursor"), "read": int(state.get("read") or 0) + len(edges)}
        if nxt["read"] >= CHAIN_OBJECTS and last_updated and last_updated != state.get("since"):
            # start a fresh connection at the high-water mark (orders updated at that very
            # instant are read again: harmless)
            nxt.update(since=last_updated, after=None, read=0)
        return OrderPage(tuple(records), encode_cursor(nxt))

    def _lines(self, node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        connection = node.get("lineItems") or {}
        lines = [e.get("node") for e in connection.get("edges") or [] if isinstance(e, dict)]
        info = connection.get("pageInfo") or {}
        after = info.get("endCursor")
        while info.get("hasNextPage"):
            data = self.query(ORDER_LINES_QUERY, {"id": node.get("id"), "after": after},
                              expected_cost=3 + MORE_LINES * 5)
            connection = ((data.get("order") or {}).get("lineItems") or {})
            lines += [e.get("node") for e in connection.get("edges") or [] if isinstance(e, dict)]
            info = connection.get("pageInfo") or {}
            after = info.get("endCursor")
        return lines

    def _with_refunds(self, node: dict[str, Any]) -> dict[str, Any]:
        """``node`` with every refund: one with the page's cap of them may have more."""
        refunds = node.get("refunds")
        if not isinstance(refunds, list) or len(refunds) < REFUNDS_PER_ORDER:
            return node
        data = self.query(ORDER_REFUNDS_QUERY, {"id": node.get("id")},
                          expected_cost=1 + 4 * MORE_REFUNDS)
        more = (data.get("order") or {}).get("refunds")
        return {**node, "refunds": more} if isinstance(more, list) else node

    # -- bulk mode ---------------------------------------------------------------------------------

    def start_bulk(self, since: str | None) -> OrderPage:
        order_fields = _ORDER_FIELDS % {"refunds": REFUNDS_PER_ORDER}
        # a bulk query is not paginated: ``refunds`` is a list field, its ``first`` is kept
        query = search_query(since)
        bulk = BULK_QUERY % {"query": json.dumps(query) if query else '""',
                             "order": order_fields, "line": _LINE_FIELDS}
        group = ", groupObjects: true" if self.client.api_version >= GROUP_OBJECTS_SINCE else ""
        data = self.query(BULK_RUN_MUTATION % group, {"query": bulk}, expected_cost=10)
        payload = data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        if errors:
            text = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
            codes = {str(e.get("code")) for e in errors if isinstance(e, dict)}
            if "OPERATION_IN_PROGRESS" in codes or "in progress" in text.lower():
                running = self.query(BULK_CURRENT_QUERY, {}, expected_cost=2) \
                    .get("currentBulkOperation") or {}
                if running.get("id") and _same_query(running.get("query"), bulk) \
                        and running.get("status") in ("CREATED", "RUNNING", "COMPLETED"):
                    # an export of the same orders, started by a run that was interrupted
                    return OrderPage((), encode_cursor({"m": "bulk", "since": since,
                                                        "op": running["id"], "off": 0}))
                raise PlatformUnavailableError(
                    f"Shopify is running another bulk query for {self.shop.domain}: {text}")
            raise PlatformError(f"Shopify refused the bulk export of orders: {text}"[:400])
        operation = payload.get("bulkOperation") or {}
        if not operation.get("id"):
            raise PlatformUnavailableError("Shopify started a bulk export without an id")
        return OrderPage((), encode_cursor({"m": "bulk", "since": since, "op": operation["id"],
                                            "off": 0}))

    def bulk(self, state: dict[str, Any]) -> OrderPage:
        deadline = self.clock() + BULK_POLL_WAIT
        while True:
            data = self.query(BULK_POLL_QUERY, {"id": state["op"]}, expected_cost=2)
            operation = data.get("node")
            if not isinstance(operation, dict):
                raise CursorInvalidError(f"Shopify no longer knows bulk operation {state['op']}")
            status = str(operation.get("status") or "")
            if status == "COMPLETED":
                break
            if status in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                raise CursorInvalidError(f"Shopify's bulk export of orders ended {status} "
                                         f"({operation.get('errorCode') or 'no error code'})")
            if self.clock() >= deadline:
                return OrderPage((), encode_cursor(state))  # still running: call again
            self.sleep(BULK_POLL_INTERVAL)
        created = parse_utc_datetime(operation.get("createdAt")) or datetime.now(timezone.utc)
        catch_up = encode_cursor({"m": "page", "since": _iso(created - CATCH_UP_OVERLAP)})
        total = _int(operation.get("rootObjectCount"))
        url = operation.get("url")
        if not url:  # nothing matched
            return OrderPage((), catch_up, total)
        records, next_offset = self._read_jsonl(url, int(state.get("off") or 0))
        if next_offset is None:
            return OrderPage(tuple(records), catch_up, total)
        return OrderPage(tuple(records), encode_cursor({**state, "off": next_offset}), total)

    def _read_jsonl(self, url: str, offset: int) -> tuple[list[OrderRecord], int | None]:
        """Up to :data:`BULK_PAGE_ORDERS` orders from byte ``offset``; the offset of the first
        order not read, None at the end of the file."""
        records: list[OrderRecord] = []
        order: dict[str, Any] | None = None
        lines: list[dict[str, Any]] = []
        for start, raw in self._ranged_lines(url, offset):
            item = _jsonl_item(raw)
            if item is None:
                continue
            if "__parentId" in item:
                if order is not None and item["__parentId"] == order.get("id"):
                    lines.append(item)
                continue  # a child of an order of another page, or of no order we know
            if order is not None:
                records.append(order_record(self._with_refunds(order), lines))
                if len(records) >= BULK_PAGE_ORDERS:
                    return records, start
            order, lines = item, []
        if order is not None:
            records.append(order_record(self._with_refunds(order), lines))
        return records, None

    def _ranged_lines(self, url: str, offset: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, line)`` from ``offset`` to the end of the export, read in ranges of
        :data:`RANGE_BYTES` (a line cut by a range's end is completed by the next range)."""
        session = self.download or requests.Session()  # never the Admin API session: no token
        position, carry = offset, b""
        while True:
            end = position + len(carry) + RANGE_BYTES - 1
            headers = {"Range": f"bytes={position + len(carry)}-{end}"}
            try:
                response = session.get(url, headers=headers, timeout=DOWNLOAD_TIMEOUT)
            except requests.RequestException as exc:
                raise PlatformUnavailableError(f"Shopify's bulk export could not be downloaded "
                                               f"({type(exc).__name__})") from None
            status = response.status_code
            if status in (403, 404, 410):
                raise CursorInvalidError(f"Shopify's bulk export is gone (HTTP {status}); its "
                                         "URL lives 7 days")
            if status == 416:  # nothing from there on: the end of the file
                if carry:
                    yield position, carry
                return
            if status not in (200, 206):
                raise PlatformUnavailableError(f"Shopify's bulk export answered HTTP {status}")
            body = response.content
            if status == 200:  # the whole file, Range ignored: take what was asked for
                body = body[position + len(carry):]
                last = True
            else:
                total = _range_total(response.headers.get("Content-Range"))
                last = total is None or end + 1 >= total
            data = carry + body
            cut = data.rfind(b"\n") + 1
            pos = position
            for line in data[:cut].split(b"\n")[:-1] if cut else ():
                yield pos, line
                pos += len(line) + 1
            position, carry = pos, data[cut:]
            if last:
                if carry:
                    yield position, carry
                return


def _same_query(running: Any, ours: str) -> bool:
    return isinstance(running, str) and " ".join(running.split()) == " ".join(ours.split())


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _jsonl_item(raw: bytes) -> dict[str, Any] | None:
    text = raw.strip()
    if not text:
        return None
    try:
        item = json.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, InvalidOperation):
        raise PlatformUnavailableError("Shopify's bulk export has a line that is not JSON") from None
    if not isinstance(item, dict):
        raise PlatformUnavailableError("Shopify's bulk export has a line that is not an object")
    return item


def _range_total(value: str | None) -> int | None:
    """The file size of ``Content-Range: bytes 0-99/1234`` (None when unknown: ``*``)."""
    total = (value or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def list_orders(shop: ShopContext, client: ShopifyAdminClient, *, updated_since: datetime | None,
                cursor: str | None, sleep: Sleep = time.sleep, clock: Clock = time.monotonic,
                now: datetime | None = None, download: requests.Session | None = None) -> OrderPage:
    """One page of the shop's orders (see the module docstring for the two modes)."""
    lister = OrderLister(shop, client, sleep=sleep, clock=clock, download=download)
    if cursor is None:
        since = _iso(updated_since) if updated_since is not None else None
        mode = str(shop.settings.get("sync_mode") or "").lower()
        old = updated_since is None or (now or datetime.now(timezone.utc)) - updated_since \
            > BULK_WHEN_OLDER_THAN
        if mode == "bulk" or (old and mode != "pages"):
            return lister.start_bulk(since)
        return lister.page({"m": "page", "since": since})
    state = decode_cursor(cursor)
    if state["m"] == "bulk":
        if not state.get("op"):
            raise CursorInvalidError("a Shopify bulk cursor without its operation")
        return lister.bulk(state)
    return lister.page(state)
