"""The store converges whatever order platform records arrive in, and never mixes shops."""

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ccms_addon.money import format_amount
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord, RefundRecord)
from ccms_addon.store import repository
from ccms_addon.store.models import Customer, Money, Order, OrderLine, Refund, UtcDateTime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def order(updated_at=T0, *, oid="1001", total="15000", currency="KRW", complete=True, lines=2,
          status=FinancialStatus.PAID, customer=None, refunds=()):
    return OrderRecord(
        platform_order_id=oid, number=f"#{oid}", currency=currency, total=Decimal(total),
        updated_at=updated_at, placed_at=T0, financial_status=status,
        fulfillment_status=FulfillmentStatus.UNFULFILLED, email="buyer@example.com",
        customer=customer, complete=complete, refunds=tuple(refunds),
        lines=tuple(OrderLineRecord(platform_line_id=f"L{i}", title=f"Item {i}", quantity=1,
                                    unit_price=Decimal("7500")) for i in range(lines)))


def test_insert_then_replay_changes_nothing(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    with runtime.db.session() as s:
        first = repository.upsert_orders(s, shop.id, [order()])
    with runtime.db.session() as s:
        again = repository.upsert_orders(s, shop.id, [order()])
    assert [c.created for c in first] == [True]
    assert again == []


def test_krw_has_no_minor_unit(runtime, make_shop):
    shop = make_shop("cafe24", "mall").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [order(total="15000", currency="krw")])
        stored = repository.get_order(s, shop.id, "1001")
    assert stored.total == Decimal("15000")
    assert stored.currency == "KRW"
    assert format_amount(stored.total, stored.currency) == "15000"
    assert format_amount(Decimal("404.95"), "USD") == "404.95"
    assert format_amount(Decimal("1.25"), "BHD") == "1.250"


def test_older_update_never_overwrites_newer(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    newer = order(T0 + timedelta(minutes=5), total="20000", status=FinancialStatus.REFUNDED, lines=1)
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [newer])
    with runtime.db.session() as s:
        changes = repository.upsert_orders(s, shop.id, [order(T0)])
    assert changes == []
    with runtime.db.session() as s:
        stored = repository.get_order(s, shop.id, "1001")
        assert stored.total == Decimal("20000")
        assert stored.financial_status is FinancialStatus.REFUNDED
        assert len(stored.lines) == 1


def test_newest_in_one_batch_wins(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    batch = [order(T0 + timedelta(seconds=i), total=str(100 + i)) for i in (3, 1, 7, 2)]
    with runtime.db.session() as s:
        changes = repository.upsert_orders(s, shop.id, batch)
        stored = repository.get_order(s, shop.id, "1001")
    assert len(changes) == 1
    assert stored.total == Decimal("107")


def test_summary_never_overwrites_a_complete_order(runtime, make_shop):
    shop = make_shop("cafe24", "mall").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [order(T0, total="30000")])
    summary = order(T0 + timedelta(hours=1), total="1", complete=False, lines=0)
    with runtime.db.session() as s:
        assert repository.upsert_orders(s, shop.id, [summary]) == []
        stored = repository.get_order(s, shop.id, "1001")
        assert stored.total == Decimal("30000") and stored.is_complete and len(stored.lines) == 2


def test_complete_record_replaces_a_summary(runtime, make_shop):
    shop = make_shop("cafe24", "mall").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [order(T0, complete=False, lines=0, total="5")])
    with runtime.db.session() as s:
        changes = repository.upsert_orders(s, shop.id, [order(T0, total="30000")])
        stored = repository.get_order(s, shop.id, "1001")
    assert [c.created for c in changes] == [False]
    assert stored.is_complete and stored.total == Decimal("30000") and len(stored.lines) == 2


def test_refunds_recorded_once_and_linked_when_the_order_comes_later(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    refund = RefundRecord(platform_refund_id="R1", platform_order_id="1001", amount=Decimal("9.00"),
                          currency="USD", note="damaged", created_at=T0)
    with runtime.db.session() as s:
        assert repository.record_refunds(s, shop.id, [refund]) == 1
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop.id, [order(refunds=[refund], currency="USD", total="9")])
        stored = repository.get_order(s, shop.id, "1001")
        assert [r.platform_refund_id for r in stored.refunds] == ["R1"]
        assert s.scalar(select(func.count()).select_from(Refund)) == 1


