"""Programs tests: a Korean shop with an email-configured loopback SMTP server, orders stored the
way the pipeline stores them, and helpers to move a follow-up along."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from rq import SimpleWorker

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.programs import service
from ccms_addon.programs.schemas import load_terms
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store import repository
from ccms_addon.store.models import Merchant, Order, ProgramKind

SENDER = "care@ccms.test"
SHOPPER = "shopper@example.com"

CHECK_IN_TERMS = {"steps": [
    {"key": "arrival", "offset_days": 3, "kind": "check_in", "template": "arrival_check_in"},
    {"key": "promo", "offset_days": 10, "purpose": "marketing", "template": "thank_you"},
]}
FREE_RETURN_TERMS = {"window_days": 365, "conditions": ["unused"],
                     "steps": [{"key": "reminder", "offset_days": 30, "kind": "reminder",
                                "template": "free_return_reminder"}]}
BUYBACK_TERMS = {"window_months": 12, "qualifying_events": [{"code": "involuntary_job_loss"}],
                 "value_schedule": [{"until_month": 3, "percent": "100"},
                                    {"until_month": 6, "percent": "80"},
                                    {"until_month": 12, "percent": "60"}],
                 "cap": {"amount": "50000", "currency": "KRW"},
                 "evidence_required": ["termination letter"]}


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": SENDER}})


@pytest.fixture
def new_shop(make_shop):
    """The Korean shop with its one-time secrets (``api_token``)."""
    return make_shop("cafe24", "kshop", name="K 상점",
                     merchant=Merchant(name="K", email="owner@kshop.test"))


@pytest.fixture
def shop(new_shop):
    return new_shop.shop


@pytest.fixture
def set_shop(runtime, shop):
    from ccms_addon.store.models import Shop

    def _set(**values):
        with runtime.db.session() as session:
            row = session.get(Shop, shop.id)
            for key, value in values.items():
                setattr(row, key, value)
    _set(timezone="Asia/Seoul", locale="ko")
    return _set


@pytest.fixture
def program(runtime, shop, set_shop):
    def _create(kind: ProgramKind, terms: dict, name: str | None = None):
        with runtime.db.session() as session:
            return service.create_program(session, shop.id, kind=kind, name=name or kind.value,
                                          terms=load_terms(kind, terms), actor="test")
    return _create


def _yesterday_morning_in_seoul() -> datetime:
    from zoneinfo import ZoneInfo
    seoul = ZoneInfo("Asia/Seoul")
    day = datetime.now(seoul).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, 8, 30, tzinfo=seoul).astimezone(timezone.utc)


#: delivered at 08:30 yesterday, Seoul time: the steps lie ahead
DELIVERED = _yesterday_morning_in_seoul()


def order_record(number: str = "1001", *, fulfilled: bool = True, updated: datetime | None = None,
                 delivered: datetime | None = None,
                 email: str | None = SHOPPER, accepts_marketing: bool | None = True,
                 financial=FinancialStatus.PAID, cancelled_at=None, **extra) -> OrderRecord:
    return OrderRecord(
        platform_order_id=f"P{number}", number=number, currency="KRW", total=Decimal("45000"),
        updated_at=updated or delivered or DELIVERED,
        placed_at=(delivered or DELIVERED) - timedelta(days=2),
        financial_status=financial, cancelled_at=cancelled_at,
        fulfillment_status=FulfillmentStatus.FULFILLED if fulfilled else FulfillmentStatus.UNFULFILLED,
        email=email, customer_name="김민수",
        customer=CustomerRecord(platform_customer_id=f"C{number}", email=email, name="김민수"),
        lines=(OrderLineRecord("L1", "머그컵", 1, Decimal("15000"), sku="MUG-1", product_id="101"),
               OrderLineRecord("L2", "티셔츠", 2, Decimal("15000"), sku="TS-1", product_id="202")),
        fulfilled_at=(delivered or DELIVERED) - timedelta(days=1),
        delivered_at=delivered or DELIVERED, locale="ko-KR",
        country_code="KR", accepts_marketing=accepts_marketing, **extra)


@pytest.fixture
def sync_order(runtime, shop):
    """Store orders as the pipeline does and fire ``order_synced`` for what changed."""
    def _sync(*records: OrderRecord) -> list[int]:
        with runtime.db.session() as session:
            changes = repository.upsert_orders(session, shop.id, records)
        for change in changes:
            runtime.pm.hook.order_synced(shop_id=shop.id, order_id=change.order_id,
                                         platform_order_id=change.platform_order_id,
                                         created=change.created)
        with runtime.db.session() as session:
            return [session.query(Order.id).filter_by(shop_id=shop.id,
                                                       platform_order_id=r.platform_order_id)
                    .scalar() for r in records]
    return _sync


def run_worker(runtime) -> None:
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True, with_scheduler=False)
