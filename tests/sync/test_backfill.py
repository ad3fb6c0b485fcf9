"""``backfill_orders`` against the three loopback platforms: every order stored once, a run killed
half-way resumes from its saved cursor, ``--since``, stale cursors, busy shops, refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ccms_addon import sync
from ccms_addon.platforms import PlatformAuthError, PlatformUnavailableError
from ccms_addon.store.models import Order, OrderLine, Shop
from tests.platform_servers.cafe24 import KST
from tests.sync.conftest import BASE, ORDERS, STEP


def stored_ids(runtime, shop_id: int) -> list[str]:
    with runtime.db.session() as session:
        return sorted(session.scalars(select(Order.platform_order_id)
                                      .where(Order.shop_id == shop_id)))


def state_of(runtime, shop_id: int) -> dict:
    with runtime.db.session() as session:
        return sync.sync_state(session.get(Shop, shop_id))


class Crash(Exception):
    """What kills the run in the middle."""


def test_full_backfill_stores_every_order_once(runtime, platform, synced, clock):
    seen = []
    result = sync.backfill_orders(runtime, platform.shop_id, None, seen.append,
                                  sleep=clock.sleep)
    assert result.completed and not result.resumed
    assert stored_ids(runtime, platform.shop_id) == sorted(platform.order_ids)
    assert result.changed == ORDERS
    # one hook per order, after its page committed
    assert sorted(synced.platform_ids()) == sorted(platform.order_ids)
    assert all(call[3] for call in synced.calls)  # all created
    assert seen and seen[-1].completed
    with runtime.db.session() as session:
        lines = session.scalar(select(func.count()).select_from(OrderLine)
                               .where(OrderLine.shop_id == platform.shop_id))
    assert lines >= ORDERS  # complete records, with their lines
    state = state_of(runtime, platform.shop_id)
    assert state["cursor"] is None and state["completed_at"] and state["orders"] >= ORDERS
    assert state["last_reconciled_at"] == state["started_at"]
    assert "lease_until" not in state


def test_second_backfill_changes_nothing(runtime, platform, synced, clock):
    sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    synced.calls.clear()
    again = sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    assert again.completed and not again.resumed
    assert again.changed == 0 and synced.calls == []  # a replay is a no-op, and fires nothing
    assert stored_ids(runtime, platform.shop_id) == sorted(platform.order_ids)


@pytest.fixture
def small_pages(monkeypatch, platform):
    """Pages small enough that 60 orders take several."""
    from ccms_addon.plugins.cafe24 import sync as cafe24_sync
    from ccms_addon.plugins.shopify import sync as shopify_sync
    from ccms_addon.plugins.woocommerce import client as woo_client
    from ccms_addon.plugins.woocommerce import sync as woo_sync
    monkeypatch.setattr(shopify_sync, "BULK_PAGE_ORDERS", 7)
    monkeypatch.setattr(cafe24_sync, "WINDOW_DAYS", 1)
    monkeypatch.setattr(woo_client, "MAX_PER_PAGE", 9)
    monkeypatch.setattr(woo_sync, "MAX_PER_PAGE", 9)
    return platform


def test_killed_backfill_resumes_from_its_cursor(runtime, small_pages, synced, clock):
    platform = small_pages
    pages_before_crash = 3

    def crash_after(status):
        if status.pages == pages_before_crash:
            raise Crash("killed after page 3")

    with pytest.raises(Crash):
        sync.backfill_orders(runtime, platform.shop_id, None, crash_after, sleep=clock.sleep)
    state = state_of(runtime, platform.shop_id)
    assert state["cursor"] and not state["completed_at"]
    assert "lease_until" not in state and "Crash" in state["last_error"]
    first_run = stored_ids(runtime, platform.shop_id)
    assert 0 < len(first_run) < ORDERS
    hooked = list(synced.platform_ids())

    resumed = sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    assert resumed.resumed and resumed.completed
    assert resumed.previously == state["orders"]
    assert stored_ids(runtime, platform.shop_id) == sorted(platform.order_ids)
    # the rerun continued after the committed pages: what the first run stored is not read again
    # (Cafe24's windows restart at the day after the last committed one)
    assert resumed.orders <= ORDERS - len(first_run) + 9
    # every order was announced once, whichever run stored it
    assert sorted(synced.platform_ids()) == sorted(platform.order_ids)
    assert len(hooked) == len(first_run)


def test_crash_inside_the_listing_loses_nothing(runtime, small_pages, clock, monkeypatch):
    platform = small_pages
    adapter = runtime.platforms[platform.name]
    real = adapter.list_orders
    calls = {"n": 0}

    def flaky(shop, *, updated_since, cursor):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Crash("the worker died while the platform answered")
        return real(shop, updated_since=updated_since, cursor=cursor)

    monkeypatch.setattr(adapter, "list_orders", flaky)
    with pytest.raises(Crash):
        sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    monkeypatch.setattr(adapter, "list_orders", real)
    result = sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    assert result.resumed and result.completed
    assert stored_ids(runtime, platform.shop_id) == sorted(platform.order_ids)


def test_since_reads_only_what_changed_since(runtime, platform, clock):
    cut = 40
    since = BASE + cut * STEP
    if platform.name == "cafe24":  # Cafe24 searches by days of the mall (KST)
        day = since.astimezone(KST).date()
        expected = sorted(i for n, i in enumerate(platform.order_ids)
                          if (BASE + n * STEP).astimezone(KST).date() >= day)
    else:
        expected = sorted(platform.order_ids[cut:])
    result = sync.backfill_orders(runtime, platform.shop_id, since, sleep=clock.sleep)
    assert result.completed
    stored = stored_ids(runtime, platform.shop_id)
    assert set(stored) >= {i for n, i in enumerate(platform.order_ids) if n >= cut}
    assert stored == expected
    state = state_of(runtime, platform.shop_id)
    assert state["updated_since"] == since.isoformat()


def test_another_since_starts_a_new_backfill(runtime, small_pages, clock):
    platform = small_pages
    with pytest.raises(Crash):
        sync.backfill_orders(runtime, platform.shop_id, None,
                             lambda s: (_ for _ in ()).throw(Crash()), sleep=clock.sleep)
    result = sync.backfill_orders(runtime, platform.shop_id, BASE + 50 * STEP, sleep=clock.sleep)
    assert not result.resumed and result.completed


def test_restart_ignores_the_saved_cursor(runtime, small_pages, clock):
    platform = small_pages
    with pytest.raises(Crash):
        sync.backfill_orders(runtime, platform.shop_id, None,
                             lambda s: (_ for _ in ()).throw(Crash()), sleep=clock.sleep)
    result = sync.backfill_orders(runtime, platform.shop_id, restart=True, sleep=clock.sleep)
    assert not result.resumed and result.completed
    assert result.orders >= ORDERS


def test_a_second_run_waits_for_the_lease(runtime, woocommerce, clock):
    inner = {}

    def start_another(status):
        if status.pages == 1:
            with pytest.raises(sync.SyncBusyError):
                sync.backfill_orders(runtime, woocommerce.shop_id, sleep=clock.sleep)
            inner["checked"] = True

    sync.backfill_orders(runtime, woocommerce.shop_id, None, start_another, sleep=clock.sleep)
    assert inner["checked"]


def test_expired_bulk_export_starts_over(runtime, shopify, monkeypatch, clock):
    from ccms_addon.plugins.shopify import sync as shopify_sync
    monkeypatch.setattr(shopify_sync, "BULK_PAGE_ORDERS", 10)
    with pytest.raises(Crash):
        sync.backfill_orders(runtime, shopify.shop_id, None,
                             lambda s: (_ for _ in ()).throw(Crash()) if s.orders else None,
                             sleep=clock.sleep)
    shopify.server.state.graphql_orders.fail_bulk("EXPIRED")  # a week later: the URL is gone
    result = sync.backfill_orders(runtime, shopify.shop_id, sleep=clock.sleep)
    assert result.resumed and result.completed
    assert stored_ids(runtime, shopify.shop_id) == sorted(shopify.order_ids)
    assert len(shopify.server.state.graphql_orders.bulk) == 2  # a second export was run


def test_bulk_export_is_read_by_byte_ranges_without_the_token(runtime, shopify, monkeypatch,
                                                              clock):
    from ccms_addon.plugins.shopify import sync as shopify_sync
    monkeypatch.setattr(shopify_sync, "BULK_PAGE_ORDERS", 25)
    sync.backfill_orders(runtime, shopify.shop_id, sleep=clock.sleep)
    downloads = shopify.server.state.graphql_orders.downloads
    starts = [int(d["range"].split("=")[1].split("-")[0]) for d in downloads]
    assert len(downloads) == 3 and starts[0] == 0 and starts == sorted(set(starts))
    assert not any("X-Shopify-Access-Token" in d["headers"] for d in downloads)
    assert stored_ids(runtime, shopify.shop_id) == sorted(shopify.order_ids)


def test_bulk_lines_cut_by_a_range_are_joined(runtime, shopify, monkeypatch, clock):
    from ccms_addon.plugins.shopify import sync as shopify_sync
    monkeypatch.setattr(shopify_sync, "RANGE_BYTES", 700)  # shorter than an order's line
    sync.backfill_orders(runtime, shopify.shop_id, sleep=clock.sleep)
    assert stored_ids(runtime, shopify.shop_id) == sorted(shopify.order_ids)
    assert len(shopify.server.state.graphql_orders.downloads) > 100


@pytest.mark.parametrize("mode", ["bulk", "pages"])
def test_shopify_order_with_more_refunds_than_a_page_holds(runtime, shopify, clock, mode):
    from ccms_addon.plugins.shopify import sync as shopify_sync
    from ccms_addon.store.models import Refund
    fake = shopify.server.state.graphql_orders
    node = fake.orders[shopify.order_ids[3]]
    node["refunds"] = [{"id": f"gid://shopify/Refund/{900 + i}", "legacyResourceId": str(900 + i),
                        "note": f"refund {i}", "createdAt": "2025-03-02T10:00:00Z",
                        "totalRefundedSet": {"shopMoney": {"amount": "1.50", "currencyCode": "USD"},
                                             "presentmentMoney": {"amount": "1.50",
                                                                  "currencyCode": "USD"}}}
                       for i in range(shopify_sync.REFUNDS_PER_ORDER + 2)]
    with runtime.db.session() as session:
        shop = session.get(Shop, shopify.shop_id)
        shop.settings = {**shop.settings, "sync_mode": mode}
    sync.backfill_orders(runtime, shopify.shop_id, sleep=clock.sleep)
    with runtime.db.session() as session:
        refunds = session.scalars(select(Refund.platform_refund_id)
                                  .where(Refund.shop_id == shopify.shop_id)).all()
    assert sorted(refunds) == [str(900 + i) for i in range(shopify_sync.REFUNDS_PER_ORDER + 2)]


def test_refused_credentials_stop_the_backfill(runtime, platform, clock):
    if platform.name == "shopify":
        platform.server.uninstall()
    elif platform.name == "cafe24":
        platform.server.access_token = "revoked"
    else:
        platform.server.consumer_secret = "revoked"
    with pytest.raises(PlatformAuthError):
        sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    state = state_of(runtime, platform.shop_id)
    assert "PlatformAuthError" in state["last_error"] and "lease_until" not in state
    assert stored_ids(runtime, platform.shop_id) == []


def test_a_429_storm_is_outlasted(runtime, platform, clock):
    if platform.name == "shopify":
        platform.server.fail_next(7, 429, "2.0")
    elif platform.name == "cafe24":
        platform.server.fail_status, platform.server.fail_times = 429, 9
    else:
        platform.server.fail_next(429, 7, retry_after="3")
    result = sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    assert result.completed
    assert stored_ids(runtime, platform.shop_id) == sorted(platform.order_ids)
    assert clock.slept > 0


def test_platform_down_for_good_is_reported_and_resumable(runtime, woocommerce, clock):
    woocommerce.server.fail_next(503, 100)
    with pytest.raises(PlatformUnavailableError):
        sync.backfill_orders(runtime, woocommerce.shop_id, sleep=clock.sleep)
    assert sum(s for s in clock.sleeps if s >= sync.PAGE_RETRY_BASE) >= 2 + 4 + 8 + 16 + 32
    woocommerce.server.fail_times = 0
    result = sync.backfill_orders(runtime, woocommerce.shop_id, sleep=clock.sleep)
    assert result.completed
    assert stored_ids(runtime, woocommerce.shop_id) == sorted(woocommerce.order_ids)


def test_an_uninstalled_shop_is_not_synced(runtime, make_shop):
    shop = make_shop("woocommerce", "https://gone.example")
    with pytest.raises(sync.SyncError, match="not installed"):
        sync.backfill_orders(runtime, shop.shop.id)
