"""Order-action tests: one shop per platform, its admin API served by the loopback imitation in
tests/platform_servers/, the same order stored the way the pipeline stores it, and a complaint
linked to that order. A :class:`Platform` says how to read, on the imitation, what an action did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from ccms_addon.platforms import (FinancialStatus, FulfillmentStatus, OrderLineRecord,
                                  OrderRecord)
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store import repository
from ccms_addon.store.models import Merchant, Order, VocChannel, VocEvent, VocItem, VocKind
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from tests.platform_servers.cafe24 import ACCESS_TOKEN, Cafe24ServerState, make_item, make_order
from tests.platform_servers.cafe24 import running_server
from tests.platform_servers.shopify import ShopifyAdminServer
from tests.platform_servers.woocommerce import FakeWooCommerce, serve
from tests.platform_servers.woocommerce import make_order as make_woo_order

PLACED = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
SHOPIFY_TOKEN = "shpat_order_actions"
SHOPIFY_ORDER, SHOPIFY_LINE_A, SHOPIFY_LINE_B = 450789469, 669751112, 669751113
CAFE24_ORDER = "20261120-0000042"
CAFE24_ITEM_1, CAFE24_ITEM_2 = f"{CAFE24_ORDER}-01", f"{CAFE24_ORDER}-02"
WOO_ORDER, WOO_LINE = 41, "411"


@dataclass
class Platform:
    """One platform's imitation, seen from a test."""

    name: str
    domain: str
    credentials: dict
    settings: dict
    #: the store's copy of the platform's order
    record: Callable[[bool], OrderRecord]
    #: how many of each action the platform performed (refund, return, cancel, resend)
    count: Callable[[str], int]
    #: make the next ``times`` admin-API calls answer ``status``
    fail_next: Callable[[int, int], None]
    #: forget the order on the platform (deleted there)
    delete_order: Callable[[], None]
    #: a line of the order, its unit price, and the currency
    line: str
    unit_price: Decimal
    currency: str
    server: object


def _shopify(fulfilled: bool) -> Iterator[Platform]:
    with ShopifyAdminServer(SHOPIFY_TOKEN) as server:
        order = server.add_settlement_order(
            SHOPIFY_ORDER, name="#1001", currency="USD", fulfilled=fulfilled,
            lines=[(SHOPIFY_LINE_A, 2, "49.95"), (SHOPIFY_LINE_B, 1, "20.00")])
        order.lines[SHOPIFY_LINE_A].variant_id, order.lines[SHOPIFY_LINE_A].title = 4401, "Shirt"
        order.lines[SHOPIFY_LINE_B].title = "Gift wrap"  # a custom item: no variant
        order.email, order.customer_id = "buyer@example.com", 207119551
        order.shipping_address = {"firstName": "Bob", "lastName": "Norman", "address1": "1 Main",
                                  "city": "Ottawa", "provinceCode": "ON", "countryCodeV2": "CA",
                                  "zip": "K2P 1L4"}
        fake = server.state.settlement

        def count(action: str) -> int:
            return {"refund": fake.refunds_created, "return": len(order.returns),
                    "cancel": len(order.cancel_inputs), "resend": len(fake.placed_orders)}[action]

        def record(shipped: bool) -> OrderRecord:
            return _record(str(SHOPIFY_ORDER), "#1001", "USD", Decimal("119.90"), shipped, (
                OrderLineRecord(str(SHOPIFY_LINE_A), "Shirt", 2, Decimal("49.95"),
                                variant_id="4401"),
                OrderLineRecord(str(SHOPIFY_LINE_B), "Gift wrap", 1, Decimal("20.00"))))

        yield Platform(
            "shopify", "actions-shop.myshopify.com", {"access_token": SHOPIFY_TOKEN},
            {"api_base_url": server.base_url}, record, count,
            lambda status, times: server.fail_next(times, status),
            lambda: fake.orders.pop(str(SHOPIFY_ORDER)), str(SHOPIFY_LINE_A), Decimal("49.95"),
            "USD", server)


def _cafe24(fulfilled: bool) -> Iterator[Platform]:
    state = Cafe24ServerState()
    status = "N40" if fulfilled else "N10"
    state.orders[CAFE24_ORDER] = make_order(CAFE24_ORDER, items=[
        make_item(CAFE24_ORDER, 1, status),
        make_item(CAFE24_ORDER, 2, status, product_price="12000.00", option_price="0.00",
                  quantity=1)])
    with running_server(state) as base_url:
        def count(action: str) -> int:
            returns = state.returns.get(CAFE24_ORDER, [])
            return {"refund": sum(1 for r in returns if r["status"] == "returned"),
                    "return": sum(1 for r in returns if r["status"] == "accepted"),
                    "cancel": len(state.cancellations.get(CAFE24_ORDER, [])),
                    "resend": len(state.exchanges.get(CAFE24_ORDER, []))}[action]

        def record(shipped: bool) -> OrderRecord:
            return _record(CAFE24_ORDER, CAFE24_ORDER, "KRW", Decimal("36000"), shipped, (
                OrderLineRecord(CAFE24_ITEM_1, "상품1", 2, Decimal("12000")),
                OrderLineRecord(CAFE24_ITEM_2, "상품2", 1, Decimal("12000"))))

        def fail_next(status: int, times: int) -> None:
            state.fail_status, state.fail_times = status, times

        yield Platform("cafe24", "ccmsmall", {"access_token": ACCESS_TOKEN},
                       {"api_base_url": base_url}, record, count, fail_next,
                       lambda: state.orders.pop(CAFE24_ORDER), CAFE24_ITEM_1, Decimal("12000"),
                       "KRW", state)


