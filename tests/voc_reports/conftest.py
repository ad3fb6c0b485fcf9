"""VOC figures tests: a Korean shop (Asia/Seoul) whose items are recorded through
``record_voc_item`` and moved through ``VocDesk`` (the real lifecycle), orders stored the way the
pipeline stores them, and a loopback SMTP server for the digest."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import (Merchant, Order, Shop, StaffRole, VocChannel, VocItem,
                                     VocKind)
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.service import VocDesk

SEOUL = ZoneInfo("Asia/Seoul")
SENDER = "care@ccms.test"
OWNER = "owner@kshop.test"
ACTOR = "staff:1:tester"


@pytest.fixture
def settings(settings, smtp_server):
    """Mail to the loopback server; queues of this session's own (suites running side by side
    may share a Redis database, and a worker of theirs must not take our jobs)."""
    return dataclasses.replace(settings, queue_prefix=f"voc-reports-{os.getpid()}:", platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER}})


@pytest.fixture
def shop(runtime, make_shop):
    shop = make_shop("cafe24", "kshop", name="K 상점",
                     merchant=Merchant(name="K", email="merchant@kshop.test")).shop
    with runtime.db.session() as session:
        row = session.get(Shop, shop.id)
        row.timezone, row.locale = "Asia/Seoul", "ko"
        add_staff(session, shop.merchant_id, OWNER, "사장님", StaffRole.OWNER, locale="ko")
        add_staff(session, shop.merchant_id, "agent@kshop.test", "Agent", StaffRole.AGENT)
    return shop


@pytest.fixture
def other_shop(make_shop):
    """Another merchant's shop: its items must never reach the first shop's figures."""
    return make_shop("shopify", "other.myshopify.com", name="Other",
                     merchant=Merchant(name="Other", email="o@other.test")).shop


@pytest.fixture
def desk(runtime) -> VocDesk:
    return VocDesk(runtime)


def seoul(year, month, day, hour=0, minute=0, second=0, micro=0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=SEOUL).astimezone(
        timezone.utc)


@pytest.fixture
def voc(runtime, shop):
    """Record an item: voc(kind, body, at=…, shop_id=…, **NewVocItem fields)."""
    def _record(kind: VocKind = VocKind.COMPLAINT, body: str = "배송이 늦어요", *,
                at: datetime | None = None, shop_id: int | None = None,
                channel=VocChannel.WIDGET, **kwargs) -> VocItem:
        kwargs.setdefault("severity", "normal")
        return record_voc_item(runtime, shop_id or shop.id, NewVocItem(
            kind=kind, channel=channel, body=body, actor="shopper", occurred_at=at,
            **kwargs))
    return _record


def order_record(number: str, customer: str | None, placed_at: datetime, *,
                 cancelled: bool = False, product_id: str = "101",
                 title: str = "머그컵") -> OrderRecord:
    return OrderRecord(
        platform_order_id=f"P{number}", number=number, currency="KRW", total=Decimal("15000"),
        updated_at=placed_at, placed_at=placed_at, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED,
        cancelled_at=placed_at + timedelta(hours=1) if cancelled else None,
        email=f"{customer}@example.com" if customer else "guest@example.com",
        customer_name=customer,
        customer=CustomerRecord(platform_customer_id=customer, email=f"{customer}@example.com",
                                name=customer) if customer else None,
        lines=(OrderLineRecord("L1", title, 1, Decimal("15000"), sku="SKU-" + product_id,
                               product_id=product_id),))


@pytest.fixture
def orders(runtime, shop):
    """Store orders: orders(record, …) → {number: (order id, customer id)}."""
    def _store(*records: OrderRecord, shop_id: int | None = None) -> dict[str, tuple[int, int]]:
        sid = shop_id or shop.id
        with runtime.db.session() as session:
            repository.upsert_orders(session, sid, records)
        with runtime.db.session() as session:
            return {row.number: (row.id, row.customer_id) for row in session.query(
                Order.number, Order.id, Order.customer_id).filter(Order.shop_id == sid)}
    return _store


def percentile_cont(values, p):
    """PostgreSQL's percentile_cont, by hand."""
    values = sorted(values)
    if not values:
        return None
    pos = p * (len(values) - 1)
    low = int(pos)
    frac = pos - low
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * frac
