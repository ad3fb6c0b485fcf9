"""Every RQ job and Redis key of a shop lives in the shop's namespace, and leaves with the shop.

Two Shopify shops get the usual work queued (webhook deliveries, the install's set-up, the
reconciliation, a collection refresh, a VOC item's acknowledgement and merchant notification, an
outbox message, a claim settlement, an order action and its retry, follow-ups, monthly reports):
each job's id names the shop its work belongs to. Then one shop is redacted (or uninstalls) through
the real pipeline, its job running as an RQ job: exactly that shop's jobs and keys leave Redis.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import select

from ccms_addon import install, outbox, sync
from ccms_addon.jobs.dispatcher import Dispatcher, dispatch_due
from ccms_addon.jobs.notify import notify_merchant_soon
from ccms_addon.outbox import OutgoingMessage
from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.programs import claims, collections, service
from ccms_addon.programs.scheduler import schedule_due
from ccms_addon.programs.schemas import load_terms
from ccms_addon.queue import (ALL_QUEUES, forget_shop, queue, shop_job_id, shop_key,
                              shops_job_id)
from ccms_addon.store import repository
from ccms_addon.store.models import (FollowUp, Merchant, OutboundMessage, ProgramKind, Shop,
                                     ShopStatus, VocChannel, VocItem, VocKind, WebhookDelivery,
                                     utcnow)
from ccms_addon.voc import reports
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from ccms_addon.voc.order_actions import OrderActions
from ccms_addon.widgets import ratelimit
from tests.samples import read_sample
from tests.webhooks.test_ingress import SHOPIFY_SHOP, signed

SECOND_SHOP = "ccms-second.myshopify.com"
CHECK_IN = {"steps": [{"key": "arrival", "offset_days": 3, "kind": "check_in",
                       "template": "arrival_check_in"}]}


@pytest.fixture
def settings(settings, smtp_server):
    return dataclasses.replace(settings, platforms={
        **settings.platforms, "smtp": {"url": smtp_server.url, "from": "care@ccms.test"}})


@pytest.fixture
def two_shops(make_shop):
    return [make_shop("shopify", domain, credentials={"access_token": f"shpat_{n}"},
                      merchant=Merchant(name=f"M{n}", email=f"owner{n}@ccms.test")).shop
            for n, domain in enumerate((SHOPIFY_SHOP, SECOND_SHOP))]


def post(client, runtime, shop, sample, topic):
    body = read_sample("shopify", sample)
    response = client.post("/webhooks/shopify", data=body,
                           headers=signed(runtime, "shopify", body, topic=topic, shop=shop.domain))
    assert response.status_code == 200, response.json


def delivered_order(number: str):
    delivered = utcnow() - timedelta(days=4)
    return OrderRecord(
        platform_order_id=f"P{number}", number=number, currency="KRW", total=Decimal("45000"),
        updated_at=delivered, placed_at=delivered - timedelta(days=2), financial_status=FinancialStatus.PAID,
        cancelled_at=None, fulfillment_status=FulfillmentStatus.FULFILLED,
        email="shopper@example.com", customer_name="Kim",
        customer=CustomerRecord(platform_customer_id=f"C{number}", email="shopper@example.com",
                                name="Kim"),
        lines=(OrderLineRecord("L1", "Mug", 1, Decimal("45000"), sku="MUG-1", product_id="101"),),
        fulfilled_at=delivered - timedelta(days=1), delivered_at=delivered, locale="en",
        country_code="KR", accepts_marketing=True)


def queue_typical_work(runtime, client, shops) -> None:
    """The jobs a shop's ordinary day puts in Redis, for every shop (queued and scheduled)."""
    for shop in shops:
        post(client, runtime, shop, "orders-updated", "orders/updated")
    assert dispatch_due(runtime) == len(shops)
    assert sync.reconcile_due(runtime) == len(shops)
    for shop in shops:
        assert install.schedule_finish(runtime, shop.id, 600)
        assert collections.enqueue_refresh(runtime, shop.id)
        item = record_voc_item(runtime, shop.id, NewVocItem(  # the hook queues its acknowledgement
            kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body="broken mug", actor="shopper",
            contact_email="shopper@example.com", locale="en"))
        notify_merchant_soon(runtime, item.id)  # the widget's call: no shop id, read from the row
        key = f"test-note:{shop.id}"
        with runtime.db.engine.begin() as conn:
            outbox.record(conn, OutgoingMessage(key=key, shop_id=shop.id, channel="email",
                                                recipient="shopper@example.com", subject="Hi",
                                                body="Hello"))
        outbox.enqueue(runtime, [key])
        claims.enqueue_settlement(runtime, shop.id, 900 + shop.id)
        actions = OrderActions(runtime)
        actions._enqueue(shop.id, 800 + shop.id)
        actions._enqueue(shop.id, 800 + shop.id, 1, timedelta(minutes=5))  # its retry, scheduled
        reports.enqueue_report(runtime, [shop.id], 2026, 1, "UTC", "en", "csv")
        with runtime.db.session() as session:
            service.create_program(session, shop.id, kind=ProgramKind.FOLLOW_UP, name="check-in",
                                   terms=load_terms(ProgramKind.FOLLOW_UP, CHECK_IN), actor="test")
            changes = repository.upsert_orders(session, shop.id, [delivered_order("1001"),
                                                                  delivered_order("1002")])
        for change in changes:
            runtime.pm.hook.order_synced(shop_id=shop.id, order_id=change.order_id,
                                         platform_order_id=change.platform_order_id,
                                         created=change.created)
    reports.enqueue_report(runtime, [s.id for s in shops], 2026, 1, "UTC", "en", "csv")
    assert schedule_due(runtime, now=utcnow() + timedelta(days=10)) == 2 * len(shops)


