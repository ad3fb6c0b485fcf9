"""The periodic reconciliation: what a webhook missed is read within minutes; one job per shop."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rq import Worker
from sqlalchemy import select

from ccms_addon import sync
from ccms_addon.platforms import FulfillmentStatus
from ccms_addon.queue import queue
from ccms_addon.store.models import Order, Shop, ShopStatus, utcnow
from tests.platform_servers import cafe24 as cafe24_fake
from tests.sync.conftest import ORDERS


def state_of(runtime, shop_id: int) -> dict:
    with runtime.db.session() as session:
        return sync.sync_state(session.get(Shop, shop_id))


def order(runtime, shop_id: int, platform_order_id: str) -> Order | None:
    with runtime.db.session() as session:
        found = session.scalar(select(Order).where(Order.shop_id == shop_id,
                                                   Order.platform_order_id == platform_order_id))
        if found is not None:
            session.expunge(found)
        return found


def test_reconciliation_reads_an_order_a_webhook_missed(runtime, platform, synced, clock):
    sync.backfill_orders(runtime, platform.shop_id, sleep=clock.sleep)
    backfilled = state_of(runtime, platform.shop_id)
    missed = platform.add_order(ORDERS + 1, utcnow() - timedelta(minutes=1))
    synced.calls.clear()

    result = sync.reconcile(runtime, platform.shop_id, sleep=clock.sleep)

    assert result.outcome == "reconciled", result.detail
    assert order(runtime, platform.shop_id, missed) is not None
    assert missed in synced.platform_ids()
    assert result.since == datetime.fromisoformat(backfilled["last_reconciled_at"]) \
        - sync.RECONCILE_OVERLAP
    state = state_of(runtime, platform.shop_id)
    assert state["last_reconciled_at"] > backfilled["last_reconciled_at"]
    assert state["reconcile_attempted_at"] and not state.get("last_error")


def test_reconciliation_refreshes_an_order_changed_since(runtime, cafe24, clock):
    sync.backfill_orders(runtime, cafe24.shop_id, sleep=clock.sleep)
    order_id = cafe24.order_ids[5]
    assert order(runtime, cafe24.shop_id, order_id).fulfillment_status \
        is FulfillmentStatus.UNFULFILLED
    # delivered today: no webhook came, the order's shipend_date is today
    now = datetime.now(cafe24_fake.KST).isoformat()
    stored = cafe24.server.orders[order_id]
    for item in stored["items"]:
        item["order_status"] = "N40"
        item["delivered_date"] = now
    cafe24.server.set_date(order_id, "shipend_date", now)

    result = sync.reconcile(runtime, cafe24.shop_id, sleep=clock.sleep)

    assert result.outcome == "reconciled" and result.orders >= 1
    assert order(runtime, cafe24.shop_id, order_id).fulfillment_status \
        is FulfillmentStatus.DELIVERED


def test_reconciliation_reads_at_most_a_week_back(runtime, woocommerce, clock):
    now = utcnow()
    with runtime.db.session() as session:
        shop = session.get(Shop, woocommerce.shop_id)
        shop.settings = {**shop.settings, "sync": {
            "last_reconciled_at": (now - timedelta(days=30)).isoformat()}}
    result = sync.reconcile(runtime, woocommerce.shop_id, now=now, sleep=clock.sleep)
    assert result.since == now - sync.RECONCILE_MAX_WINDOW - sync.RECONCILE_OVERLAP


def test_a_refused_reconciliation_keeps_its_mark(runtime, woocommerce, clock):
    sync.backfill_orders(runtime, woocommerce.shop_id, sleep=clock.sleep)
    before = state_of(runtime, woocommerce.shop_id)
    woocommerce.server.consumer_secret = "revoked"
    result = sync.reconcile(runtime, woocommerce.shop_id, sleep=clock.sleep)
    assert result.outcome == "refused"
    after = state_of(runtime, woocommerce.shop_id)
    assert after["last_reconciled_at"] == before["last_reconciled_at"]
    assert "reconciliation" in after["last_error"]


def test_reconcile_due_enqueues_one_job_per_shop_and_a_worker_runs_it(runtime, woocommerce,
                                                                      make_shop):
    # a shop without credentials and an uninstalled one are never due
    make_shop("woocommerce", "https://no-keys.example")
    gone = make_shop("woocommerce", "https://gone.example",
                     credentials={"consumer_key": "ck", "consumer_secret": "cs"})
    with runtime.db.session() as session:
        session.get(Shop, gone.shop.id).status = ShopStatus.UNINSTALLED

    assert sync.due_shops(runtime) == [woocommerce.shop_id]
    assert sync.reconcile_due(runtime) == 1
    q = queue(sync.RECONCILE_QUEUE, runtime.redis, runtime.settings)
    assert q.job_ids == [sync.reconcile_job_id(woocommerce.shop_id)]
    assert sync.reconcile_due(runtime) == 0  # its job is still queued: not a second one

    Worker([q], connection=runtime.redis).work(burst=True)

    state = state_of(runtime, woocommerce.shop_id)
    assert state["reconcile_attempted_at"] and state["last_reconciled_at"]
    with runtime.db.session() as session:
        assert len(session.scalars(select(Order.id).where(
            Order.shop_id == woocommerce.shop_id)).all()) == 0  # installed now: nothing older
    assert sync.reconcile_due(runtime) == 0  # just reconciled
    later = utcnow() + sync.RECONCILE_EVERY + timedelta(seconds=1)
    assert sync.due_shops(runtime, later) == [woocommerce.shop_id]


def test_a_running_backfill_defers_the_reconciliation(runtime, woocommerce, clock):
    seen = {}

    def during(status):
        if status.pages == 1:
            seen["due"] = sync.due_shops(runtime)
            seen["result"] = sync.reconcile(runtime, woocommerce.shop_id, sleep=clock.sleep)

    sync.backfill_orders(runtime, woocommerce.shop_id, None, during, sleep=clock.sleep)
    assert seen["due"] == [] and seen["result"].outcome == "skipped"


def test_reconciliation_of_a_new_shop_starts_at_its_install(runtime, woocommerce, clock):
    with runtime.db.session() as session:
        installed = session.get(Shop, woocommerce.shop_id).installed_at
    result = sync.reconcile(runtime, woocommerce.shop_id, sleep=clock.sleep)
    if installed.tzinfo is None:
        installed = installed.replace(tzinfo=timezone.utc)
    assert result.since == installed - sync.RECONCILE_OVERLAP
