"""The store converges whatever order platform records arrive in, and never mixes shops."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, select

from ccms_addon.money import format_amount
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord, RefundRecord)
from ccms_addon.store import repository
from ccms_addon.store.models import Customer, Order, OrderLine, Refund

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
