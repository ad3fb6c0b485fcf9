"""The order listing of the Shopify imitation: GraphQL ``orders`` with cost-based throttling, and
bulk operations with their JSONL export.

What it speaks (shopify.dev, GraphQL Admin API: ``orders``, ``OrderSortKeys``, "GraphQL Admin API
rate limits", ``bulkOperationRunQuery``, ``BulkOperation``):

* ``orders(first:, after:, query:, sortKey: UPDATED_AT)`` with ``pageInfo { hasNextPage
  endCursor }`` and ``edges { node }``; ``query`` understands ``updated_at:>='…'`` (and ``>``); the
  nodes carry every field the add-on selects; ``lineItems(first: $lines)`` is cut to that many
  with its own ``pageInfo``; ``order(id:) { lineItems(first:, after:) }`` pages the rest.
* the calculated cost: an object costs 1, scalars 0, a connection 2 plus what it may return
  (``first`` × its node's cost) — requested before running (refused over 1,000 with
  ``MAX_COST_EXCEEDED``), actual from what was returned; a bucket of ``maximumAvailable`` points
  restoring ``restoreRate`` a second must hold the requested cost or the answer is ``THROTTLED``
  (HTTP 200, no data); every answer carries ``extensions.cost`` with its ``throttleStatus``.
* ``bulkOperationRunQuery`` (one at a time: ``OPERATION_IN_PROGRESS``), ``currentBulkOperation``,
  ``node(id:)`` on the
  ``BulkOperation`` (``RUNNING`` for ``bulk_seconds``, then ``COMPLETED`` with ``url``,
  ``objectCount``, ``rootObjectCount``), and the JSONL at ``url``: each order on a line, its line
  items on the following lines with ``__parentId`` (grouped), served with ``Range`` support and
  without any credential (a signed URL on another host at Shopify).

Orders are kept in their GraphQL shape (:func:`graphql_order_from_rest` converts a REST Order, as
the webhook samples are; :func:`make_graphql_order` makes realistic ones in bulk).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

#: the single-query limit and the bucket of a standard plan (2,000 points restoring 100 a second)
MAX_QUERY_COST = 1000
PLANS = {"standard": (2000.0, 100.0), "advanced": (4000.0, 200.0), "plus": (20000.0, 1000.0),
         "enterprise": (40000.0, 2000.0)}

#: requested cost of one order node beyond its line items and refunds (order 1, customer 1 and its
#: email and phone objects 2, billing and shipping addresses 2, the total's MoneyBag and MoneyV2 2)
ORDER_OBJECTS = 8
#: one refund (Refund, its MoneyBag, shop and presentment MoneyV2) and one line item (LineItem,
#: MoneyBag, MoneyV2, product, variant)
REFUND_COST = 4
LINE_COST = 5


def _utc(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _bag(money_set: Mapping[str, Any] | None, fallback: str | None = None,
         currency: str | None = None) -> dict[str, Any]:
    shop = (money_set or {}).get("shop_money") or {"amount": fallback, "currency_code": currency}
    presentment = (money_set or {}).get("presentment_money") or shop
    return {"shopMoney": {"amount": str(shop["amount"]), "currencyCode": shop["currency_code"]},
            "presentmentMoney": {"amount": str(presentment["amount"]),
                                 "currencyCode": presentment["currency_code"]}}


def graphql_order_from_rest(order: Mapping[str, Any]) -> dict[str, Any]:
    """The GraphQL ``Order`` node Shopify serves for a REST Order (a webhook body)."""
    order_id = str(order["id"])
    customer = order.get("customer")
    refunds = []
    for refund in order.get("refunds") or []:
        transactions = [t for t in refund.get("transactions") or []
                        if t.get("kind") == "refund" and t.get("status") == "success"]
        if transactions:
            amount = sum(Decimal(str(t["amount"])) for t in transactions)
            currency = transactions[0].get("currency") or order["currency"]
        else:
            amount = sum(Decimal(str(i.get("subtotal") or 0)) + Decimal(str(i.get("total_tax") or 0))
                         for i in refund.get("refund_line_items") or [])
            currency = order["currency"]
        money = {"amount": str(amount), "currencyCode": currency}
        refunds.append({"id": f"gid://shopify/Refund/{refund['id']}",
                        "legacyResourceId": str(refund["id"]), "note": refund.get("note"),
                        "createdAt": _utc(refund.get("created_at")),
                        "totalRefundedSet": {"shopMoney": money, "presentmentMoney": money}})
    status = order.get("fulfillment_status")
    return {
        "id": f"gid://shopify/Order/{order_id}",
        "legacyResourceId": order_id,
        "name": order["name"],
        "createdAt": _utc(order.get("created_at")),
        "updatedAt": _utc(order["updated_at"]),
        "processedAt": _utc(order.get("processed_at")),
        "cancelledAt": _utc(order.get("cancelled_at")),
        "email": order.get("email") or order.get("contact_email"),
        "phone": order.get("phone"),
        "currencyCode": order["currency"],
        "customerLocale": order.get("customer_locale"),
        "displayFinancialStatus": (order.get("financial_status") or "").upper() or None,
        "displayFulfillmentStatus": {None: "UNFULFILLED", "partial": "PARTIALLY_FULFILLED",
                                     "fulfilled": "FULFILLED", "restocked": "RESTOCKED"}
        .get(status, str(status).upper()),
        "totalPriceSet": _bag(order.get("total_price_set"),
                              order.get("total_price") or order.get("current_total_price"),
                              order["currency"]),
        "customer": None if not customer else {
            "id": f"gid://shopify/Customer/{customer['id']}",
            "legacyResourceId": str(customer["id"]) if customer.get("id") else None,
            "firstName": customer.get("first_name"), "lastName": customer.get("last_name"),
            "updatedAt": _utc(customer.get("updated_at")),
            "defaultEmailAddress": {"emailAddress": customer["email"]}
            if customer.get("email") else None,
            "defaultPhoneNumber": {"phoneNumber": customer["phone"]}
            if customer.get("phone") else None},
        "billingAddress": {"name": (order.get("billing_address") or {}).get("name")}
        if order.get("billing_address") else None,
        "shippingAddress": {"countryCodeV2": (order.get("shipping_address") or {})
                            .get("country_code")} if order.get("shipping_address") else None,
        "refunds": refunds,
        "lineItems": [{
            "id": f"gid://shopify/LineItem/{line['id']}",
            "title": line.get("title"), "name": line.get("name"),
            "quantity": line["quantity"], "sku": line.get("sku"),
            "originalUnitPriceSet": _bag(line.get("price_set"), line.get("price"),
                                         order["currency"]),
            "product": {"legacyResourceId": str(line["product_id"])}
            if line.get("product_id") else None,
            "variant": {"legacyResourceId": str(line["variant_id"])}
            if line.get("variant_id") else None,
        } for line in order.get("line_items") or []],
    }


_FIRST = ["Jon", "Arya", "Minji", "Seo-yeon", "Haruto", "Lucas", "Emma", "Olivia", "Noah", "Ji-ho"]
_LAST = ["Snow", "Stark", "Kim", "Lee", "Park", "Sato", "Müller", "García", "Smith", "Nguyen"]
_PRODUCTS = [("Aviator sunglasses", "SKU2006-001", "89.99"), ("Mid-century lounger", "SKU2006-020",
             "159.99"), ("Linen shirt — sand", "LS-SAND-M", "59.90"), ("Ceramic mug 350 ml",
             "MUG-350-WHT", "14.50"), ("Wool scarf", "SCF-WOOL-GRY", "39.00")]
_FINANCIAL = ["PAID"] * 14 + ["PENDING", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED", "AUTHORIZED"]
_FULFILLMENT = ["FULFILLED"] * 10 + ["UNFULFILLED"] * 6 + ["PARTIALLY_FULFILLED"]


def make_graphql_order(n: int, *, updated_at: datetime, lines: int = 2,
                       order_id_base: int = 5_100_000_000_000) -> dict[str, Any]:
    """A realistic order node (2 lines, a customer, USD), deterministic in ``n``."""
    order_id = order_id_base + n
    first, last = _FIRST[n % len(_FIRST)], _LAST[(n // 7) % len(_LAST)]
    created = updated_at - timedelta(hours=1 + n % 48)
    items = []
    total = Decimal(0)
    for i in range(lines):
        title, sku, price = _PRODUCTS[(n + i) % len(_PRODUCTS)]
        quantity = 1 + (n + i) % 3
        total += Decimal(price) * quantity
        items.append({"id": f"gid://shopify/LineItem/{order_id * 10 + i}", "title": title,
                      "name": title, "quantity": quantity, "sku": sku,
                      "originalUnitPriceSet": {"shopMoney": {"amount": price, "currencyCode": "USD"},
                                               "presentmentMoney": {"amount": price,
                                                                    "currencyCode": "USD"}},
                      "product": {"legacyResourceId": str(788032119674292922 + (n + i) % 5)},
                      "variant": {"legacyResourceId": str(642667041472713922 + (n + i) % 5)}})
    stamp = lambda moment: moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    return {
        "id": f"gid://shopify/Order/{order_id}", "legacyResourceId": str(order_id),
        "name": f"#{1000 + n}", "createdAt": stamp(created), "updatedAt": stamp(updated_at),
        "processedAt": stamp(created), "cancelledAt": None,
        "email": f"{first.lower()}.{n}@example.com", "phone": None, "currencyCode": "USD",
        "customerLocale": "en", "displayFinancialStatus": _FINANCIAL[n % len(_FINANCIAL)],
        "displayFulfillmentStatus": _FULFILLMENT[n % len(_FULFILLMENT)],
        "totalPriceSet": {"shopMoney": {"amount": f"{total:.2f}", "currencyCode": "USD"},
                                 "presentmentMoney": {"amount": f"{total:.2f}",
                                                      "currencyCode": "USD"}},
        "customer": {"id": f"gid://shopify/Customer/{7_000_000 + n % 5000}",
                     "legacyResourceId": str(7_000_000 + n % 5000), "firstName": first,
                     "lastName": last, "updatedAt": stamp(created),
                     "defaultEmailAddress": {"emailAddress": f"{first.lower()}.{n}@example.com"},
                     "defaultPhoneNumber": None},
        "billingAddress": {"name": f"{first} {last}"},
        "shippingAddress": {"countryCodeV2": "US"},
        "refunds": [],
        "lineItems": items,
    }


@dataclass
class CostBucket:
    """The app-and-shop bucket of query cost points."""

    maximum: float
    restore_rate: float
    clock: Callable[[], float]
    available: float = -1.0
    seen_at: float = 0.0

    def __post_init__(self) -> None:
        self.available = self.maximum
        self.seen_at = self.clock()

    def restore(self) -> float:
        now = self.clock()
        self.available = min(self.maximum,
                             self.available + (now - self.seen_at) * self.restore_rate)
        self.seen_at = now
        return self.available

    def status(self) -> dict[str, float]:
        return {"maximumAvailable": self.maximum, "currentlyAvailable": round(self.available, 1),
                "restoreRate": self.restore_rate}


@dataclass
class BulkOperation:
    id: str
    since: str | None
    created_at: str
    done_at: float
    query: str = ""
    status: str = "RUNNING"
    body: bytes = b""
    objects: int = 0
    roots: int = 0


_SINCE = re.compile(r"updated_at:(>=?)'([^']+)'")
_CURSOR_PREFIX = "c1:"


@dataclass
class OrdersFake:
    """The orders of the imitated shop and the GraphQL operations over them."""

    clock: Callable[[], float] = time.monotonic
    plan: str = "standard"
    #: seconds (of ``clock``) a bulk operation runs before it is COMPLETED
    bulk_seconds: float = 1.0
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    bulk: dict[str, BulkOperation] = field(default_factory=dict)
    #: what the bulk URLs are served under (set by the server when it starts)
    base_url: str = ""
    #: queries refused THROTTLED, and the (requested, actual, available before) of every query
    throttled: int = 0
    costs: list[tuple[int, int, float]] = field(default_factory=list)
    #: every download of a bulk export: {"range", "headers"}
    downloads: list[dict[str, Any]] = field(default_factory=list)
    _bucket: CostBucket | None = None
    _sorted: list[tuple[str, str]] | None = None
    _ids: Iterable[int] = field(default_factory=lambda: itertools.count(5_440_000_000))

    @property
    def bucket(self) -> CostBucket:
        if self._bucket is None:
            maximum, rate = PLANS[self.plan]
            self._bucket = CostBucket(maximum, rate, self.clock)
        return self._bucket

    def add(self, *nodes: Mapping[str, Any]) -> None:
        for node in nodes:
            self.orders[str(node["legacyResourceId"])] = dict(node)
        self._sorted = None

    def _in_order(self) -> list[tuple[str, str]]:
        if self._sorted is None:
            self._sorted = sorted((o["updatedAt"], o["legacyResourceId"].rjust(20, "0"))
                                  for o in self.orders.values())
        return self._sorted

    # -- the GraphQL operations ---------------------------------------------------------------

    def handle(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        """The answer to an order-listing operation; None for any other operation."""
        if "bulkOperationRunQuery" in query:
            return self._charged(10, lambda: (self._run_bulk(str(variables.get("query") or "")),
                                              10))
        if "currentBulkOperation" in query:
            return self._charged(2, lambda: (self._current(), 1))
        if "BulkOperation" in query and "node(id:" in query:
            return self._charged(2, lambda: (self._poll(str(variables.get("id"))), 1))
        if re.search(r"\borders\(first:", query):
            first, lines = int(variables.get("first") or 0), int(variables.get("lines") or 0)
            per_order = ORDER_OBJECTS + REFUND_COST * _refunds_first(query) + 2 + LINE_COST * lines
            return self._charged(2 + first * per_order,
                                 lambda: self._orders(first, variables.get("after"),
                                                      variables.get("query"), lines,
                                                      _refunds_first(query)))
        if "ccmsOrderRefunds" in query:
            count = int(re.search(r"refunds\(first:\s*(\d+)\)", query).group(1))
            node = self.orders.get(str(variables.get("id")).rsplit("/", 1)[-1])
            refunds = (node or {}).get("refunds", [])[:count]
            return self._charged(1 + REFUND_COST * count, lambda: (
                {"order": None if node is None else {"refunds": refunds}},
                1 + REFUND_COST * len(refunds)))
        more = re.search(r"lineItems\(first:\s*(\d+),\s*after:", query)
        if re.search(r"\border\(id:", query) and more:
            count = int(more.group(1))
            return self._charged(1 + 2 + count * LINE_COST,
                                 lambda: self._more_lines(str(variables.get("id")),
                                                          variables.get("after"), count))
        return None

    def _charged(self, requested: int, run: Callable[[], tuple[dict[str, Any], int]]
                 ) -> dict[str, Any]:
        bucket = self.bucket
        before = bucket.restore()
        if requested > MAX_QUERY_COST:
            return {"errors": [{"message": f"Query cost is {requested}, which exceeds the single "
                                           f"query max cost limit ({MAX_QUERY_COST}).",
                                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                               "maxCost": MAX_QUERY_COST}}],
                    "extensions": {"cost": {"requestedQueryCost": requested,
                                            "actualQueryCost": None,
                                            "throttleStatus": bucket.status()}}}
        if before < requested:
            self.throttled += 1
            return {"errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": {"cost": {"requestedQueryCost": requested,
                                            "actualQueryCost": None,
                                            "throttleStatus": bucket.status()}}}
        bucket.available -= requested
        data, actual = run()
        actual = min(actual, requested)
        bucket.available += requested - actual
        self.costs.append((requested, actual, before))
        return {"data": data, "extensions": {"cost": {
            "requestedQueryCost": requested, "actualQueryCost": actual,
            "throttleStatus": bucket.status()}}}

    def _matching(self, search: str | None) -> list[tuple[str, str]]:
        rows = self._in_order()
        match = _SINCE.search(search or "")
        if match:
            since = _utc(match.group(2))
            strict = match.group(1) == ">"
            rows = [r for r in rows if (r[0] > since if strict else r[0] >= since)]
        return rows

    def _orders(self, first: int, after: str | None, search: str | None, lines: int,
                refunds_first: int) -> tuple[dict[str, Any], int]:
        rows = self._matching(search)
        start = 0
        if after:
            key = tuple(base64.b64decode(after[len(_CURSOR_PREFIX):]).decode().split("|"))
            start = next((i + 1 for i, row in enumerate(rows) if row == key), len(rows))
        chosen = rows[start:start + first]
        edges, actual = [], 2
        for updated_at, padded in chosen:
            node = dict(self.orders[padded.lstrip("0")])
            node["refunds"] = node.get("refunds", [])[:refunds_first]
            all_lines = node.pop("lineItems")
            node["lineItems"] = {
                "pageInfo": {"hasNextPage": len(all_lines) > lines,
                             "endCursor": _cursor(("line", str(min(lines, len(all_lines)))))},
                "edges": [{"node": line} for line in all_lines[:lines]]}
            edges.append({"cursor": _cursor((updated_at, padded)), "node": node})
            actual += _actual_cost(node, min(lines, len(all_lines)))
        info = {"hasNextPage": start + first < len(rows),
                "endCursor": edges[-1]["cursor"] if edges else None}
        return {"orders": {"pageInfo": info, "edges": edges}}, actual

    def _more_lines(self, order_gid: str, after: str | None, count: int
                    ) -> tuple[dict[str, Any], int]:
        node = self.orders.get(order_gid.rsplit("/", 1)[-1])
        if node is None:
            return {"order": None}, 1
        start = int(base64.b64decode(after[len(_CURSOR_PREFIX):]).decode().split("|")[1]) \
            if after else 0
        chosen = node["lineItems"][start:start + count]
        end = start + len(chosen)
        return {"order": {"lineItems": {
            "pageInfo": {"hasNextPage": end < len(node["lineItems"]),
                         "endCursor": _cursor(("line", str(end)))},
            "edges": [{"node": line} for line in chosen]}}}, 3 + LINE_COST * len(chosen)

    # -- bulk operations -------------------------------------------------------------------------

    def _run_bulk(self, bulk_query: str) -> dict[str, Any]:
        self._progress()
        running = [op for op in self.bulk.values() if op.status == "RUNNING"]
        if running:
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [{
                "field": None, "code": "OPERATION_IN_PROGRESS",
                "message": f"A bulk query operation for this app and shop is already in "
                           f"progress: {running[0].id}."}]}}
        match = _SINCE.search(bulk_query)
        op_id = f"gid://shopify/BulkOperation/{next(self._ids)}"
        created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        op = BulkOperation(op_id, match.group(2) if match else None, created,
                           self.clock() + self.bulk_seconds, bulk_query)
        lines = []
        for _, padded in self._matching(bulk_query):
            node = dict(self.orders[padded.lstrip("0")])
            node["refunds"] = node.get("refunds", [])[:_refunds_first(bulk_query)]
            items = node.pop("lineItems")
            lines.append(json.dumps(node, separators=(",", ":")))
            op.roots += 1
            for item in items:
                lines.append(json.dumps({**item, "__parentId": node["id"]},
                                        separators=(",", ":")))
        op.objects = len(lines)
        op.body = ("\n".join(lines) + "\n").encode() if lines else b""
        self.bulk[op_id] = op
        return {"bulkOperationRunQuery": {
            "bulkOperation": {"id": op_id, "status": "CREATED", "createdAt": created},
            "userErrors": []}}

    def _poll(self, op_id: str) -> dict[str, Any]:
        self._progress()
        op = self.bulk.get(op_id)
        if op is None:
            return {"node": None}
        url = (f"{self.base_url}/bulk-export/{op_id.rsplit('/', 1)[-1]}.jsonl"
               f"?X-Goog-Signature={secrets.token_hex(8)}") \
            if op.status == "COMPLETED" and op.body else None
        return {"node": {"id": op.id, "status": op.status, "errorCode": None,
                         "createdAt": op.created_at,
                         "objectCount": str(op.objects if op.status == "COMPLETED" else 0),
                         "rootObjectCount": str(op.roots if op.status == "COMPLETED" else 0),
                         "url": url}}

    def _progress(self) -> None:
        for op in self.bulk.values():
            if op.status == "RUNNING" and self.clock() >= op.done_at:
                op.status = "COMPLETED"

    def _current(self) -> dict[str, Any]:
        self._progress()
        if not self.bulk:
            return {"currentBulkOperation": None}
        op = list(self.bulk.values())[-1]
        return {"currentBulkOperation": {"id": op.id, "status": op.status, "query": op.query,
                                         "createdAt": op.created_at}}

    def export(self, number: str) -> bytes | None:
        op = self.bulk.get(f"gid://shopify/BulkOperation/{number}")
        return op.body if op is not None and op.status == "COMPLETED" else None

    def fail_bulk(self, status: str = "EXPIRED") -> None:
        """Every bulk export ends ``status`` (EXPIRED: its URL is gone)."""
        for op in self.bulk.values():
            op.status = status


def _refunds_first(query: str) -> int:
    match = re.search(r"refunds\(first:\s*(\d+)\)", query)
    return int(match.group(1)) if match else 0


def _cursor(key: tuple[str, str]) -> str:
    return _CURSOR_PREFIX + base64.b64encode("|".join(key).encode()).decode()


def _actual_cost(node: Mapping[str, Any], lines: int) -> int:
    objects = 1 + 2  # the order, its MoneyBag and MoneyV2
    customer = node.get("customer")
    if customer:
        objects += 1 + bool(customer.get("defaultEmailAddress")) \
            + bool(customer.get("defaultPhoneNumber"))
    objects += bool(node.get("billingAddress")) + bool(node.get("shippingAddress"))
    return objects + REFUND_COST * len(node.get("refunds") or []) + 2 + LINE_COST * lines
