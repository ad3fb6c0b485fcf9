"""Convergence as a property: however often and in whatever order one order's updates arrive, the
store ends holding the newest of them, once (DESIGN.md §3: the newest platform ``updated_at`` wins).

Two paths are exercised, each over generated interleavings:

* the store itself: ``repository.upsert_orders`` fed duplicated, permuted records in random batches,
  each batch its own transaction or all of them in one;
* the real pipeline: signed Shopify deliveries (exact copies and re-sends under a new webhook id)
  POSTed to the app in a random order, each stored delivery run through ``DeliveryProcessor`` in
  another random order, interleaved with the posting, some run twice.

Hypothesis runs many examples inside one test function, so the function-scoped fixtures (runtime,
shop, client) are shared by the examples and every example empties the store's tables itself.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ccms_addon.jobs.pipeline import DeliveryProcessor
from ccms_addon.platforms import FinancialStatus, FulfillmentStatus, OrderLineRecord, OrderRecord
from ccms_addon.store import repository
from ccms_addon.store.models import Base, DeliveryStatus, Merchant, Order, Shop, WebhookDelivery
from tests.conftest import SHOPIFY_SECRET
from tests.samples import read_sample

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
ORDER_ID = "820982911946154508"
SHOP_DOMAIN = "convergence.myshopify.com"
#: the offsets Shopify renders a shop's local time with; the same instant in several spellings
OFFSETS = [timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9)),
           timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]

FIXTURES_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@dataclass(frozen=True)
class Version:
    """One state of the order as the platform reported it."""

    updated_at: datetime
    total: Decimal
    #: (line number, quantity, unit price in cents), unique by line number
    lines: tuple[tuple[int, int, int], ...]

    def line_set(self) -> set[tuple[str, int, Decimal]]:
        return {(line_id(n), quantity, Decimal(cents) / 100) for n, quantity, cents in self.lines}


def line_id(n: int) -> str:
    return str(487817672276298554 + n)


def versions(*, microseconds: bool) -> st.SearchStrategy[list[Version]]:
    """1–5 versions with distinct ``updated_at``, in time order (the newest last)."""
    unit = timedelta(microseconds=1) if microseconds else timedelta(seconds=1)
    top = 10**9 if microseconds else 10**6
    line = st.tuples(st.integers(0, 7), st.integers(1, 5), st.integers(1, 99_999))
    version = st.tuples(st.lists(line, min_size=1, max_size=4, unique_by=lambda t: t[0]),
                        st.integers(1, 10**7))
    return st.lists(st.tuples(st.integers(0, top), version), min_size=1, max_size=5,
                    unique_by=lambda t: t[0]).map(lambda items: [
                        Version(T0 + offset * unit, Decimal(cents) / 100, tuple(lines))
                        for offset, (lines, cents) in sorted(items, key=lambda t: t[0])])


def empty_store_but_shops(runtime) -> None:
    """Delete every row an example may have written; the shop (and its merchant) stay, since the
    app caches the shop's identity."""
    keep = {Shop.__tablename__, Merchant.__tablename__}
    with runtime.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in keep:
                conn.execute(table.delete())


def stored_order(runtime, shop_id: int) -> Order:
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        return s.scalars(select(Order).where(Order.shop_id == shop_id)
                         .options(selectinload(Order.lines))).one()


def assert_newest(order: Order, newest: Version) -> None:
    assert order.platform_order_id == ORDER_ID
    assert order.platform_updated_at == newest.updated_at
    assert order.total == newest.total
    stored_lines = {(line.platform_line_id, line.quantity, line.unit_price) for line in order.lines}
    assert stored_lines == newest.line_set()
    assert len(order.lines) == len(newest.lines)


@pytest.fixture
def shop(make_shop):
    return make_shop("shopify", SHOP_DOMAIN).shop


# ---------------------------------------------------------------------------------- the store


def record(version: Version) -> OrderRecord:
    return OrderRecord(
        platform_order_id=ORDER_ID, number="#1001", currency="USD", total=version.total,
        updated_at=version.updated_at, placed_at=T0, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.UNFULFILLED, email="buyer@example.com",
        lines=tuple(OrderLineRecord(platform_line_id=line_id(n), title=f"Item {n}",
                                    quantity=quantity, unit_price=Decimal(cents) / 100)
                    for n, quantity, cents in version.lines))


