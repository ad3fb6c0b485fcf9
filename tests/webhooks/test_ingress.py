"""POST /webhooks/<platform>: verify, de-duplicate, persist, answer — against the real samples."""

import json

import pytest
from sqlalchemy import func, select

from ccms_addon.platforms import WebhookRequest
from ccms_addon.store.db import make_engine
from ccms_addon.store.models import DeliveryStatus, WebhookDelivery
from tests.conftest import CAFE24_WEBHOOK_KEY, SHOPIFY_SECRET, SHOPIFY_SECRET_PREVIOUS, WOO_SECRET
from tests.samples import read_sample, sample_params

SHOPIFY_SHOP = "ccms-test.myshopify.com"
WOO_SITE = "https://woo.example.com"
CAFE24_MALL = "cafe24bestshop"


@pytest.fixture
def shops(make_shop):
    return {"shopify": make_shop("shopify", SHOPIFY_SHOP).shop,
            "woocommerce": make_shop("woocommerce", WOO_SITE, webhook_secret=WOO_SECRET).shop,
            "cafe24": make_shop("cafe24", CAFE24_MALL).shop}


def signed(runtime, platform, body, *, topic=None, shop=None, secret=None):
    shop = shop or {"shopify": SHOPIFY_SHOP, "woocommerce": WOO_SITE, "cafe24": CAFE24_MALL}[platform]
    secret = secret or {"shopify": SHOPIFY_SECRET, "woocommerce": WOO_SECRET,
                        "cafe24": CAFE24_WEBHOOK_KEY}[platform]
    return runtime.platforms[platform].delivery_headers(body, shop_domain=shop, topic=topic,
                                                        secret=secret)


def stored(runtime) -> int:
    with runtime.db.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookDelivery))


def shopify_topic(name: str) -> str:
    return name.replace("-", "/", 1)


@pytest.mark.parametrize("name", sample_params("shopify"))
def test_every_shopify_sample_is_accepted_once(client, runtime, shops, name):
    body = read_sample("shopify", name)
    headers = signed(runtime, "shopify", body, topic=shopify_topic(name))
    first = client.post("/webhooks/shopify", data=body, headers=headers)
    again = client.post("/webhooks/shopify", data=body, headers=headers)
    assert (first.status_code, first.json["status"]) == (200, "accepted")
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    assert stored(runtime) == 1
    with runtime.db.session() as s:
        row = s.scalars(select(WebhookDelivery)).one()
        assert row.body == body and row.status is DeliveryStatus.RECEIVED
        assert row.shop_id == shops["shopify"].id and row.topic == shopify_topic(name)


@pytest.mark.parametrize("name", sample_params("woocommerce"))
def test_every_woocommerce_sample_is_accepted_once(client, runtime, shops, name):
    body = read_sample("woocommerce", name)
    topic = name.replace("-", ".", 1)
    first = client.post("/webhooks/woocommerce", data=body,
                        headers=signed(runtime, "woocommerce", body, topic=topic))
    # WooCommerce's retry carries a new Delivery-ID: still the same delivery
    again = client.post("/webhooks/woocommerce", data=body,
                        headers=signed(runtime, "woocommerce", body, topic=topic))
    assert first.status_code == 200 and again.json["status"] == "duplicate"
    assert stored(runtime) == 1


@pytest.mark.parametrize("name", sample_params("cafe24"))
def test_every_cafe24_sample_is_accepted_once(client, runtime, shops, make_shop, name):
    body = read_sample("cafe24", name)
    mall = runtime.platforms["cafe24"].shop_domain(WebhookRequest.build({}, body))
    if mall != CAFE24_MALL:
        make_shop("cafe24", mall)
    headers = signed(runtime, "cafe24", body, shop=mall)
    assert client.post("/webhooks/cafe24", data=body, headers=headers).json["status"] == "accepted"
    assert client.post("/webhooks/cafe24", data=body, headers=headers).json["status"] == "duplicate"
    assert stored(runtime) == 1