def _woocommerce(fulfilled: bool) -> Iterator[Platform]:
    site = FakeWooCommerce()
    # total 57.50 EUR: line 411 is 2 × 25.00, shipping 7.50
    site.add_orders(make_woo_order(WOO_ORDER, status="completed" if fulfilled else "processing"))
    with serve(site) as url:
        def count(action: str) -> int:
            refunds = site.refunds.get(WOO_ORDER, [])
            cancels = [r for r in site.requests if r["method"] == "PUT"
                       and (r["json"] or {}).get("status") == "cancelled"]
            return {"refund": len(refunds), "return": len(refunds), "cancel": len(cancels),
                    "resend": len(site.created_orders)}[action]

        def record(shipped: bool) -> OrderRecord:
            return _record(str(WOO_ORDER), str(WOO_ORDER), "EUR", Decimal("57.50"), shipped, (
                OrderLineRecord(WOO_LINE, "Linen Shirt", 2, Decimal("25.00"), product_id="501",
                                variant_id="502"),))

        yield Platform("woocommerce", url, {"consumer_key": site.consumer_key,
                                            "consumer_secret": site.consumer_secret},
                       {}, record, count, site.fail_next, lambda: site.orders.pop(WOO_ORDER),
                       WOO_LINE, Decimal("25.00"), "EUR", site)


def _record(order_id: str, number: str, currency: str, total: Decimal, shipped: bool,
            lines: tuple[OrderLineRecord, ...]) -> OrderRecord:
    return OrderRecord(
        platform_order_id=order_id, number=number, currency=currency, total=total,
        updated_at=PLACED, placed_at=PLACED, financial_status=FinancialStatus.PAID,
        fulfillment_status=(FulfillmentStatus.FULFILLED if shipped
                            else FulfillmentStatus.UNFULFILLED),
        email="buyer@example.com", customer_name="Buyer", lines=lines)


PLATFORMS = {"shopify": _shopify, "cafe24": _cafe24, "woocommerce": _woocommerce}


@pytest.fixture
def platform_for():
    """``platform_for(name, fulfilled)``: the imitation, running for the test."""
    stack: list[Iterator[Platform]] = []

    def start(name: str, fulfilled: bool = True) -> Platform:
        generator = PLATFORMS[name](fulfilled)
        stack.append(generator)
        return next(generator)

    yield start
    for generator in reversed(stack):
        generator.close()


@dataclass
class Scene:
    """A shop of the platform, its stored order and a complaint about it."""

    platform: Platform
    shop_id: int
    order_id: int
    item_id: int
    reference: str


@pytest.fixture
def scene_for(runtime, make_shop, platform_for):
    """``scene_for(name, fulfilled=True)``: platform, shop, order and complaint."""

    def build(name: str, fulfilled: bool = True, *, store_fulfilled: bool | None = None) -> Scene:
        platform = platform_for(name, fulfilled)
        shop = make_shop(name, platform.domain, name=f"{name} shop",
                         merchant=Merchant(name=name, email=f"owner@{name}.test"),
                         credentials=platform.credentials, settings=platform.settings).shop
        record = platform.record(fulfilled if store_fulfilled is None else store_fulfilled)
        with runtime.db.session() as session:
            repository.upsert_orders(session, shop.id, [record])
        with runtime.db.session() as session:
            order_id = session.scalar(select(Order.id).where(
                Order.shop_id == shop.id, Order.platform_order_id == record.platform_order_id))
        item = record_voc_item(runtime, shop.id, NewVocItem(
            kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body="The parcel never came",
            actor="shopper", contact_email="buyer@example.com", order_id=order_id, locale="en"))
        return Scene(platform, shop.id, order_id, item.id, item.reference)

    return build


def timeline(runtime, item_id: int) -> list[VocEvent]:
    with runtime.db.session() as session:
        return list(session.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                                    .order_by(VocEvent.id)))


def item_status(runtime, item_id: int):
    with runtime.db.session() as session:
        return session.get(VocItem, item_id).status


def run_worker(runtime) -> None:
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True, with_scheduler=False)