def test_same_platform_ids_in_two_shops_stay_apart(runtime, make_shop):
    a = make_shop("shopify", "a.myshopify.com").shop
    b = make_shop("shopify", "b.myshopify.com").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, a.id, [order(total="1")])
        repository.upsert_orders(s, b.id, [order(total="2")])
    with runtime.db.session() as s:
        assert repository.get_order(s, a.id, "1001").total == Decimal("1")
        assert repository.get_order(s, b.id, "1001").total == Decimal("2")
        assert s.scalar(select(func.count()).select_from(Order)) == 2
        assert s.scalar(select(func.count()).select_from(OrderLine)) == 4


def test_customer_without_contact_data_keeps_what_we_know(runtime, make_shop):
    """Shopify sends null name/email until protected customer data is granted."""
    shop = make_shop("shopify", "a.myshopify.com").shop
    known = CustomerRecord("C1", email="bob@example.com", name="Bob", updated_at=T0)
    hidden = CustomerRecord("C1", email=None, name=None, updated_at=T0 + timedelta(days=1))
    with runtime.db.session() as s:
        repository.upsert_customers(s, shop.id, [known])
    with runtime.db.session() as s:
        ids = repository.upsert_customers(s, shop.id, [hidden])
        customer = s.get(Customer, ids["C1"])
        assert (customer.email, customer.name) == ("bob@example.com", "Bob")


def test_orders_page_is_keyset_and_scoped(runtime, make_shop):
    a = make_shop("shopify", "a.myshopify.com").shop
    b = make_shop("shopify", "b.myshopify.com").shop
    with runtime.db.session() as s:
        repository.upsert_orders(s, a.id, [order(T0 + timedelta(seconds=i), oid=str(i))
                                           for i in range(7)])
        repository.upsert_orders(s, b.id, [order(oid="999")])
    seen, after = [], None
    with runtime.db.session() as s:
        while True:
            page = repository.list_orders(s, a.id, after=after, limit=3)
            if not page:
                break
            seen += [o.platform_order_id for o in page]
            after = (page[-1].platform_updated_at, page[-1].id)
    assert seen == [str(i) for i in range(7)]