def test_shopify_previous_secret_accepted_during_rotation(client, runtime, shops):
    body = read_sample("shopify", "orders-paid")
    headers = signed(runtime, "shopify", body, topic="orders/paid", secret=SHOPIFY_SECRET_PREVIOUS)
    assert client.post("/webhooks/shopify", data=body, headers=headers).status_code == 200


@pytest.mark.parametrize("platform", ["shopify", "woocommerce", "cafe24"])
def test_bad_or_missing_signature_is_401_and_stores_nothing(client, runtime, shops, platform):
    body = json.dumps({"id": 1, "event_no": 90023,
                       "resource": {"mall_id": CAFE24_MALL, "order_id": "x"}}).encode()
    headers = signed(runtime, platform, body, topic="orders/create" if platform == "shopify"
                     else "order.created", secret="not-the-secret")
    assert client.post(f"/webhooks/{platform}", data=body, headers=headers).status_code == 401
    signature_headers = {"x-shopify-hmac-sha256", "x-wc-webhook-signature", "x-api-key"}
    unsigned = {k: v for k, v in headers.items() if k.lower() not in signature_headers}
    response = client.post(f"/webhooks/{platform}", data=body, headers=unsigned)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "invalid_signature"
    assert stored(runtime) == 0


def test_unknown_platform_and_unknown_shop_are_404(client, runtime, shops):
    body = b"{}"
    assert client.post("/webhooks/magento", data=body).status_code == 404
    headers = signed(runtime, "shopify", body, topic="orders/create", shop="stranger.myshopify.com")
    response = client.post("/webhooks/shopify", data=body, headers=headers)
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_shop"


def test_body_over_one_mib_is_413(client, runtime, shops):
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    headers = signed(runtime, "shopify", body, topic="orders/create")
    assert client.post("/webhooks/shopify", data=body, headers=headers).status_code == 413
    assert stored(runtime) == 0


def test_authentic_body_that_is_not_json_is_400(client, runtime, shops):
    body = b"this is not json"
    headers = signed(runtime, "shopify", body, topic="orders/create")
    response = client.post("/webhooks/shopify", data=body, headers=headers)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_payload"
    assert stored(runtime) == 0


def test_woocommerce_activation_ping_is_200_and_not_stored(client, runtime, shops):
    response = client.post("/webhooks/woocommerce", data=b"webhook_id=42",
                           content_type="application/x-www-form-urlencoded",
                           headers={"X-WC-Webhook-Source": WOO_SITE + "/"})
    assert response.status_code == 200
    assert stored(runtime) == 0


def test_store_unreachable_is_503_so_the_platform_retries(client, runtime, shops, app):
    body = read_sample("shopify", "orders-updated")
    client.post("/webhooks/shopify", data=body, headers=signed(runtime, "shopify", body,
                                                               topic="orders/updated"))
    live_engine = runtime.db.engine
    runtime.db.engine = make_engine("postgresql://nobody@127.0.0.1:9/none",
                                    connect_args={"connect_timeout": 1})
    try:
        other = body.replace(b'"#9999"', b'"#9998"')
        response = client.post("/webhooks/shopify", data=other,
                               headers=signed(runtime, "shopify", other, topic="orders/updated"))
    finally:
        runtime.db.engine.dispose()
        runtime.db.engine = live_engine
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert stored(runtime) == 1


