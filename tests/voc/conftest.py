"""VOC core tests: a Korean shop (Asia/Seoul, Mon–Fri 09:00–18:00) whose mail goes to a real SMTP
server on loopback, its merchant's staff, and helpers to record items and deliver their messages."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.staff import add_staff
from ccms_addon.store import repository
from ccms_addon.store.models import (Merchant, Order, OutboundMessage, Shop, StaffRole,
                                     VocChannel, VocItem, VocKind)
from ccms_addon.voc.intake import NewVocItem, record_voc_item

SENDER = "care@ccms.test"
SHOPPER = "shopper@example.com"
HOURS = {"timezone": "Asia/Seoul",
         "weekly": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
         "holidays": ["2026-12-25"]}


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER},
        "inbound": {"domain": "in.ccms.test"}})


@pytest.fixture
def shop(make_shop, runtime):
    made = make_shop("cafe24", "kshop", name="K 상점",
                     merchant=Merchant(name="K", email="owner@kshop.test")).shop
    with runtime.db.session() as s:
        row = s.get(Shop, made.id)
        row.timezone = "Asia/Seoul"
        row.settings = {"widget": {"hours": HOURS, "ack_promise_hours": 2,
                                   "categories": [{"key": "delivery", "labels": {"en": "Delivery"}},
                                                  {"key": "quality", "labels": {"en": "Quality"}}]},
                        "voc": {"rules": [{"keywords": ["배송", "late"], "category": "delivery"},
                                          {"keywords": ["broken", "파손"], "category": "quality",
                                           "severity": "high"}]}}
        row.inbound_key = "k1"
    return made


@pytest.fixture
def other_shop(make_shop):
    return make_shop("shopify", "other.myshopify.com", name="Other",
                     merchant=Merchant(name="O", email="o@other.test")).shop


@pytest.fixture
def staff(runtime, shop):
    with runtime.db.session() as s:
        agent = add_staff(s, shop.merchant_id, "lee@kshop.test", "Lee", StaffRole.AGENT)
        owner = add_staff(s, shop.merchant_id, "owner@kshop.test", "Kim", StaffRole.OWNER,
                          password="correct horse battery")
        s.expunge_all()
    return {"agent": agent, "owner": owner}


def sync_order(runtime, shop_id: int, number: str = "1001", product: str = "P-1",
               email: str = SHOPPER) -> int:
    """An order stored the way the pipeline stores it; returns its id."""
    from datetime import datetime, timezone
    placed = datetime(2026, 11, 1, tzinfo=timezone.utc)
    record = OrderRecord(
        platform_order_id=f"o-{number}", number=number, currency="KRW", total=Decimal("39000"),
        updated_at=placed, placed_at=placed, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED, email=email, customer_name="박민",
        customer=CustomerRecord(platform_customer_id="c-1", email=email, name="박민"),
        lines=(OrderLineRecord(f"l-{number}", "Cotton shirt", 1, Decimal("39000"), sku="S-1",
                               product_id=product),))
    with runtime.db.session() as s:
        repository.upsert_orders(s, shop_id, [record])
    with runtime.db.session() as s:
        return s.scalar(select(Order.id).where(Order.shop_id == shop_id, Order.number == number))


def new_item(runtime, shop_id: int, body: str = "배송이 늦어요", **kwargs) -> VocItem:
    fields = dict(kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body=body, actor="shopper",
                  contact_email=SHOPPER, contact_name="박민", locale="ko")
    fields.update(kwargs)
    return record_voc_item(runtime, shop_id, NewVocItem(**fields))


def deliver_all(runtime) -> None:
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True)


def outbound(runtime) -> list[OutboundMessage]:
    with runtime.db.session() as s:
        return s.scalars(select(OutboundMessage).order_by(OutboundMessage.id)).all()
