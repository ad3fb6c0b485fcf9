"""Shops on the three loopback platforms, each with orders to list, and adapters whose waits go
by a clock the platform shares (:class:`~tests.platform_servers.clock.FakeClock`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ccms_addon import hookimpl
from ccms_addon.plugins.cafe24 import sync as cafe24_sync
from ccms_addon.plugins.cafe24.adapter import Cafe24Adapter
from ccms_addon.plugins.shopify import sync as shopify_sync
from ccms_addon.plugins.shopify.adapter import ShopifyAdapter
from ccms_addon.plugins.woocommerce.adapter import WooCommerceAdapter
from tests.platform_servers import cafe24 as cafe24_fake
from tests.platform_servers import woocommerce as woo_fake
from tests.platform_servers.clock import FakeClock
from tests.platform_servers.shopify import ShopifyAdminServer
from tests.platform_servers.shopify_orders import make_graphql_order

SHOPIFY_TOKEN = "shpat_sync_test"
SHOPIFY_DOMAIN = "sync-shop.myshopify.com"
CAFE24_MALL = "syncmall"
#: orders each platform starts with
ORDERS = 60
#: the first order's update time; one order every 90 minutes after it
BASE = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=90)


@pytest.fixture(autouse=True)
def _fresh_pacing() -> Iterator[None]:
    shopify_sync.reset_buckets()
    cafe24_sync.reset_pacing()
    yield
    shopify_sync.reset_buckets()
    cafe24_sync.reset_pacing()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class SyncedOrders:
    """An ``order_synced`` listener: every call, in order."""

    calls: list[tuple[int, int, str, bool]] = field(default_factory=list)

    @hookimpl
    def order_synced(self, shop_id, order_id, platform_order_id, created):
        self.calls.append((shop_id, order_id, platform_order_id, created))

    def platform_ids(self) -> list[str]:
        return [call[2] for call in self.calls]


@pytest.fixture
def synced(runtime) -> SyncedOrders:
    listener = SyncedOrders()
    runtime.pm.register(listener)
    return listener


@dataclass
class Platform:
    """One loopback platform with a registered shop, as the tests drive it."""

    name: str
    shop_id: int
    server: Any
    add_order: Any          # add_order(n, updated_at) -> platform order id
    order_ids: list[str]


def _shopify_order(server: ShopifyAdminServer, n: int, updated_at: datetime) -> str:
    node = make_graphql_order(n, updated_at=updated_at)
    server.state.graphql_orders.add(node)
    return node["legacyResourceId"]


@pytest.fixture
def shopify(runtime, make_shop, clock) -> Iterator[Platform]:
    with ShopifyAdminServer(SHOPIFY_TOKEN, shop_domain=SHOPIFY_DOMAIN, clock=clock) as server:
        ids = [_shopify_order(server, n, BASE + n * STEP) for n in range(ORDERS)]
        new = make_shop("shopify", SHOPIFY_DOMAIN, credentials={"access_token": SHOPIFY_TOKEN},
                        settings={"api_base_url": server.base_url})
        runtime.platforms["shopify"] = ShopifyAdapter(sleep=clock.sleep, clock=clock)
        yield Platform("shopify", new.shop.id, server,
                       lambda n, when: _shopify_order(server, n, when), ids)


def _cafe24_order(state: cafe24_fake.Cafe24ServerState, n: int, when: datetime) -> str:
    order_id = f"{when.astimezone(cafe24_fake.KST):%Y%m%d}-{n:07d}"
    state.add_order(cafe24_fake.make_order(
        order_id, order_date=when.astimezone(cafe24_fake.KST).isoformat(),
        payment_date=when.astimezone(cafe24_fake.KST).isoformat()))
    return order_id


@pytest.fixture
def cafe24(runtime, make_shop, clock) -> Iterator[Platform]:
    state = cafe24_fake.Cafe24ServerState(enforce_bucket=True, clock=clock)
    ids = [_cafe24_order(state, n, BASE + n * STEP) for n in range(ORDERS)]
    with cafe24_fake.running_server(state) as url:
        new = make_shop("cafe24", CAFE24_MALL, credentials={"access_token": state.access_token},
                        settings={"api_base_url": url, "shop_no": "1",
                                  "sync_history_start": "2025-01-01"})
        runtime.platforms["cafe24"] = Cafe24Adapter(sleep=clock.sleep, clock=clock)
        yield Platform("cafe24", new.shop.id, state,
                       lambda n, when: _cafe24_order(state, n, when), ids)


def _woo_order(site: woo_fake.FakeWooCommerce, n: int, when: datetime) -> str:
    stamp = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    site.add_orders(woo_fake.make_order(1000 + n, modified=stamp, date_created_gmt=stamp))
    return str(1000 + n)


@pytest.fixture
def woocommerce(runtime, make_shop, clock) -> Iterator[Platform]:
    site = woo_fake.FakeWooCommerce()
    ids = [_woo_order(site, n, BASE + n * STEP) for n in range(ORDERS)]
    with woo_fake.serve(site) as url:
        new = make_shop("woocommerce", url, credentials={
            "consumer_key": site.consumer_key, "consumer_secret": site.consumer_secret})
        runtime.platforms["woocommerce"] = WooCommerceAdapter(sleep=clock.sleep)
        yield Platform("woocommerce", new.shop.id, site,
                       lambda n, when: _woo_order(site, n, when), ids)


@pytest.fixture(params=["shopify", "cafe24", "woocommerce"])
def platform(request) -> Platform:
    """Each of the three loopback platforms in turn."""
    return request.getfixturevalue(request.param)
