"""The GraphQL Admin API operations of a claim's settlement, for the loopback Shopify server.

It answers, as documented for 2026-07 (shopify.dev/docs/api/admin-graphql/2026-07), the five
operations :mod:`ccms_addon.plugins.shopify.settlement` sends, recognised by their root field:

* ``order(id:)`` → ``{id, name, presentmentCurrencyCode, refunds [{id, note, totalRefundedSet}],
  returns {nodes [{id, name, status, returnLineItems {nodes [{returnReasonNote}]}}]}}``, ``null`` for
  an unknown order;
* ``order(id:) { suggestedRefund(refundLineItems:, suggestFullRefund:) }`` → ``amountSet``,
  ``maximumRefundableSet`` (paid less refunded), ``refundLineItems`` (with a ``location`` when
  restocked) and ``suggestedTransactions`` (gateway, parent sale, amount, what it can still refund);
* ``refundCreate(input:) @idempotent(key:)``: the directive is required from 2026-04 (an error
  without it); a key seen before replays the first answer without refunding again; ``userErrors``
  for an unknown order, a currency other than the presentment currency, an unknown line, more units
  than are left, a ``RETURN`` restock without ``locationId``, a transaction whose parent is not a
  sale of the order, or an amount above what the parent (or the order) can still refund;
* ``returnableFulfillments(orderId:)`` → the fulfilled, not yet returned or refunded quantities by
  ``FulfillmentLineItem``;
* ``returnCreate(returnInput:)`` → an ``OPEN`` return; ``userErrors`` (with ``code``) for an unknown
  order or fulfillment line item, a quantity above what is returnable, a ``returnReasonNote`` over
  255 characters; ``returnReason`` is required before 2026-01.

The fake keeps what the operations change (refunded and returned quantities, refunded amounts per
transaction, the inputs received) for the tests to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

LOCATION_ID = "gid://shopify/Location/61629186"
IDEMPOTENT_REQUIRED_SINCE = "2026-04"
RETURN_REASON_OPTIONAL_SINCE = "2026-01"
_DIRECTIVE = re.compile(r'@idempotent\(\s*key:\s*(?:\$(\w+)|"([^"]*)")\s*\)')


def _tail(global_id: Any) -> str:
    return str(global_id or "").rsplit("/", 1)[-1]


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    value = {"amount": format(amount.normalize(), "f") if amount else "0.0", "currencyCode": currency}
    return {"shopMoney": value, "presentmentMoney": value}


@dataclass
class FakeLine:
    id: int
    quantity: int
    price: Decimal
    fulfilled: int
    refunded: int = 0
    returned: int = 0
    restocked: int = 0
    #: the product variant (None: a custom item) and title, for the order actions
    variant_id: int | None = None
    title: str = ""

    @property
    def fulfillment_line_item_id(self) -> str:
        return f"gid://shopify/FulfillmentLineItem/{self.id * 10 + 1}"


@dataclass
class FakeTransaction:
    id: int
    gateway: str
    amount: Decimal
    refunded: Decimal = Decimal(0)

    @property
    def left(self) -> Decimal:
        return self.amount - self.refunded


@dataclass
class FakeOrder:
    id: int
    name: str
    currency: str
    lines: dict[int, FakeLine]
    transactions: list[FakeTransaction]
    refunds: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    #: every ``RefundInput`` / ``ReturnInput`` accepted, for the tests
    refund_inputs: list[dict[str, Any]] = field(default_factory=list)
    return_inputs: list[dict[str, Any]] = field(default_factory=list)
    #: what the order actions read and change (:mod:`.shopify_order_actions`)
    cancelled_at: str | None = None
    email: str | None = None
    customer_id: int | None = None
    shipping_address: dict[str, Any] | None = None
    cancel_inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gid(self) -> str:
        return f"gid://shopify/Order/{self.id}"

    @property
    def refundable(self) -> Decimal:
        return sum((t.left for t in self.transactions), Decimal(0))


@dataclass
class SettlementFake:
    orders: dict[str, FakeOrder] = field(default_factory=dict)
    #: first answers by idempotency key
    idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 900000000
    #: how many refundCreate mutations actually refunded (replays excluded)
    refunds_created: int = 0
    #: draft orders by GraphQL id, and the orders completed drafts became (order actions)
    draft_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    placed_orders: list[dict[str, Any]] = field(default_factory=list)

    def add_order(self, order_id: int, *, currency: str = "USD", name: str | None = None,
                  lines: list[tuple[int, int, str]] = (), paid: str | None = None,
                  gateway: str = "shopify_payments", fulfilled: bool = True) -> FakeOrder:
        """An order with ``lines`` ``(line id, quantity, unit price)``, paid in one sale (all of the
        lines unless ``paid`` says otherwise) and fulfilled unless ``fulfilled=False``."""
        fake_lines = {line_id: FakeLine(line_id, quantity, Decimal(price),
                                        quantity if fulfilled else 0)
                      for line_id, quantity, price in lines}
        total = Decimal(paid) if paid is not None else sum(
            (line.price * line.quantity for line in fake_lines.values()), Decimal(0))
        order = FakeOrder(order_id, name or f"#{1000 + len(self.orders) + 1}", currency, fake_lines,
                          [FakeTransaction(self._id(), gateway, total)] if total else [])
        self.orders[str(order_id)] = order
        return order

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The GraphQL answer for a settlement operation; None for any other operation."""
        if "refundCreate(" in query:
            return self._refund_create(version, query, variables)
        if "returnCreate(" in query:
            return self._return_create(version, variables.get("returnInput") or {})
        if "returnableFulfillments(" in query:
            return {"data": {"returnableFulfillments": self._returnable(variables.get("orderId"))}}
        if "suggestedRefund(" in query:
            order = self.orders.get(_tail(variables.get("id")))
            if order is None:
                return {"data": {"order": None}}
            return self._suggested_refund(order, variables)
        if re.search(r"\border\(id:", query) and "refunds" in query:
            order = self.orders.get(_tail(variables.get("id")))
            return {"data": {"order": None if order is None else self._order(order)}}
        return None

    # -- queries -----------------------------------------------------------------------------------

    def _order(self, order: FakeOrder) -> dict[str, Any]:
        return {"id": order.gid, "name": order.name, "presentmentCurrencyCode": order.currency,
                "refunds": [dict(r) for r in order.refunds],
                "returns": {"nodes": [dict(r) for r in order.returns]}}

    def _suggested_refund(self, order: FakeOrder, variables: dict[str, Any]) -> dict[str, Any]:
        wanted: list[tuple[FakeLine, int, str]] = []
        if variables.get("suggestFullRefund"):
            wanted = [(line, line.quantity - line.refunded, "NO_RESTOCK")
                      for line in order.lines.values() if line.quantity > line.refunded]
            amount = order.refundable
        else:
            amount = Decimal(0)
            for entry in variables.get("refundLineItems") or []:
                line = order.lines.get(int(_tail(entry.get("lineItemId")) or 0))
                if line is None:
                    return {"errors": [{"message": f"Invalid id: {entry.get('lineItemId')}",
                                        "extensions": {"code": "BAD_REQUEST"}}]}
                quantity = min(int(entry.get("quantity") or 0), line.quantity - line.refunded)
                wanted.append((line, quantity, entry.get("restockType") or "NO_RESTOCK"))
                amount += line.price * quantity
            amount = min(amount, order.refundable)
        transactions, left = [], amount
        for txn in order.transactions:
            take = min(left, txn.left)
            if take <= 0:
                continue
            transactions.append({"gateway": txn.gateway, "kind": "SUGGESTED_REFUND",
                                 "parentTransaction": {"id": f"gid://shopify/OrderTransaction/{txn.id}"},
                                 "amountSet": _money(take, order.currency),
                                 "maximumRefundableSet": _money(txn.left, order.currency)})
            left -= take
        return {"data": {"order": {"suggestedRefund": {
            "amountSet": _money(amount, order.currency),
            "maximumRefundableSet": _money(order.refundable, order.currency),
            "refundLineItems": [
                {"lineItem": {"id": f"gid://shopify/LineItem/{line.id}"}, "quantity": quantity,
                 "restockType": restock,
                 "location": {"id": LOCATION_ID} if restock in ("RETURN", "CANCEL") else None}
                for line, quantity, restock in wanted],
            "suggestedTransactions": transactions,
        }}}}

    def _returnable(self, order_gid: Any) -> dict[str, Any]:
        order = self.orders.get(_tail(order_gid))
        if order is None:
            return {"nodes": []}
        nodes = [{"quantity": line.fulfilled - line.returned - line.refunded,
                  "fulfillmentLineItem": {"id": line.fulfillment_line_item_id,
                                          "lineItem": {"id": f"gid://shopify/LineItem/{line.id}"}}}
                 for line in order.lines.values()
                 if line.fulfilled - line.returned - line.refunded > 0]
        return {"nodes": [{"id": f"gid://shopify/Fulfillment/{order.id}01",
                           "returnableFulfillmentLineItems": {"nodes": nodes}}] if nodes else []}

    # -- mutations ---------------------------------------------------------------------------------

    def _refund_create(self, version: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        directive = _DIRECTIVE.search(query)
        key = None
        if directive:
            key = variables.get(directive.group(1)) if directive.group(1) else directive.group(2)
        if version >= IDEMPOTENT_REQUIRED_SINCE and not key:
            return {"errors": [{"message": "The @idempotent directive is required for this mutation.",
                                "extensions": {"code": "BAD_REQUEST"}}]}
        if key and key in self.idempotent:
            return self.idempotent[key]
        answer = {"data": {"refundCreate": self._refund(variables.get("input") or {})}}
        if key:
            self.idempotent[key] = answer
        return answer

    def _refund(self, data: dict[str, Any]) -> dict[str, Any]:
        def refused(field_path: list[str], message: str) -> dict[str, Any]:
            return {"refund": None, "userErrors": [{"field": field_path, "message": message}]}

        order = self.orders.get(_tail(data.get("orderId")))
        if order is None:
            return refused(["orderId"], "Order does not exist")
        if data.get("currency") not in (None, order.currency):
            return refused(["currency"], "Currency must match the order's presentment currency")
        lines = []
        for i, entry in enumerate(data.get("refundLineItems") or []):
            line = order.lines.get(int(_tail(entry.get("lineItemId")) or 0))
            if line is None:
                return refused(["refundLineItems", str(i), "lineItemId"], "Line item does not exist")
            quantity = int(entry.get("quantity") or 0)
            if quantity < 1 or quantity > line.quantity - line.refunded:
                return refused(["refundLineItems", str(i), "quantity"],
                               "Quantity cannot refund more items than were purchased")
            restock = entry.get("restockType") or "NO_RESTOCK"
            if restock in ("RETURN", "CANCEL") and not entry.get("locationId"):
                return refused(["refundLineItems", str(i), "locationId"],
                               "Location must be specified when restocking items")
            lines.append((line, quantity, restock))
        transactions, total = [], Decimal(0)
        for i, entry in enumerate(data.get("transactions") or []):
            parent = next((t for t in order.transactions
                           if f"gid://shopify/OrderTransaction/{t.id}" == entry.get("parentId")), None)
            if entry.get("kind") != "REFUND" or parent is None:
                return refused(["transactions", str(i), "parentId"],
                               "Parent transaction must be a successful sale or capture")
            amount = Decimal(str(entry.get("amount")))
            if amount <= 0 or amount > parent.left:
                return refused(["transactions", str(i), "amount"],
                               f"Amount {amount} exceeds the {parent.left} refundable on the "
                               "transaction")
            transactions.append((parent, amount))
            total += amount
        if total > order.refundable:
            return refused(["transactions"], "Refund amount exceeds the refundable amount")
        for line, quantity, restock in lines:
            line.refunded += quantity
            if restock in ("RETURN", "CANCEL"):
                line.restocked += quantity
        for parent, amount in transactions:
            parent.refunded += amount
        refund = {"id": f"gid://shopify/Refund/{self._id()}", "note": data.get("note"),
                  "totalRefundedSet": _money(total, order.currency)}
        order.refunds.append(refund)
        order.refund_inputs.append(data)
        self.refunds_created += 1
        return {"refund": dict(refund), "userErrors": []}

    def _return_create(self, version: str, data: dict[str, Any]) -> dict[str, Any]:
        def refused(field_path: list[str], message: str, code: str) -> dict[str, Any]:
            return {"data": {"returnCreate": {"return": None, "userErrors": [
                {"field": field_path, "message": message, "code": code}]}}}

        order = self.orders.get(_tail(data.get("orderId")))
        if order is None:
            return refused(["returnInput", "orderId"], "Order does not exist", "NOT_FOUND")
        by_fli = {line.fulfillment_line_item_id: line for line in order.lines.values()}
        items = data.get("returnLineItems") or []
        if not items:
            return refused(["returnInput", "returnLineItems"], "Return line items can't be blank",
                           "BLANK")
        taken: dict[int, int] = {}
        for i, entry in enumerate(items):
            path = ["returnInput", "returnLineItems", str(i)]
            if version < RETURN_REASON_OPTIONAL_SINCE and not entry.get("returnReason"):
                return {"errors": [{"message": "Variable $returnInput of type ReturnInput! was "
                                               "provided invalid value for returnReason"}]}
            line = by_fli.get(entry.get("fulfillmentLineItemId"))
            if line is None:
                return refused(path + ["fulfillmentLineItemId"], "Fulfillment line item not found",
                               "NOT_FOUND")
            quantity = int(entry.get("quantity") or 0)
            available = line.fulfilled - line.returned - line.refunded - taken.get(line.id, 0)
            if quantity < 1 or quantity > available:
                return refused(path + ["quantity"], "Quantity is not available for return",
                               "INVALID")
            if len(entry.get("returnReasonNote") or "") > 255:
                return refused(path + ["returnReasonNote"], "Return reason note is too long",
                               "TOO_LONG")
            taken[line.id] = taken.get(line.id, 0) + quantity
        for line_id, quantity in taken.items():
            order.lines[line_id].returned += quantity
        created = {"id": f"gid://shopify/Return/{self._id()}",
                   "name": f"{order.name}-R{len(order.returns) + 1}", "status": "OPEN",
                   "returnLineItems": {"nodes": [
                       {"returnReasonNote": entry.get("returnReasonNote") or "",
                        "quantity": int(entry["quantity"])} for entry in items]}}
        order.returns.append(created)
        order.return_inputs.append(data)
        return {"data": {"returnCreate": {
            "return": {k: created[k] for k in ("id", "name", "status")}, "userErrors": []}}}
