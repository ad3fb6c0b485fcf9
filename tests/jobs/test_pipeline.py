"""Deliveries → real RQ worker → canonical orders, customers, refunds, privacy actions."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ccms_addon import hookimpl
from ccms_addon.jobs.pipeline import DeliveryProcessor
from ccms_addon.store.models import (Customer, DeliveryStatus, Order, PrivacyRequest,
                                     PrivacyRequestKind, Refund, Shop, ShopStatus, WebhookDelivery)
from tests.jobs.helpers import drain
from tests.samples import read_sample
from tests.webhooks.test_ingress import SHOPIFY_SHOP, WOO_SITE, shops, signed  # noqa: F401


def post(client, runtime, platform, body, topic=None, **kwargs):
    response = client.post(f"/webhooks/{platform}", data=body,
                           headers=signed(runtime, platform, body, topic=topic, **kwargs))
    assert response.status_code == 200, response.json
    return response


def deliveries(runtime):
    with runtime.db.session() as s:
        return s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


def test_hook_order_synced(client, runtime, shops):
    calls = []

    class Listener:
        @hookimpl
        def order_synced(self, shop_id, order_id, platform_order_id, created):
            calls.append((shop_id, platform_order_id, created))

    runtime.pm.register(Listener())
    body = read_sample("shopify", "orders-updated")
    post(client, runtime, "shopify", body, "orders/updated")
    delivery_id = deliveries(runtime)[0].id
    # in this process, so the listener sees the calls (a forked work-horse has its own memory)
    assert DeliveryProcessor(runtime).run(delivery_id) == "processed"
    assert DeliveryProcessor(runtime).run(delivery_id) == "processed"  # a re-run changes nothing
    assert calls == [(shops["shopify"].id, "820982911946154508", True)]


def test_shopify_order_lands_in_the_store_and_the_api(client, runtime, shops):
    new = post(client, runtime, "shopify", read_sample("shopify", "orders-updated"), "orders/updated")
    token_shop = shops["shopify"]
    drain(runtime)
    assert [d.status for d in deliveries(runtime)] == [DeliveryStatus.PROCESSED]
    with runtime.db.session() as s:
        order = s.scalars(select(Order)).one()
        assert order.shop_id == token_shop.id and order.number == "#9999"
        assert order.currency == "USD" and len(order.lines) == 5


def test_woocommerce_order_with_refunds(client, runtime, shops):
    post(client, runtime, "woocommerce", read_sample("woocommerce", "order-updated"), "order.updated")
    drain(runtime)
    with runtime.db.session() as s:
        order = s.scalars(select(Order)).one()
        assert order.total == Decimal("39.00") and order.email == "joao.silva@example.com"
        assert sorted(r.amount for r in s.scalars(select(Refund))) == [Decimal("9.00"),
                                                                        Decimal("10.00")]


def test_unknown_topic_is_kept_and_ignored(client, runtime, shops):
    post(client, runtime, "shopify", b'{"id": 1}', "products/create")
    drain(runtime)
    assert [d.status for d in deliveries(runtime)] == [DeliveryStatus.IGNORED]


def test_customer_redact_erases_personal_data(client, runtime, shops):
    post(client, runtime, "shopify", read_sample("shopify", "customers-create"), "customers/create")
    drain(runtime)
    with runtime.db.session() as s:
        customer = s.scalars(select(Customer)).one()
        assert customer.email == "bob@biller.com"
    redact = ('{"shop_id": 1, "shop_domain": "%s", "customer": {"id": %s, "email": "bob@biller.com"},'
              ' "orders_to_redact": []}' % (SHOPIFY_SHOP, customer.platform_customer_id)).encode()
    post(client, runtime, "shopify", redact, "customers/redact")
    drain(runtime)
    with runtime.db.session() as s:
        customer = s.scalars(select(Customer)).one()
        assert (customer.email, customer.name, customer.phone) == (None, None, None)
        assert customer.redacted_at is not None
        bodies = s.scalars(select(WebhookDelivery.body)).all()
        assert not any(b"bob@biller.com" in b for b in bodies[:1])
        assert s.scalars(select(PrivacyRequest.kind)).all() == [PrivacyRequestKind.CUSTOMER_REDACT]


def test_data_request_produces_an_encrypted_export(client, runtime, shops):
    post(client, runtime, "shopify", read_sample("shopify", "orders-updated"), "orders/updated")
    post(client, runtime, "shopify", read_sample("shopify", "customers-data_request"),
         "customers/data_request")
    drain(runtime)
    with runtime.db.session() as s:
        request = s.scalars(select(PrivacyRequest)).one()
        assert request.kind is PrivacyRequestKind.DATA_REQUEST
        assert b"john@example.com" not in request.export_encrypted.encode()
        export = runtime.box.decrypt_json(request.export_encrypted)
        assert set(export) == {"customers", "orders", "voc_items", "follow_ups", "claims",
                               "messages"}


def test_app_uninstalled_then_shop_redact(client, runtime, shops):
    post(client, runtime, "shopify", read_sample("shopify", "orders-updated"), "orders/updated")
    post(client, runtime, "shopify", read_sample("shopify", "app-uninstalled"), "app/uninstalled")
    drain(runtime)
    with runtime.db.session() as s:
        shop = s.get(Shop, shops["shopify"].id)
        assert shop.status is ShopStatus.UNINSTALLED and shop.credentials_encrypted is None
    post(client, runtime, "shopify", read_sample("shopify", "shop-redact"), "shop/redact")
    drain(runtime)
    with runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_job_killed_before_commit_is_swept_and_run_again(client, runtime, shops):
    """A delivery whose job vanished (Redis lost it, the worker died) is due again after its lease."""
    post(client, runtime, "shopify", read_sample("shopify", "orders-updated"), "orders/updated")
    from ccms_addon.jobs.dispatcher import dispatch_due
    assert dispatch_due(runtime) == 1
    runtime.redis.flushdb()  # the queue is lost
    assert dispatch_due(runtime) == 0  # leased: not due yet
    with runtime.db.session() as s:
        row = s.scalars(select(WebhookDelivery)).one()
        row.next_attempt_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    drain(runtime)
    assert [d.status for d in deliveries(runtime)] == [DeliveryStatus.PROCESSED]
