"""The clients slow down before the platform refuses them, and wait as long as a refusal says."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ccms_addon import sync
from ccms_addon.plugins.cafe24 import sync as cafe24_sync
from ccms_addon.plugins.shopify import sync as shopify_sync
from ccms_addon.store.models import Order, Shop
from tests.platform_servers import cafe24 as cafe24_fake
from tests.sync.conftest import BASE, ORDERS, STEP


def count(runtime, shop_id: int) -> int:
    with runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Order)
                              .where(Order.shop_id == shop_id))


def set_setting(runtime, shop_id: int, **values) -> None:
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        shop.settings = {**shop.settings, **values}


@pytest.fixture
def paged_shopify(runtime, shopify):
    """The Shopify shop read page by page (GraphQL ``orders``), not through a bulk export."""
    set_setting(runtime, shopify.shop_id, sync_mode="pages")
    for n in range(ORDERS, 150):
        shopify.add_order(n, BASE + n * STEP)
    return shopify


def test_shopify_waits_for_the_cost_bucket_instead_of_being_throttled(runtime, paged_shopify,
                                                                      clock):
    fake = paged_shopify.server.state.graphql_orders
    result = sync.backfill_orders(runtime, paged_shopify.shop_id, sleep=clock.sleep)
    assert result.completed and count(runtime, paged_shopify.shop_id) == 150
    assert fake.throttled == 0
    # 150 orders at ~800 requested points a page outrun a standard bucket (2,000 points, 100 a
    # second): the client waited, and every query found its requested cost in the bucket
    assert clock.slept > 5
    assert all(before >= requested for requested, _, before in fake.costs)
    assert max(requested for requested, _, _ in fake.costs) <= shopify_sync.MAX_QUERY_COST


def test_shopify_throttled_query_waits_what_throttle_status_says(runtime, paged_shopify, clock):
    fake = paged_shopify.server.state.graphql_orders
    fake.bucket.available = 0.0  # another client of the app emptied it
    result = sync.backfill_orders(runtime, paged_shopify.shop_id, sleep=clock.sleep)
    assert result.completed and fake.throttled == 1
    first_wait = clock.sleeps[0]
    # the first query asks for 802 points; the bucket restores 100 a second
    assert 8.0 <= first_wait <= 8.2


def test_shopify_halves_a_page_that_costs_too_much(runtime, paged_shopify, clock, monkeypatch):
    monkeypatch.setattr(shopify_sync, "FIRST_ORDERS", 40)  # 40 orders ask for ~3,200 points
    result = sync.backfill_orders(runtime, paged_shopify.shop_id, sleep=clock.sleep)
    assert result.completed and count(runtime, paged_shopify.shop_id) == 150
    assert all(requested <= shopify_sync.MAX_QUERY_COST
               for requested, _, _ in paged_shopify.server.state.graphql_orders.costs)


def test_shopify_reads_every_line_of_a_long_order(runtime, paged_shopify, clock):
    from tests.platform_servers.shopify_orders import make_graphql_order
    node = make_graphql_order(999, updated_at=BASE, lines=137)
    paged_shopify.server.state.graphql_orders.add(node)
    sync.backfill_orders(runtime, paged_shopify.shop_id, sleep=clock.sleep)
    with runtime.db.session() as session:
        order = session.scalar(select(Order).where(Order.platform_order_id
                                                   == node["legacyResourceId"]))
        assert len(order.lines) == 137


def test_cafe24_paces_by_the_call_limit_header(runtime, cafe24, clock):
    # a history from 2015: ~45 windows to count, more calls than the bucket's 40
    set_setting(runtime, cafe24.shop_id, sync_history_start="2015-01-01")
    result = sync.backfill_orders(runtime, cafe24.shop_id, sleep=clock.sleep)
    assert result.completed and count(runtime, cafe24.shop_id) == ORDERS
    assert len(cafe24.server.calls) > 40
    assert cafe24.server.throttled == 0
    assert clock.slept > 0


def test_cafe24_waits_out_call_remain_when_the_bucket_is_full(runtime, cafe24, clock):
    cafe24.server.bucket_level = 45.0  # another app of the mall's filled it past the limit
    result = sync.backfill_orders(runtime, cafe24.shop_id, sleep=clock.sleep)
    assert result.completed and count(runtime, cafe24.shop_id) == ORDERS
    assert cafe24.server.throttled == 1
    # X-Cafe24-Call-Remain said 3 seconds (6 calls over, draining 2 a second)
    assert 3.0 in clock.sleeps


def test_cafe24_splits_a_window_beyond_the_offset_limit(runtime, cafe24, clock, monkeypatch):
    for module in (cafe24_sync, cafe24_fake):
        monkeypatch.setattr(module, "MAX_LIMIT", 10)
        monkeypatch.setattr(module, "MAX_OFFSET", 20)
    result = sync.backfill_orders(runtime, cafe24.shop_id, sleep=clock.sleep)
    assert result.completed and count(runtime, cafe24.shop_id) == ORDERS
    searches = [c["args"] for c in cafe24.server.calls if c["path"].endswith("/orders")
                and "start_date" in c["args"]]
    assert all(int(a["offset"]) <= 20 and int(a["limit"]) == 10 for a in searches)
    windows = {(a["start_date"], a["end_date"]) for a in searches}
    assert len(windows) > 1  # 60 orders in 4 days were more than one window could list


def test_woocommerce_honours_retry_after(runtime, woocommerce, clock):
    woocommerce.server.fail_next(429, 2, retry_after="2")
    sync.backfill_orders(runtime, woocommerce.shop_id, sleep=clock.sleep)
    assert clock.sleeps[:2] == [2.0, 2.0]
