"""Platform events as VOC, through the real ingress, dispatcher and RQ worker, fed with the real
sample payloads: a cancellation with the customer's reason, a return, a refund with a note — each
one item, however often the platform delivers or the operator replays it."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.jobs.pipeline import DeliveryProcessor
from ccms_addon.platforms import (OrderCancelled, OrderChanged, OrderRecord, RefundCreated,
                                  RefundRecord, ReturnRequested)
from ccms_addon.store.models import DeliveryStatus, Order, VocKind, WebhookDelivery
from ccms_addon.voc.platform_intake import record_voices, voices_from
from tests.conftest import CAFE24_WEBHOOK_KEY
from tests.jobs.helpers import drain
from tests.platform_servers.cafe24 import (ACCESS_TOKEN, Cafe24ServerState, make_item, make_order,
                                           running_server)
from tests.samples import read_sample
from tests.voc_intake.conftest import events, items
from tests.webhooks.test_ingress import shops, signed  # noqa: F401 — the fixture

SHOPIFY_ORDER = "820982911946154508"


def post(client, runtime, platform, body, topic=None) -> str:
    response = client.post(f"/webhooks/{platform}", data=body,
                           headers=signed(runtime, platform, body, topic=topic))
    assert response.status_code == 200, response.json
    return response.json["status"]


def sample(platform: str, name: str, **changes) -> bytes:
    data = json.loads(read_sample(platform, name))
    data.update(changes)
    return json.dumps(data, ensure_ascii=False).encode()


def deliveries(runtime) -> list[WebhookDelivery]:
    with runtime.db.session() as s:
        return s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


# --------------------------------------------------------------------------------------------------
# Shopify
# --------------------------------------------------------------------------------------------------


def test_a_customer_cancellation_is_one_complaint_however_often_it_comes(client, runtime, shops):
    body = read_sample("shopify", "orders-cancelled")
    headers = signed(runtime, "shopify", body, topic="orders/cancelled")
    assert client.post("/webhooks/shopify", data=body, headers=headers).json["status"] == "accepted"
    drain(runtime)
    # Shopify's retry (same webhook id), an operator's replay (a new id), an orders/updated
    assert client.post("/webhooks/shopify", data=body, headers=headers).json["status"] == "duplicate"
    assert post(client, runtime, "shopify", body, "orders/cancelled") == "accepted"
    assert post(client, runtime, "shopify", body, "orders/updated") == "accepted"
    drain(runtime)

    [item] = items(runtime)
    with runtime.db.session() as s:
        order = s.scalar(select(Order).where(Order.platform_order_id == SHOPIFY_ORDER))
    assert (item.shop_id, item.channel, item.kind) == (shops["shopify"].id, "platform",
                                                       VocKind.COMPLAINT)
    assert item.order_id == order.id and item.contact_email == "jon@example.com"
    assert item.subject == "Order #9999 cancelled" and "Reason code: customer" in item.body
    [received, *_] = events(runtime, item.id)
    assert received.actor == "platform:shopify"
    assert {k: received.data[k] for k in ("platform_event", "event", "reason_code", "by_customer",
                                          "customer_words")} == {
        "platform_event": f"cancellation:{SHOPIFY_ORDER}", "event": "cancellation",
        "reason_code": "customer", "by_customer": True, "customer_words": False}
    assert {d.status for d in deliveries(runtime)} == {DeliveryStatus.PROCESSED}


def test_a_merchant_cancellation_without_words_is_no_voice(client, runtime, shops):
    post(client, runtime, "shopify", sample("shopify", "orders-cancelled", cancel_reason="inventory"),
         "orders/cancelled")
    drain(runtime)
    assert items(runtime) == []
    assert [d.status for d in deliveries(runtime)] == [DeliveryStatus.PROCESSED]


def test_a_cancellation_with_words_but_no_known_asker_is_an_inquiry(client, runtime, shops):
    post(client, runtime, "shopify", sample("shopify", "orders-cancelled", cancel_reason="other",
                                            note="사이즈를 잘못 골랐어요"), "orders/cancelled")
    drain(runtime)
    [item] = items(runtime)
    assert (item.kind, item.body) == (VocKind.INQUIRY, "사이즈를 잘못 골랐어요")


def test_a_refund_note_joins_the_orders_item(client, runtime, shops):
    post(client, runtime, "shopify", read_sample("shopify", "orders-cancelled"), "orders/cancelled")
    drain(runtime)
    refund = read_sample("shopify", "refunds-create")
    post(client, runtime, "shopify", refund, "refunds/create")
    post(client, runtime, "shopify", refund, "refunds/create")  # replayed
    drain(runtime)
    [item] = items(runtime)
    appended = [e for e in events(runtime, item.id) if e.type == "platform_event"]
    assert [(e.note, e.data["event"], e.data["refund_id"], e.data["amount"]) for e in appended] == [
        ("Things were damaged", "refund", "890088186047892319", "85.00")]


def test_a_refund_note_without_its_order_is_an_inquiry_of_its_own(client, runtime, shops):
    refund = read_sample("shopify", "refunds-create")
    post(client, runtime, "shopify", refund, "refunds/create")
    post(client, runtime, "shopify", refund, "refunds/create")
    drain(runtime)
    [item] = items(runtime)
    assert (item.kind, item.body, item.order_id) == (VocKind.INQUIRY, "Things were damaged", None)
    assert item.subject == f"Refund on order {SHOPIFY_ORDER}"


# --------------------------------------------------------------------------------------------------
# Cafe24: header-only events, the order fetched from its Admin API first
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cafe24(make_shop, runtime):
    state = Cafe24ServerState()
    with running_server(state) as base_url:
        made = make_shop("cafe24", "cafe24bestshop", credentials={"access_token": ACCESS_TOKEN},
                         settings={"api_base_url": base_url})
        from ccms_addon.store.models import Shop
        with runtime.db.session() as s:
            s.get(Shop, made.shop.id).locale = "ko"
        yield state, made.shop


def post_cafe24(client, runtime, body: bytes) -> None:
    headers = runtime.platforms["cafe24"].delivery_headers(body, shop_domain="cafe24bestshop",
                                                           topic=None, secret=CAFE24_WEBHOOK_KEY)
    assert client.post("/webhooks/cafe24", data=body, headers=headers).status_code == 200


def test_a_cafe24_return_with_its_reason_is_one_complaint(client, runtime, cafe24):
    state, shop = cafe24
    order_id = "20200716-0000023"
    state.orders[order_id] = make_order(order_id, items=[make_item(order_id, 1, "R10")])
    body = read_sample("cafe24", "order-return-status-changed-90027")
    post_cafe24(client, runtime, body)
    drain(runtime)
    # the return moves on: the same event again with other bytes (another delivery id)
    data = json.loads(body)
    data["resource"]["shipping_status"] = "T"
    post_cafe24(client, runtime, json.dumps(data, ensure_ascii=False).encode())
    drain(runtime)

    [item] = items(runtime)
    with runtime.db.session() as s:
        order = s.scalar(select(Order).where(Order.platform_order_id == order_id))
    assert order.is_complete and item.order_id == order.id
    assert (item.kind, item.channel, item.body) == (VocKind.COMPLAINT, "platform", "not satisfied")
    assert item.subject == f"주문 {order_id} 반품 요청"
    received = events(runtime, item.id)[0]
    assert (received.data["reason_code"], received.data["customer_words"]) == ("P", True)
    assert [d.status for d in deliveries(runtime)] == [DeliveryStatus.PROCESSED] * 2


def test_a_return_reason_outlives_an_order_that_cannot_be_fetched(client, runtime, make_shop):
    make_shop("cafe24", "cafe24bestshop")  # no credentials: the Admin API is refused for good
    post_cafe24(client, runtime, read_sample("cafe24", "order-return-status-changed-90027"))
    drain(runtime)
    [delivery] = deliveries(runtime)
    assert delivery.status is DeliveryStatus.FAILED
    [item] = items(runtime)
    with runtime.db.session() as s:
        order = s.get(Order, item.order_id)
    assert order.is_complete is False and item.kind is VocKind.COMPLAINT
    assert item.contact_email == "gdhong@cafe24corp.com"  # from the event's order header


def test_cafe24_events_without_a_reason_are_no_voice(client, runtime, cafe24):
    state, _ = cafe24
    for order_id in ("20200716-0000023", "20200713-0000039", "20200708-0000080"):
        state.orders[order_id] = make_order(order_id, items=[make_item(order_id, 1, "C40")])
    post_cafe24(client, runtime, read_sample("cafe24", "order-cancellation-status-changed-90026"))
    post_cafe24(client, runtime,
                read_sample("cafe24", "order-cancellation-status-changed-bulk-90072"))
    drain(runtime)
    assert items(runtime) == []


# --------------------------------------------------------------------------------------------------
# WooCommerce
# --------------------------------------------------------------------------------------------------


def test_a_woocommerce_cancellation_with_the_shoppers_note(client, runtime, shops):
    body = sample("woocommerce", "order-created", status="cancelled",
                  customer_note="선물용인데 날짜를 못 맞춘대서 취소합니다")
    post(client, runtime, "woocommerce", body, "order.updated")
    later = sample("woocommerce", "order-created", status="cancelled", customer_note=(
        "선물용인데 날짜를 못 맞춘대서 취소합니다"), date_modified_gmt="2017-03-23T08:00:00")
    post(client, runtime, "woocommerce", later, "order.updated")  # saved again: a new delivery
    drain(runtime)
    [item] = items(runtime)
    assert (item.kind, item.body) == (VocKind.INQUIRY, "선물용인데 날짜를 못 맞춘대서 취소합니다")
    assert events(runtime, item.id)[0].data["reason_code"] == "cancelled"
    assert len(deliveries(runtime)) == 2


def test_a_woocommerce_cancellation_without_words_and_refunds_without_reasons(client, runtime,
                                                                              shops):
    post(client, runtime, "woocommerce", sample("woocommerce", "order-created", status="cancelled"),
         "order.updated")
    post(client, runtime, "woocommerce", read_sample("woocommerce", "order-updated"),
         "order.updated")  # two refunds, no reason given
    drain(runtime)
    assert items(runtime) == []


def test_a_woocommerce_refund_reason(client, runtime, shops):
    data = json.loads(read_sample("woocommerce", "order-updated"))
    data["refunds"][0]["reason"] = "컵이 깨져서 왔어요"
    post(client, runtime, "woocommerce", json.dumps(data, ensure_ascii=False).encode(),
         "order.updated")
    drain(runtime)
    [item] = items(runtime)
    assert (item.kind, item.body, item.contact_email) == (
        VocKind.INQUIRY, "컵이 깨져서 왔어요", "joao.silva@example.com")
    assert events(runtime, item.id)[0].data["refund_id"] == "726"


# --------------------------------------------------------------------------------------------------
# Exactly once: a killed job, racing workers
# --------------------------------------------------------------------------------------------------


def test_a_job_killed_after_the_items_records_nothing_twice(client, runtime, shops):
    post(client, runtime, "shopify", read_sample("shopify", "orders-cancelled"), "orders/cancelled")
    [delivery] = deliveries(runtime)
    assert DeliveryProcessor(runtime).run(delivery.id) == "processed"
    with runtime.db.session() as s:  # as if the worker died before marking the row processed
        row = s.get(WebhookDelivery, delivery.id)
        row.status, row.processed_at = DeliveryStatus.RECEIVED, None
    assert DeliveryProcessor(runtime).run(delivery.id) == "processed"
    assert len(items(runtime)) == 1


def test_workers_racing_on_one_event_record_it_once(runtime, shops):
    shop_id = shops["shopify"].id
    voices = voices_from([OrderCancelled("777", "customer", "색이 달라요", True)])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work():
        try:
            barrier.wait(5)
            record_voices(runtime, shop_id, "shopify", voices)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(items(runtime)) == 1


# --------------------------------------------------------------------------------------------------
# What is a voice (no store)
# --------------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)


def refund(refund_id: str, note: str | None, created: datetime | None = None) -> RefundRecord:
    return RefundRecord(refund_id, "o-1", Decimal("10"), "KRW", note=note, created_at=created)


def order_with(*refunds: RefundRecord) -> OrderChanged:
    return OrderChanged(OrderRecord("o-1", "1001", "KRW", Decimal("10"), NOW, refunds=refunds))


def test_voices_from_events():
    assert voices_from([OrderCancelled("o-1", "staff", None, False)], now=NOW) == []
    assert voices_from([OrderCancelled("o-1", None, None, None)], now=NOW) == []
    [complaint] = voices_from([ReturnRequested("o-1", "E", None)], now=NOW)
    [inquiry] = voices_from([ReturnRequested("o-1", None, None)], now=NOW)
    assert (complaint.kind, inquiry.kind) == (VocKind.COMPLAINT, VocKind.INQUIRY)
    # a refund's note that repeats the return's reason adds nothing
    assert [v.what for v in voices_from([ReturnRequested("o-1", "E", "파손"),
                                         RefundCreated(refund("r1", "파손"))], now=NOW)] == ["return"]
    # refunds re-sent inside an order update: a recent one is a voice, an old one history
    old, recent = refund("r-old", "late", NOW - timedelta(days=90)), refund("r-new", "late", NOW)
    assert [v.marker for v in voices_from([order_with(old, recent)], now=NOW)] == ["refund:r-new"]
    # announced by its own event, even an old refund counts (the event is new)
    assert [v.marker for v in voices_from([RefundCreated(old)], now=NOW)] == ["refund:r-old"]
    assert voices_from([RefundCreated(refund("r2", "  "))], now=NOW) == []