@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURES_SHARED)
@given(history=versions(microseconds=True), data=st.data())
def test_upserts_in_any_order_and_batching_converge(runtime, shop, history, data):
    empty_store_but_shops(runtime)
    copies = data.draw(st.lists(st.integers(1, 3), min_size=len(history), max_size=len(history)),
                       label="copies per version")
    arrivals = data.draw(st.permutations([v for v, n in zip(history, copies) for _ in range(n)]),
                         label="arrival order")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(arrivals) - 1, 1)),
                                    max_size=len(arrivals) - 1), label="batch boundaries"))
    batches = [arrivals[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrivals)]) if arrivals[a:b]]

    # each batch its own transaction, or all in one (the staging tables are reused within it)
    one_transaction = data.draw(st.booleans(), label="one transaction")
    winners = []
    with runtime.db.session() as shared:
        for batch in batches:
            with (nullcontext(shared) if one_transaction else runtime.db.session()) as s:
                changes = repository.upsert_orders(s, shop.id, [record(v) for v in batch])
            if changes:
                winners.append(max(batch, key=lambda v: v.updated_at))
                assert [c.created for c in changes] == [len(winners) == 1]

    newest = history[-1]
    assert_newest(stored_order(runtime, shop.id), newest)
    # every batch that changed the row brought a version newer than any stored before it
    assert winners == sorted(set(winners), key=lambda v: v.updated_at)
    assert winners[-1] == newest
    # a replay of everything, in one batch, changes nothing
    with runtime.db.session() as s:
        assert repository.upsert_orders(s, shop.id, [record(v) for v in arrivals]) == []
    assert_newest(stored_order(runtime, shop.id), newest)


# ------------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Post:
    webhook_id: str
    body: bytes
    topic: str


def shopify_body(template: dict, version: Version, zone: timezone) -> bytes:
    order = copy.deepcopy(template)
    lines = []
    for n, quantity, cents in version.lines:
        line = copy.deepcopy(template["line_items"][n % len(template["line_items"])])
        line.update(id=int(line_id(n)), quantity=quantity, price=str(Decimal(cents) / 100))
        lines.append(line)
    order.update(id=int(ORDER_ID), updated_at=version.updated_at.astimezone(zone).isoformat(),
                 total_price=str(version.total), current_total_price=str(version.total),
                 line_items=lines, refunds=[])
    return json.dumps(order).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES_SHARED)
@given(history=versions(microseconds=False), data=st.data())
def test_deliveries_in_any_order_converge_through_the_pipeline(runtime, shop, client, history,
                                                                 data):
    template = json.loads(read_sample("shopify", "orders-updated"))
    empty_store_but_shops(runtime)
    adapter = runtime.platforms["shopify"]

    posts: list[Post] = []
    for i, version in enumerate(history):
        # the platform may send one update under several webhook ids, each possibly retried
        for _ in range(data.draw(st.integers(1, 2), label=f"webhook ids of version {i}")):
            zone = data.draw(st.sampled_from(OFFSETS), label="rendered offset")
            topic = data.draw(st.sampled_from(["orders/updated", "orders/paid"]), label="topic")
            post = Post(str(uuid.uuid4()), shopify_body(template, version, zone), topic)
            posts += [post] * data.draw(st.integers(1, 3), label="copies")
    arrivals = data.draw(st.permutations(posts), label="arrival order")

    answers: Counter = Counter()
    headers_of: dict[str, dict] = {}
    processor = DeliveryProcessor(runtime)
    ran: set[int] = set()

    def stored_ids() -> list[int]:
        with runtime.db.session() as s:
            return list(s.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))

    for post in arrivals:
        headers = headers_of.get(post.webhook_id)
        if headers is None:  # an exact copy repeats the headers of the first send
            headers = adapter.delivery_headers(post.body, shop_domain=SHOP_DOMAIN,
                                               topic=post.topic, secret=SHOPIFY_SECRET)
            headers["X-Shopify-Webhook-Id"] = post.webhook_id
            headers_of[post.webhook_id] = headers
        response = client.post("/webhooks/shopify", data=post.body, headers=headers)
        assert response.status_code == 200, response.json
        answers[response.json["status"]] += 1
        # workers may run some stored deliveries before the rest arrive
        pending = [i for i in stored_ids() if i not in ran]
        if pending and data.draw(st.booleans(), label="process now"):
            for delivery_id in data.draw(st.permutations(pending), label="order now")[
                    :data.draw(st.integers(1, len(pending)), label="how many now")]:
                assert processor.run(delivery_id) == DeliveryStatus.PROCESSED.value
                ran.add(delivery_id)

    rest = [i for i in stored_ids() if i not in ran]
    for delivery_id in data.draw(st.permutations(rest), label="order of the rest"):
        assert processor.run(delivery_id) == DeliveryStatus.PROCESSED.value
    # a retried job finds its delivery final and changes nothing
    reruns = data.draw(st.lists(st.sampled_from(stored_ids()), max_size=3), label="reruns")
    for delivery_id in reruns:
        assert processor.run(delivery_id) == DeliveryStatus.PROCESSED.value

    distinct = {p.webhook_id for p in posts}
    assert answers == Counter({"accepted": len(distinct), "duplicate": len(posts) - len(distinct)})
    with runtime.db.session() as s:
        rows = s.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.status)).all()
    assert sorted(r.delivery_id for r in rows) == sorted(distinct)
    assert {r.status for r in rows} == {DeliveryStatus.PROCESSED}
    assert_newest(stored_order(runtime, shop.id), history[-1])