def job_ids(redis) -> set[str]:
    """Every RQ job stored in Redis, by its hash."""
    return {key.decode()[len("rq:job:"):] for key in redis.scan_iter(match="rq:job:*")
            if ":" not in key.decode()[len("rq:job:"):]}


def waiting_ids(runtime) -> set[str]:
    """What the queues and their registries hold."""
    held = set()
    for name in ALL_QUEUES:
        q: Queue = queue(name, runtime.redis, runtime.settings)
        held |= set(q.get_job_ids())
        for registry in (q.scheduled_job_registry, q.deferred_job_registry,
                         q.failed_job_registry, q.finished_job_registry,
                         q.canceled_job_registry, q.started_job_registry):
            held |= set(registry.get_job_ids())
    return held


def owner(runtime, job: Job) -> int | None:
    """The shop whose rows the job works on, from the store."""
    function, args = job.func_name.rsplit(".", 1)[-1], job.args
    with runtime.db.session() as s:
        if function == "process_delivery":
            return s.get(WebhookDelivery, args[0]).shop_id
        if function in ("reconcile_shop", "refresh_collections", "finish_install_job"):
            return args[0]
        if function in ("acknowledge_item", "notify_merchant_of_voc"):
            return s.get(VocItem, args[0]).shop_id
        if function == "deliver_message":
            return s.scalar(select(OutboundMessage.shop_id)
                            .where(OutboundMessage.idempotency_key == args[0]))
        if function == "send_follow_ups":
            [shop_id] = set(s.scalars(select(FollowUp.shop_id).where(FollowUp.id.in_(args[0]))))
            return shop_id
        if function == "settle_claim":
            return args[0] - 900
        if function == "run_order_action":
            return args[0] - 800
        if function == "build_report_file" and len(args[0]) == 1:
            return args[0][0]
    return None


def test_every_job_id_and_key_carries_its_shops_namespace(runtime, client, two_shops):
    a, b = two_shops
    queue_typical_work(runtime, client, two_shops)
    ids = job_ids(runtime.redis)
    assert ids == waiting_ids(runtime)  # every job is queued or scheduled, none lost
    by_shop = {shop.id: {i for i in ids if i.startswith(f"shop-{shop.id}-")} for shop in two_shops}
    multi = ids - by_shop[a.id] - by_shop[b.id]
    assert multi == {reports.report_job_id([b.id, a.id], 2026, 1, "UTC", "en", "csv")}
    assert next(iter(multi)).startswith(f"shops-{a.id}_{b.id}-report-")
    assert shops_job_id([b.id, a.id, b.id], "x") == f"shops-{a.id}_{b.id}-x"
    assert shops_job_id([b.id], "x") == shop_job_id(b.id, "x") == f"shop-{b.id}-x"
    kinds = ("delivery-", "reconcile", "install", "collections", "voc-ack-", "notify-voc-",
             "outbox-", "settle-claim-", "order-action-", "followups-", "report-")
    for shop in two_shops:
        names = {i[len(f"shop-{shop.id}-"):] for i in by_shop[shop.id]}
        assert {k for k in kinds for n in names if n.startswith(k)} == set(kinds)
        assert f"order-action-{800 + shop.id}-retry-1" in names
        assert len(by_shop[shop.id]) == 12  # one job of each kind, two for the order action
    for job_id, job in zip(sorted(ids), Job.fetch_many(sorted(ids), connection=runtime.redis)):
        shop_id = owner(runtime, job)
        if shop_id is not None:
            assert job_id.startswith(shop_job_id(shop_id, "")), (job_id, job.func_name)
    with runtime.db.session() as s:  # the scheduler keeps each batch's id on its rows
        for shop_id, job_id in s.execute(select(FollowUp.shop_id, FollowUp.job_id)):
            assert job_id in by_shop[shop_id]
    assert shop_key(a.id, "widget", "rate") == f"shop:{a.id}:widget:rate"
    assert shop_key(a.id, "x", prefix="p1:") == f"p1:shop:{a.id}:x"
    # the same work asks for the same id: a second pass queues nothing new
    assert sync.reconcile_due(runtime) == 0 and collections.enqueue_refresh(runtime, a.id)
    assert job_ids(runtime.redis) == ids