def test_newer_complete_record_replaces_the_lines(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    first = order(T0, lines=2)
    later = dataclasses.replace(order(T0 + timedelta(minutes=1), lines=0), lines=(
        OrderLineRecord("L1", title="Item 1", quantity=3, unit_price=Decimal("2.5")),
        OrderLineRecord("L9", title="Item 9", quantity=1, unit_price=Decimal("1")),
        OrderLineRecord("L9", title="repeated", quantity=7, unit_price=Decimal("1"))))
    with runtime.db.session() as s:
        [created] = repository.upsert_orders(s, shop.id, [first])
        # the same transaction again: a second batch sees the first one's rows
        [changed] = repository.upsert_orders(s, shop.id, [later])
        stored = repository.get_order(s, shop.id, "1001")
        assert (created.created, changed.created) == (True, False)
        assert changed.order_id == created.order_id
        assert [(line.platform_line_id, line.title, line.quantity, line.unit_price)
                for line in stored.lines] == [("L1", "Item 1", 3, Decimal("2.5")),
                                              ("L9", "Item 9", 1, Decimal("1"))]
        assert s.scalar(select(func.count()).select_from(OrderLine)) == 2


def test_a_rolled_back_batch_leaves_nothing_behind(runtime, make_shop):
    """The staging tables outlive transactions on the connection: a batch that rolls back must not
    leak rows into the next one, on the same pooled connection."""
    shop = make_shop("shopify", "a.myshopify.com").shop
    with runtime.db.sessionmaker() as s:
        repository.upsert_orders(s, shop.id, [order(oid="gone", customer=CustomerRecord("C-gone"))])
        s.rollback()
    with runtime.db.session() as s:
        changes = repository.upsert_orders(s, shop.id, [order(oid="kept")])
    assert [(c.platform_order_id, c.created) for c in changes] == [("kept", True)]
    with runtime.db.session() as s:
        assert s.scalars(select(Order.platform_order_id)).all() == ["kept"]
        assert s.scalar(select(func.count()).select_from(Customer)) == 0
        assert s.scalar(select(func.count()).select_from(OrderLine)) == 2


def test_a_large_batch_links_customers_and_keeps_the_newest(runtime, make_shop):
    """More rows than one multi-row statement takes, with repeats of orders and customers."""
    shop = make_shop("shopify", "a.myshopify.com").shop
    buyers = [CustomerRecord(f"C{i}", email=f"b{i}@example.com", updated_at=T0) for i in range(300)]
    batch = [order(T0 + timedelta(seconds=i % 7), oid=str(i % 1200), total=str(i),
                   customer=buyers[i % 300]) for i in range(1500)]
    with runtime.db.session() as s:
        changes = repository.upsert_orders(s, shop.id, batch)
    assert len(changes) == 1200 and all(c.created for c in changes)
    newest = {}
    for rec in batch:
        seen = newest.get(rec.platform_order_id)
        if seen is None or rec.updated_at > seen.updated_at:
            newest[rec.platform_order_id] = rec
    with runtime.db.session() as s:
        stored = dict(s.execute(select(Order.platform_order_id, Order.total)).all())
        assert stored == {pid: rec.total for pid, rec in newest.items()}
        linked = s.execute(select(Order.platform_order_id, Customer.platform_customer_id)
                           .join(Customer, Order.customer_id == Customer.id)).all()
        assert dict(linked) == {pid: rec.customer.platform_customer_id
                                for pid, rec in newest.items()}
        assert s.scalar(select(func.count()).select_from(OrderLine)) == 2400
        assert s.scalar(select(func.count()).select_from(Customer)) == 300


def test_a_redacted_customer_keeps_its_id_and_stays_empty(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    with runtime.db.session() as s:
        ids = repository.upsert_customers(s, shop.id, [CustomerRecord("C1", email="x@example.com")])
    with runtime.db.session() as s:
        s.get(Customer, ids["C1"]).redacted_at = T0
        s.get(Customer, ids["C1"]).email = None
        # the pending redaction is flushed before the upsert reads the table
        again = repository.upsert_customers(s, shop.id, [CustomerRecord(
            "C1", email="x@example.com", name="X", updated_at=T0 + timedelta(days=1))])
        changes = repository.upsert_orders(s, shop.id,
                                           [order(customer=CustomerRecord("C1", name="X"))])
    assert again == ids
    with runtime.db.session() as s:
        customer = s.get(Customer, ids["C1"])
        assert (customer.email, customer.name) == (None, None)
        assert s.get(Order, changes[0].order_id).customer_id == ids["C1"]


def test_staged_values_are_what_sqlalchemy_would_bind(runtime):
    """Rows are loaded without SQLAlchemy's per-value bind processing; what they hold must still be
    exactly what it would have written, or comparisons in SQL would go wrong on SQLite."""
    dialect = runtime.db.engine.dialect
    values = repository._VALUES[dialect.name]
    bind_time = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    bind_money = Money.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
    zones = [timezone.utc, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3, minutes=-30))]
    for moment in (T0, T0.replace(microsecond=7), datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                   datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)):
        for zone in zones:
            assert values.time(moment.astimezone(zone)) == bind_time(moment.astimezone(zone))
    assert values.time(None) is None
    for amount in (Decimal("15000"), Decimal("404.95"), Decimal("1.250"), Decimal("0.0001")):
        assert values.money(amount) == bind_money(amount)
    with pytest.raises(ValueError):
        values.time(datetime(2026, 1, 1))


def test_a_naive_datetime_is_refused(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    with runtime.db.session() as s, pytest.raises(ValueError):
        repository.upsert_orders(s, shop.id, [order(datetime(2026, 3, 1, 12, 0))])


def test_a_customer_record_that_changes_nothing_leaves_the_row_alone(runtime, make_shop):
    shop = make_shop("shopify", "a.myshopify.com").shop
    known = CustomerRecord("C1", email="bob@example.com", updated_at=T0)
    with runtime.db.session() as s:
        ids = repository.upsert_customers(s, shop.id, [known])
    with runtime.db.session() as s:
        touched = s.get(Customer, ids["C1"]).updated_at
        embedded = CustomerRecord("C1", email="x@y.z")  # no updated_at: fills gaps only
        assert repository.upsert_customers(s, shop.id, [known, embedded]) == ids
    with runtime.db.session() as s:
        customer = s.get(Customer, ids["C1"])
        assert (customer.email, customer.updated_at) == ("bob@example.com", touched)
    with runtime.db.session() as s:  # an older record still fills a gap
        repository.upsert_customers(s, shop.id, [CustomerRecord("C1", name="Bob", email="x@y.z")])
    with runtime.db.session() as s:
        customer = s.get(Customer, ids["C1"])
        assert (customer.email, customer.name) == ("bob@example.com", "Bob")
        assert customer.updated_at > touched