def test_cafe24_sender_outside_the_allow_list_is_401(client, runtime, shops):
    import dataclasses
    body = read_sample("cafe24", "order-created-90023")
    headers = signed(runtime, "cafe24", body)
    platforms = dict(runtime.settings.platforms)
    platforms["cafe24"] = {**platforms["cafe24"], "allowed_ips": "10.0.0.0/8, 192.0.2.7"}
    runtime.settings = dataclasses.replace(runtime.settings, platforms=platforms)
    assert client.post("/webhooks/cafe24", data=body, headers=headers).status_code == 401
    allowed = client.post("/webhooks/cafe24", data=body, headers=headers,
                          environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert allowed.status_code == 200


# --------------------------------------------------------------------------------------------------
# The inbox's direct connection (one autocommitted INSERT per delivery)
# --------------------------------------------------------------------------------------------------


def test_the_stored_row_is_what_the_orm_would_write(client, runtime, shops):
    from datetime import datetime, timedelta, timezone
    body = read_sample("shopify", "orders-paid")
    headers = signed(runtime, "shopify", body, topic="orders/paid")
    before = datetime.now(timezone.utc)
    assert client.post("/webhooks/shopify", data=body, headers=headers).json["status"] == "accepted"
    with runtime.db.session() as s:
        row = s.scalars(select(WebhookDelivery)).one()
    assert row.platform == "shopify" and row.topic == "orders/paid" and row.attempts == 0
    assert row.delivery_id == headers["X-Shopify-Webhook-Id"]
    assert row.status is DeliveryStatus.RECEIVED and row.next_attempt_at is None
    assert before - timedelta(seconds=1) <= row.received_at <= datetime.now(timezone.utc)
    triggered = datetime.fromisoformat(headers["X-Shopify-Triggered-At"].replace("Z", "+00:00"))
    assert abs(row.occurred_at - triggered) < timedelta(seconds=1)


def test_copies_delivered_at_once_from_many_threads_are_stored_once(app, runtime, shops):
    import threading
    body = read_sample("shopify", "orders-create")
    headers = signed(runtime, "shopify", body, topic="orders/create")
    answers, barrier = [], threading.Barrier(6)

    def deliver():
        client = app.test_client()
        barrier.wait()
        response = client.post("/webhooks/shopify", data=body, headers=headers)
        answers.append((response.status_code, response.json["status"]))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [(200, "accepted")] + [(200, "duplicate")] * 5
    assert stored(runtime) == 1


def test_a_connection_the_server_closed_is_replaced(client, runtime, shops):
    """PostgreSQL restarted (or an idle timeout) since the last delivery: the next one is still
    stored, on a new connection, without a 503."""
    if runtime.db.engine.dialect.name != "postgresql":
        pytest.skip("a server-side disconnect needs PostgreSQL")
    from sqlalchemy import text

    def direct_backend() -> int:  # the backend of the direct connection the next delivery gets
        [(pid,)] = runtime.db.run("test.backend_pid", lambda _: select(func.pg_backend_pid()), {})
        return pid

    first = read_sample("shopify", "orders-create")
    client.post("/webhooks/shopify", data=first, headers=signed(runtime, "shopify", first,
                                                                 topic="orders/create"))
    backend = direct_backend()
    with runtime.db.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
    other = first.replace(b'"#9999"', b'"#9998"')
    response = client.post("/webhooks/shopify", data=other,
                           headers=signed(runtime, "shopify", other, topic="orders/create"))
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert direct_backend() != backend
    assert stored(runtime) == 2


def test_a_secret_replaced_a_moment_ago_is_read_again_not_refused_for_the_cache_life(
        client, runtime, shops, monkeypatch):
    """A WooCommerce reconnect makes new webhooks with new secrets: the very next delivery,
    signed with the new one, must not meet the old secret cached in this process."""
    import ccms_addon.webhooks.inbox as inbox_module
    from ccms_addon.store.models import Shop
    body, topic = read_sample("woocommerce", "order-created"), "order.created"
    assert client.post("/webhooks/woocommerce", data=body,
                       headers=signed(runtime, "woocommerce", body, topic=topic)).status_code == 200
    with runtime.db.session() as session:  # what the reconnect stores
        session.get(Shop, shops["woocommerce"].id).webhook_secret_encrypted = \
            runtime.box.encrypt("the-new-secret")
    monkeypatch.setattr(inbox_module, "REFETCH_INTERVAL", 0.0)  # not a second later: at once
    fresh = client.post("/webhooks/woocommerce", data=body,
                        headers=signed(runtime, "woocommerce", body, topic=topic,
                                       secret="the-new-secret"))
    assert (fresh.status_code, fresh.json.get("status")) == (200, "duplicate"), fresh.json
    old = client.post("/webhooks/woocommerce", data=body,
                      headers=signed(runtime, "woocommerce", body, topic=topic))
    assert old.status_code == 401