@pytest.mark.parametrize("sample,topic,redacted", [("shop-redact", "shop/redact", True),
                                                   ("app-uninstalled", "app/uninstalled", False)])
def test_a_departing_shop_takes_exactly_its_jobs_and_keys_along(runtime, app, client, two_shops,
                                                                 sample, topic, redacted):
    a, b = two_shops
    queue_typical_work(runtime, client, two_shops)
    redis = runtime.redis
    limiter = app.extensions[ratelimit.EXTENSION]  # shoppers of both shops used the widget
    for shop in two_shops:
        assert limiter.hit("widgets.submit_voc", shop.widget_key, "203.0.113.9") == 0
    counters = {shop.id: limiter.keys("widgets.submit_voc", shop.widget_key, "203.0.113.9")[1]
                for shop in two_shops}
    assert all(redis.exists(key) for key in counters.values())
    redis.set(shop_key(a.id, "probe"), 1)
    redis.set(shop_key(b.id, "probe"), 1)
    redis.set(shop_key(a.id, "probe", prefix="another-deployment:"), 1)
    before = job_ids(redis)
    theirs = {i for i in before if i.startswith(f"shop-{b.id}-")}
    mine = {i for i in before if i.startswith(f"shop-{a.id}-")}
    assert theirs and mine

    post(client, runtime, a, sample, topic)
    assert dispatch_due(runtime) == 1
    [departure] = job_ids(redis) - before
    assert departure.startswith(f"shop-{a.id}-delivery-")
    # run the departure's job the way a worker does: off the queue, started, performed
    job = Job.fetch(departure, connection=redis)
    q = queue(job.origin.removeprefix(runtime.settings.queue_prefix), redis, runtime.settings)
    q.remove(job)
    job.set_status(JobStatus.STARTED)
    assert job.perform() == "processed"

    with runtime.db.session() as s:
        assert s.get(Shop, a.id).status is ShopStatus.UNINSTALLED
        assert s.get(Shop, b.id).status is ShopStatus.ACTIVE
    # the running job stays (a worker finishes it); every other job of the shop is gone, the
    # multi-shop report with it; the other shop's jobs and keys are untouched
    assert job_ids(redis) == theirs | {departure}
    assert waiting_ids(runtime) == theirs
    assert [k.decode() for k in redis.scan_iter(match=f"*shop-{a.id}-*")] == [f"rq:job:{departure}"]
    assert redis.get(shop_key(a.id, "probe")) is None
    assert redis.get(shop_key(b.id, "probe")) == b"1"
    assert redis.get(shop_key(a.id, "probe", prefix="another-deployment:")) == b"1"
    assert not redis.exists(counters[a.id]) and redis.exists(counters[b.id])

    if redacted:  # nothing of the shop is left in the store: the sweeps bring nothing back
        dispatcher = Dispatcher(runtime)
        dispatcher.run_once()
        assert not {i for i in job_ids(redis) - {departure} if i.startswith(f"shop-{a.id}-")}


def test_forgetting_a_shop_leaves_other_deployments_and_clears_stray_registry_entries(runtime):
    redis = runtime.redis
    ours = queue("ccms-deliveries", redis, runtime.settings)
    elsewhere = Queue("another-deployment:ccms-deliveries", connection=redis)
    ours.enqueue_call("ccms_addon.sync.reconcile_shop", args=(7,), job_id=shop_job_id(7, "a"))
    elsewhere.enqueue_call("ccms_addon.sync.reconcile_shop", args=(7,),
                           job_id=shop_job_id(7, "b"))
    ours.enqueue_call("ccms_addon.sync.reconcile_shop", args=(70,), job_id=shop_job_id(70, "a"))
    ours.scheduled_job_registry.schedule(
        Job.create("ccms_addon.sync.reconcile_shop", args=(7,), id=shop_job_id(7, "gone"),
                   connection=redis), utcnow() + timedelta(hours=1))  # its hash never saved
    forgotten = forget_shop(redis, 7, runtime.settings)
    assert forgotten.jobs == [shop_job_id(7, "a")] and forgotten.running == []
    assert ours.get_job_ids() == [shop_job_id(70, "a")]
    assert ours.scheduled_job_registry.get_job_ids() == []
    assert elsewhere.get_job_ids() == [shop_job_id(7, "b")]
