"""Cafe24 order events carry a header or only ids: the worker stores what arrived at once, then
fetches the full orders from the Admin API (a loopback server speaking Cafe24's documented API),
retrying with backoff while it is unreachable, without holding up other deliveries."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from ccms_addon.store.models import DeliveryStatus, Order, WebhookDelivery
from tests.conftest import CAFE24_WEBHOOK_KEY
from tests.jobs.helpers import drain
from tests.platform_servers.cafe24 import (ACCESS_TOKEN, Cafe24ServerState, make_item, make_order,
                                           running_server)
from tests.samples import read_sample

MALL = "cafe24bestshop"


@pytest.fixture
def cafe24(make_shop):
    state = Cafe24ServerState()
    with running_server(state) as base_url:
        shop = make_shop("cafe24", MALL, credentials={"access_token": ACCESS_TOKEN},
                         settings={"api_base_url": base_url})
        yield state, shop.shop


def post(client, runtime, body):
    headers = runtime.platforms["cafe24"].delivery_headers(body, shop_domain=MALL, topic=None,
                                                           secret=CAFE24_WEBHOOK_KEY)
    assert client.post("/webhooks/cafe24", data=body, headers=headers).status_code == 200


def _orders(runtime):
    with runtime.db.session() as s:
        return {o.platform_order_id: (o.is_complete, len(o.lines), o.total)
                for o in s.scalars(select(Order))}


def _status(runtime):
    with runtime.db.session() as s:
        return [d.status for d in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]


def test_order_created_stores_the_summary_then_the_fetched_order(client, runtime, cafe24):
    state, _ = cafe24
    order_id = "20200717-0029236"
    state.orders[order_id] = make_order(order_id, items=[make_item(order_id, 1, "N10"),
                                                         make_item(order_id, 2, "N10")])
    post(client, runtime, read_sample("cafe24", "order-created-90023"))
    drain(runtime)
    assert _status(runtime) == [DeliveryStatus.PROCESSED]
    complete, lines, _ = _orders(runtime)[order_id]
    assert complete and lines == 2
    assert any(call["path"].endswith("/orders") for call in state.calls)


def test_bulk_event_fetches_every_order(client, runtime, cafe24):
    state, _ = cafe24
    ids = ["20200717-0001242", "20200717-0001251", "20200717-0001261", "20200717-0001270",
           "20200717-0001287"]
    for oid in ids:
        state.orders[oid] = make_order(oid, items=[make_item(oid, 1, "N40")])
    post(client, runtime, read_sample("cafe24", "order-shipping-status-changed-bulk-90071"))
    drain(runtime)
    assert set(_orders(runtime)) == set(ids)
    assert all(complete for complete, _, _ in _orders(runtime).values())


def test_unreachable_api_keeps_the_summary_and_retries_later(client, runtime, cafe24):
    state, _ = cafe24
    order_id = "20200717-0029236"
    state.orders[order_id] = make_order(order_id, items=[make_item(order_id, 1, "N10")])
    state.fail_status, state.fail_times, state.retry_after = 503, 1000, None
    post(client, runtime, read_sample("cafe24", "order-created-90023"))
    drain(runtime)
    assert _status(runtime) == [DeliveryStatus.RETRYING]
    assert _orders(runtime)[order_id][0] is False  # the summary is stored already
    with runtime.db.session() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
        assert delivery.attempts == 1
        assert delivery.next_attempt_at > datetime.now(timezone.utc) + timedelta(seconds=20)
        delivery.next_attempt_at = datetime.now(timezone.utc)  # time passes
    state.fail_times = 0
    drain(runtime)
    assert _status(runtime) == [DeliveryStatus.PROCESSED]
    assert _orders(runtime)[order_id][:2] == (True, 1)
