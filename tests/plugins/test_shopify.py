"""The Shopify adapter against Shopify's real sample payloads and a loopback REST Admin API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ccms_addon.plugins.shopify as shopify_plugin
from ccms_addon.platforms import (
    AppUninstalled,
    CustomerChanged,
    CustomerDataRequested,
    CustomerRedactRequested,
    FinancialStatus,
    FulfillmentStatus,
    OrderCancelled,
    OrderChanged,
    OrdersNeedFetch,
    PayloadInvalidError,
    PlatformAdapter,
    PlatformAuthError,
    PlatformUnavailableError,
    RefundCreated,
    ShopContext,
    ShopRedactRequested,
    UnknownTopicError,
    WebhookRequest,
)
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.plugins.shopify import ShopifyAdapter
from ccms_addon.plugins.shopify.client import ShopifyAdminClient, parse_call_limit, retry_after_seconds
from tests.platform_servers.shopify import ShopifyAdminServer
from tests.samples import read_sample, sample_names, sample_params

SECRET = "shpss_test_client_secret"
PREVIOUS_SECRET = "shpss_previous_client_secret"
SETTINGS = {"api_secret": SECRET, "api_secret_previous": PREVIOUS_SECRET}
SHOP = "ccms-test.myshopify.com"
WEBHOOK_ID = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
TRIGGERED_AT = "2026-09-11T10:15:30.123456789Z"
TOKEN = "shpat_loopback_token"
ORDER_ID = "820982911946154508"  # > 2**53: exact only if never parsed as a float

EXPECTED_EVENT = {
    "app-uninstalled": AppUninstalled,
    "customers-create": CustomerChanged,
    "customers-update": CustomerChanged,
    "customers-data_request": CustomerDataRequested,
    "customers-redact": CustomerRedactRequested,
    "fulfillments-create": OrdersNeedFetch,
    "orders-cancelled": (OrderChanged, OrderCancelled),
    "orders-create": OrderChanged,
    "orders-fulfilled": OrderChanged,
    "orders-paid": OrderChanged,
    "orders-updated": OrderChanged,
    "refunds-create": RefundCreated,
    "shop-redact": ShopRedactRequested,
}

adapter = ShopifyAdapter()


def topic_of(sample: str) -> str:
    """``customers-data_request`` → ``customers/data_request``."""
    return sample.replace("-", "/", 1)


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook(body: bytes, topic: str = "orders/create", *, secret: str | None = SECRET,
            **overrides: str | None) -> WebhookRequest:
    """A delivery as Shopify sends it; ``overrides`` replace (or, with None, drop) headers."""
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body, secret) if secret else None,
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Webhook-Id": WEBHOOK_ID,
        "X-Shopify-Triggered-At": TRIGGERED_AT,
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return WebhookRequest.build({k: v for k, v in headers.items() if v is not None}, body, "127.0.0.1")


def sample_json(name: str) -> dict[str, Any]:
    return json.loads(read_sample("shopify", name), parse_float=Decimal)


def dumps(data: Any) -> bytes:
    """JSON text for a modified sample; Decimals go back out as decimal strings, as Shopify writes money."""
    return json.dumps(data, default=str).encode()


def normalize_one(topic: str, body: bytes) -> Any:
    events = adapter.normalize(topic, body)
    assert len(events) == 1
    return events[0]


# --------------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------------


def test_hook_register_platforms() -> None:
    pm = get_plugin_manager([shopify_plugin], load_entry_points=False)
    registry = platform_registry(pm)
    assert isinstance(registry["shopify"], ShopifyAdapter)
    assert isinstance(registry["shopify"], PlatformAdapter)


def test_registered_through_the_entry_point_group() -> None:
    from importlib.metadata import entry_points

    (entry_point,) = [ep for ep in entry_points(group="ccms_addon") if ep.name == "shopify"]
    assert entry_point.load() is shopify_plugin


@pytest.mark.parametrize("value", ["ccms-test.myshopify.com", " CCMS-Test.MyShopify.com ",
                                   "https://ccms-test.myshopify.com/", "https://ccms-test.myshopify.com/admin"])
def test_canonical_shop_domain(value: str) -> None:
    assert adapter.canonical_shop_domain(value) == SHOP


@pytest.mark.parametrize("value", ["", "ccms-test", "ccms-test.com", "https://shop.example.com",
                                   "ccms-test.myshopify.com.evil.com"])
def test_canonical_shop_domain_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="myshopify.com"):
        adapter.canonical_shop_domain(value)


def test_delivery_headers_are_what_the_adapter_accepts() -> None:
    body = read_sample("shopify", "orders-paid")
    headers = adapter.delivery_headers(body, shop_domain="CCMS-Test.myshopify.com", topic="orders/paid",
                                       secret=SECRET)
    request = WebhookRequest.build(headers, body)
    assert adapter.verify(request, adapter.webhook_secrets(SETTINGS, None))
    identity = adapter.delivery(request)
    assert (identity.shop_domain, identity.topic) == (SHOP, "orders/paid")
    assert identity.occurred_at is not None and identity.occurred_at.tzinfo is not None
    again = adapter.delivery_headers(body, shop_domain=SHOP, topic="orders/paid", secret=SECRET)
    assert again["X-Shopify-Webhook-Id"] != headers["X-Shopify-Webhook-Id"]  # a new delivery each time
    with pytest.raises(ValueError, match="topic"):
        adapter.delivery_headers(body, shop_domain=SHOP, topic=None, secret=SECRET)


# --------------------------------------------------------------------------------------------------
# every real sample: signed, identified, normalized
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sample_params("shopify"))
def test_sample_round_trip(name: str) -> None:
    body = read_sample("shopify", name)
    request = webhook(body, topic_of(name))

    assert adapter.is_ping(request) is False
    assert adapter.shop_domain(request) == SHOP
    secrets = adapter.webhook_secrets(SETTINGS, shop_secret=None)
    assert adapter.verify(request, secrets)
    identity = adapter.delivery(request)
    assert (identity.shop_domain, identity.topic, identity.delivery_id) == (SHOP, topic_of(name), WEBHOOK_ID)
    assert identity.occurred_at == datetime(2026, 9, 11, 10, 15, 30, 123456, tzinfo=timezone.utc)

    events = adapter.normalize(identity.topic, body)
    expected = EXPECTED_EVENT[name]
    assert [type(e) for e in events] == list(expected if isinstance(expected, tuple) else [expected])


def test_every_sample_has_an_expectation() -> None:
    names = sample_names("shopify")
    if not names:
        pytest.skip("Shopify samples not beside the checkout")
    assert set(names) <= set(EXPECTED_EVENT)


@pytest.mark.parametrize("name", ["orders-cancelled", "orders-paid", "orders-updated", "orders-fulfilled"])
def test_order_sample_2026_07(name: str) -> None:
    order = adapter.normalize(topic_of(name), read_sample("shopify", name))[0].order
    assert order.platform_order_id == ORDER_ID
    assert order.number == "#9999"
    assert order.currency == "USD"
    assert order.total == Decimal("404.95")  # total_price (before refunds), not current 414.95
    assert order.complete is True
    assert order.financial_status is FinancialStatus.VOIDED
    assert order.fulfillment_status is FulfillmentStatus.UNFULFILLED  # "fulfillment_status": null
    midnight_utc = datetime(2022, 1, 1, tzinfo=timezone.utc)  # 2021-12-31T19:00:00-05:00
    assert order.updated_at == order.placed_at == order.cancelled_at == midnight_utc
    assert order.updated_at.tzinfo is timezone.utc
    assert (order.email, order.phone, order.customer_name) == ("jon@example.com", None, "John Smith")
    assert order.customer.platform_customer_id == "115310627314723954"
    assert order.customer.email == "john@example.com"
    assert len(order.lines) == 5
    first, plan = order.lines[0], order.lines[1]
    assert (first.platform_line_id, first.title, first.quantity, first.unit_price, first.sku) == (
        "487817672276298554", "Aviator sunglasses", 1, Decimal("89.99"), "SKU2006-001")
    assert first.product_id == "788032119674292922" and first.variant_id is None
    assert plan.product_id is None and plan.sku == "LENS-PROTECT-2YR"
    assert sum(line.unit_price * line.quantity for line in order.lines) == Decimal("414.95")
    assert order.refunds == ()


def test_order_sample_older_version() -> None:
    order = normalize_one("orders/create", read_sample("shopify", "orders-create")).order
    assert order.platform_order_id == ORDER_ID
    assert order.total == Decimal("359.97")  # total_price
    assert [line.platform_line_id for line in order.lines] == [
        "487817672276298554", "976318377106520349", "315789986012684393"]
    assert order.lines[2].product_id == "788032119674292924"


def test_order_total_falls_back_to_current_total_price() -> None:
    data = sample_json("orders-cancelled")
    del data["total_price"]
    assert normalize_one("orders/updated", dumps(data)).order.total == Decimal("414.95")


def test_refund_sample() -> None:
    refund = normalize_one("refunds/create", read_sample("shopify", "refunds-create")).refund
    assert refund.platform_refund_id == "890088186047892319"
    assert refund.platform_order_id == ORDER_ID
    assert refund.amount == Decimal("85.00")  # transactions 75.00 + 10.00
    assert refund.currency == "USD"  # transactions say null: taken from the money sets
    assert refund.note == "Things were damaged"
    assert refund.created_at == datetime(2022, 1, 1, tzinfo=timezone.utc)


def test_refund_without_successful_transactions_is_valued_from_lines_and_adjustments() -> None:
    data = sample_json("refunds-create")
    data["transactions"][0]["status"] = "pending"
    data["transactions"][1]["kind"] = "sale"
    data["order_adjustments"] = [{"id": 1, "amount": "-5.00", "tax_amount": "0.00",
                                  "kind": "shipping_refund"}]
    refund = normalize_one("refunds/create", dumps(data)).refund
    # five line subtotals (JSON numbers in the sample) sum to 414.95, plus 5.00 refunded shipping
    assert refund.amount == Decimal("419.95")
    assert refund.currency == "USD"


def test_order_carries_its_refunds() -> None:
    order = sample_json("orders-cancelled")
    order["refunds"] = [sample_json("refunds-create")]
    record = normalize_one("orders/updated", dumps(order)).order
    (refund,) = record.refunds
    assert (refund.platform_refund_id, refund.platform_order_id, refund.amount, refund.currency) == (
        "890088186047892319", ORDER_ID, Decimal("85.00"), "USD")


def test_customer_samples() -> None:
    for name in ("customers-create", "customers-update"):
        customer = normalize_one(topic_of(name), read_sample("shopify", name)).customer
        assert customer.platform_customer_id == "706405506930370084"
        assert (customer.email, customer.name, customer.phone) == ("bob@biller.com", "Bob Biller", None)
        assert customer.updated_at == datetime(2022, 1, 1, tzinfo=timezone.utc)


def test_fulfillment_sample_asks_for_its_order() -> None:
    event = normalize_one("fulfillments/create", read_sample("shopify", "fulfillments-create"))
    assert event == OrdersNeedFetch((ORDER_ID,))
    assert adapter.normalize("fulfillments/update", read_sample("shopify", "fulfillments-create")) == [event]


def test_privacy_samples() -> None:
    request = normalize_one("customers/data_request", read_sample("shopify", "customers-data_request"))
    assert request == CustomerDataRequested("9999", "191167", "john@example.com",
                                            ("299938", "280263", "220458"))
    redact = normalize_one("customers/redact", read_sample("shopify", "customers-redact"))
    assert redact == CustomerRedactRequested(("191167",), ("john@example.com",),
                                             ("299938", "280263", "220458"))
    assert adapter.normalize("shop/redact", read_sample("shopify", "shop-redact")) == [ShopRedactRequested()]
    assert adapter.normalize("app/uninstalled", read_sample("shopify", "app-uninstalled")) == [AppUninstalled()]


# --------------------------------------------------------------------------------------------------
# order details the samples do not show
# --------------------------------------------------------------------------------------------------


def test_customer_without_protected_data_is_a_normal_order() -> None:
    data = sample_json("orders-cancelled")
    data["customer"].update({"email": None, "first_name": None, "last_name": None, "phone": None})
    data.update({"email": None, "contact_email": None})
    order = normalize_one("orders/create", dumps(data)).order
    assert order.customer.platform_customer_id == "115310627314723954"
    assert (order.customer.email, order.customer.name, order.email) == (None, None, None)
    assert order.customer_name == "Steve Shipper"  # the billing address still names someone

    data["customer"] = None
    assert normalize_one("orders/create", dumps(data)).order.customer is None


@pytest.mark.parametrize(("shopify", "canonical"), [
    (None, FulfillmentStatus.UNFULFILLED), ("partial", FulfillmentStatus.PARTIAL),
    ("fulfilled", FulfillmentStatus.FULFILLED), ("restocked", FulfillmentStatus.RETURNED),
    ("something_new", FulfillmentStatus.UNKNOWN),
])
def test_fulfillment_status(shopify: str | None, canonical: FulfillmentStatus) -> None:
    data = sample_json("orders-cancelled")
    data["fulfillment_status"] = shopify
    assert normalize_one("orders/fulfilled", dumps(data)).order.fulfillment_status is canonical


def test_fulfillment_status_absent_is_unknown() -> None:
    data = sample_json("orders-cancelled")
    del data["fulfillment_status"]
    assert normalize_one("orders/updated", dumps(data)).order.fulfillment_status is FulfillmentStatus.UNKNOWN


@pytest.mark.parametrize("status", ["pending", "authorized", "partially_paid", "paid",
                                    "partially_refunded", "refunded", "voided"])
def test_financial_status(status: str) -> None:
    data = sample_json("orders-cancelled")
    data["financial_status"] = status
    assert normalize_one("orders/paid", dumps(data)).order.financial_status is FinancialStatus(status)


def test_financial_status_unmapped_is_unknown() -> None:
    data = sample_json("orders-cancelled")
    data["financial_status"] = "expired"
    assert normalize_one("orders/paid", dumps(data)).order.financial_status is FinancialStatus.UNKNOWN


def test_order_edited() -> None:
    edit = {"order_edit": {"id": 78912328, "order_id": 450789469, "app_id": None,
                           "created_at": "2026-07-01T10:00:00-04:00", "line_items": {"additions": []}}}
    assert adapter.normalize("orders/edited", dumps(edit)) == [OrdersNeedFetch(("450789469",))]
    order = normalize_one("orders/edited", read_sample("shopify", "orders-cancelled"))
    assert order.order.platform_order_id == ORDER_ID


# --------------------------------------------------------------------------------------------------
# signatures, shop domain, delivery identity
# --------------------------------------------------------------------------------------------------


def test_webhook_secrets() -> None:
    assert adapter.webhook_secrets(SETTINGS, "ignored") == [SECRET, PREVIOUS_SECRET]
    assert adapter.webhook_secrets({"api_secret": SECRET, "api_secret_previous": ""}, None) == [SECRET]
    assert adapter.webhook_secrets({}, None) == []


def test_verify_rotated_secret() -> None:
    body = b'{"id": 1}'
    secrets = adapter.webhook_secrets(SETTINGS, None)
    assert adapter.verify(webhook(body, secret=PREVIOUS_SECRET), secrets)
    assert not adapter.verify(webhook(body, secret=PREVIOUS_SECRET), [SECRET])


@pytest.mark.parametrize("signature", [
    None, "", "not base64!", "é", sign(b'{"id": 2}'), sign(b'{"id": 1}', "other-secret"),
    sign(b'{"id": 1}')[:-4], base64.b64encode(b"x" * 32).decode(),
])
def test_verify_rejects(signature: str | None) -> None:
    request = webhook(b'{"id": 1}', secret=None, X_Shopify_Hmac_Sha256=signature)
    assert adapter.verify(request, [SECRET, PREVIOUS_SECRET]) is False


def test_verify_without_secrets_or_with_tampered_body() -> None:
    assert adapter.verify(webhook(b'{"id": 1}'), []) is False
    signed = webhook(b'{"id": 1}')
    tampered = WebhookRequest(signed.headers, b'{"id": 2}')
    assert adapter.verify(tampered, [SECRET]) is False


def test_header_names_are_case_insensitive() -> None:
    body = b'{"id": 1}'
    headers = {"x-shopify-topic": "orders/create", "x-shopify-hmac-sha256": sign(body),
               "x-shopify-shop-domain": SHOP, "x-shopify-webhook-id": WEBHOOK_ID}
    request = WebhookRequest.build(headers, body)
    assert adapter.verify(request, [SECRET])
    assert adapter.delivery(request).delivery_id == WEBHOOK_ID
    assert adapter.delivery(request).occurred_at is None


def test_shop_domain_is_lower_cased() -> None:
    assert adapter.shop_domain(webhook(b"{}", X_Shopify_Shop_Domain="CCMS-Test.MyShopify.com")) == SHOP


@pytest.mark.parametrize("domain", [
    None, "", "ccms-test.example.com", "ccms-test.myshopify.com.evil.com", "-x.myshopify.com",
    "a.b.myshopify.com", "myshopify.com", "{shop}.myshopify.com", "ccms test.myshopify.com",
])
def test_wrong_shop_domain(domain: str | None) -> None:
    request = webhook(b"{}", X_Shopify_Shop_Domain=domain)
    with pytest.raises(PayloadInvalidError):
        adapter.shop_domain(request)
    with pytest.raises(PayloadInvalidError):
        adapter.delivery(request)


@pytest.mark.parametrize("header", ["X-Shopify-Topic", "X-Shopify-Webhook-Id"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_delivery_needs_topic_and_webhook_id(header: str, value: str | None) -> None:
    with pytest.raises(PayloadInvalidError, match=header):
        adapter.delivery(webhook(b"{}", **{header.replace("-", "_"): value}))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"', b"null", b"\xff\xfe"])
def test_delivery_needs_a_json_object(body: bytes) -> None:
    with pytest.raises(PayloadInvalidError):
        adapter.delivery(webhook(body))


@pytest.mark.parametrize(("header", "expected"), [
    ("2026-09-11T10:15:30Z", datetime(2026, 9, 11, 10, 15, 30, tzinfo=timezone.utc)),
    ("2026-09-11T12:15:30+02:00", datetime(2026, 9, 11, 10, 15, 30, tzinfo=timezone.utc)),
    ("2026-09-11T10:15:30", datetime(2026, 9, 11, 10, 15, 30, tzinfo=timezone.utc)),
    ("yesterday", None), (None, None),
])
def test_delivery_occurred_at(header: str | None, expected: datetime | None) -> None:
    assert adapter.delivery(webhook(b"{}", X_Shopify_Triggered_At=header)).occurred_at == expected


# --------------------------------------------------------------------------------------------------
# malformed bodies and unknown topics
# --------------------------------------------------------------------------------------------------


def _without(key: str):
    return lambda data: data.pop(key)


def _set(key: str, value: Any):
    return lambda data: data.__setitem__(key, value)


@pytest.mark.parametrize(("mutate", "field"), [
    (_without("updated_at"), "updated_at"),
    (_without("id"), "id"),
    (_without("line_items"), "line_items"),
    (_set("updated_at", "2021-12-31T19:00:00"), "updated_at"),  # no offset
    (_set("updated_at", "9999-12-31T23:59:59-05:00"), "updated_at"),  # beyond year 9999 in UTC
    (_set("id", 8.209829119461545e17), "id"),  # a float id lost its digits
    (_set("id", True), "id"),
    (_set("currency", "usd"), "currency"),
    (_set("total_price", "4O4.95"), "total_price"),
    (_set("total_price", "NaN"), "total_price"),
    (_set("total_price", "1e999999"), "total_price"),
    (_set("line_items", {"id": 1}), "line_items"),
    (lambda d: d["line_items"][0].__setitem__("price", None), "line_items.0.price"),
    (lambda d: d["line_items"][1].__setitem__("quantity", "1"), "line_items.1.quantity"),
    (lambda d: d.__setitem__("customer", "john@example.com"), "customer"),
])
def test_malformed_order(mutate, field: str) -> None:
    data = sample_json("orders-cancelled")
    mutate(data)
    with pytest.raises(PayloadInvalidError, match=rf"\b{field}: "):
        adapter.normalize("orders/create", dumps(data))


def test_order_without_any_total() -> None:
    data = sample_json("orders-cancelled")
    data["current_total_price"] = data["total_price"] = None
    with pytest.raises(PayloadInvalidError, match="total_price"):
        adapter.normalize("orders/create", dumps(data))


@pytest.mark.parametrize(("topic", "body", "field"), [
    ("refunds/create", {"id": 1, "transactions": []}, "order_id"),
    ("refunds/create", {"order_id": 1}, "id"),
    ("customers/update", {"email": "a@example.com"}, "id"),
    ("fulfillments/create", {"id": 1}, "order_id"),
    ("orders/edited", {"order_edit": {"id": 1}}, "order_edit.order_id"),
    ("customers/data_request", {"shop_id": 1, "orders_requested": []}, "customer"),
    ("customers/redact", {"customer": {}, "orders_to_redact": []}, "customers/redact"),
    ("customers/redact", {"customer": {"id": -4}}, "customer.id"),
])
def test_malformed_bodies(topic: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadInvalidError, match=field):
        adapter.normalize(topic, dumps(body))


@pytest.mark.parametrize("body", [b"", b"[1]", b"not json", b"\x00"])
def test_normalize_needs_a_json_object(body: bytes) -> None:
    with pytest.raises(PayloadInvalidError):
        adapter.normalize("customers/create", body)


@pytest.mark.parametrize("topic", ["products/update", "orders/delete", "customers/delete", "", "orders"])
def test_unknown_topic(topic: str) -> None:
    with pytest.raises(UnknownTopicError):
        adapter.normalize(topic, b'{"id": 1}')


HANDLED_TOPICS = sorted({topic_of(name) for name in EXPECTED_EVENT} | {
    "orders/partially_fulfilled", "orders/edited", "fulfillments/update"})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
ALLOWED = (PayloadInvalidError, UnknownTopicError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(HANDLED_TOPICS) | st.text(max_size=30), body=st.binary(max_size=200))
def test_fuzz_raw_bytes(topic: str, body: bytes) -> None:
    request = webhook(body, topic if topic.isprintable() else "orders/create")
    for call in (lambda: adapter.delivery(request), lambda: adapter.normalize(topic, body)):
        try:
            call()
        except ALLOWED:
            pass
    assert isinstance(adapter.verify(request, [SECRET]), bool)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(HANDLED_TOPICS), data=json_values)
def test_fuzz_json(topic: str, data: Any) -> None:
    try:
        adapter.normalize(topic, dumps(data))
    except ALLOWED:
        pass


_SAMPLES = [name for name in sample_names("shopify")]


@pytest.mark.skipif(not _SAMPLES, reason="Shopify samples not beside the checkout")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_SAMPLES or ["unused"]), value=json_values, pick=st.integers(0, 10_000),
       nested=st.booleans())
def test_fuzz_mutated_samples(name: str, value: Any, pick: int, nested: bool) -> None:
    """Real bodies with one field (or one field of a nested object) replaced by arbitrary JSON."""
    data = sample_json(name)
    target = data
    if nested:
        objects = [v for v in data.values() if isinstance(v, dict)]
        objects += [item for v in data.values() if isinstance(v, list) for item in v if isinstance(item, dict)]
        target = objects[pick % len(objects)] if objects else data
    if target:
        target[sorted(target)[pick % len(target)]] = value
    try:
        adapter.normalize(topic_of(name), dumps(data))
    except ALLOWED:
        pass


# --------------------------------------------------------------------------------------------------
# fetch_orders / fetch_customers against the loopback Admin API
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def shopify_server():
    """The fake Admin API holding the real sample order (cancelled, so only ``status=any`` sees it)."""
    with ShopifyAdminServer(TOKEN, orders=[read_sample("shopify", "orders-cancelled")],
                            customers=[read_sample("shopify", "customers-create")]) as server:
        yield server


def shop_for(server: ShopifyAdminServer, token: str = TOKEN, **settings: str) -> ShopContext:
    return ShopContext(shop_id=1, domain=SHOP, credentials={"access_token": token},
                       settings={"api_base_url": server.base_url, **settings})


def test_fetch_orders(shopify_server: ShopifyAdminServer) -> None:
    orders = adapter.fetch_orders(shop_for(shopify_server), [ORDER_ID, "1", "not-an-id"])
    (order,) = orders
    assert order.platform_order_id == ORDER_ID
    assert order.total == Decimal("404.95")  # total_price
    assert len(order.lines) == 5 and order.customer.email == "john@example.com"

    (call,) = shopify_server.requests
    assert call["path"] == "/admin/api/2026-07/orders.json"
    assert call["args"] == {"ids": f"{ORDER_ID},1", "status": "any", "limit": "250"}
    assert call["headers"]["X-Shopify-Access-Token"] == TOKEN


def test_fetch_orders_uses_the_shop_api_version_and_chunks_ids(shopify_server: ShopifyAdminServer) -> None:
    ids = [ORDER_ID] + [str(n) for n in range(1, 300)]
    orders = adapter.fetch_orders(shop_for(shopify_server, api_version="2025-10"), ids)
    assert [o.platform_order_id for o in orders] == [ORDER_ID]
    assert [len(r["args"]["ids"].split(",")) for r in shopify_server.requests] == [250, 50]
    assert {r["path"] for r in shopify_server.requests} == {"/admin/api/2025-10/orders.json"}


def test_fetch_nothing_makes_no_call(shopify_server: ShopifyAdminServer) -> None:
    assert adapter.fetch_orders(shop_for(shopify_server), []) == []
    assert shopify_server.requests == []


def test_fetch_customers(shopify_server: ShopifyAdminServer) -> None:
    (customer,) = adapter.fetch_customers(shop_for(shopify_server), ["706405506930370084", "2"])
    assert (customer.platform_customer_id, customer.email, customer.name) == (
        "706405506930370084", "bob@biller.com", "Bob Biller")
    assert shopify_server.requests[0]["path"] == "/admin/api/2026-07/customers.json"


def test_fetch_retries_a_throttled_call(shopify_server: ShopifyAdminServer) -> None:
    shopify_server.fail_next(2, 429, retry_after="0.05")
    (order,) = adapter.fetch_orders(shop_for(shopify_server), [ORDER_ID])
    assert order.platform_order_id == ORDER_ID
    assert len(shopify_server.requests) == 3


def test_fetch_gives_up_after_three_throttled_calls(shopify_server: ShopifyAdminServer) -> None:
    shopify_server.fail_next(5, 429, retry_after="0.01")
    with pytest.raises(PlatformUnavailableError, match="429"):
        adapter.fetch_orders(shop_for(shopify_server), [ORDER_ID])
    assert len(shopify_server.requests) == 3


def test_retry_after_is_honoured_but_capped(shopify_server: ShopifyAdminServer) -> None:
    waits: list[float] = []
    shopify_server.fail_next(2, 429, retry_after="30")
    with ShopifyAdminClient(shopify_server.base_url, "2026-07", TOKEN, sleep=waits.append) as client:
        assert [o["id"] for o in client.orders([ORDER_ID])] == [int(ORDER_ID)]
        assert client.call_limit is not None and client.call_limit[1] == 40
    assert waits == [2.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_fetch_server_errors_are_retried_later(shopify_server: ShopifyAdminServer, status: int) -> None:
    shopify_server.fail_next(1, status)
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        adapter.fetch_orders(shop_for(shopify_server), [ORDER_ID])
    assert len(shopify_server.requests) == 1  # no in-call retry: the job's backoff takes over


def test_fetch_with_a_refused_token(shopify_server: ShopifyAdminServer) -> None:
    with pytest.raises(PlatformAuthError):
        adapter.fetch_orders(shop_for(shopify_server, token="shpat_revoked"), [ORDER_ID])
    with pytest.raises(PlatformAuthError):
        adapter.fetch_customers(ShopContext(1, SHOP, {}, {"api_base_url": shopify_server.base_url}), ["1"])


def test_fetch_other_client_errors_stay_within_the_contract(shopify_server: ShopifyAdminServer) -> None:
    """The worker knows PlatformUnavailableError (bounded retries) and PlatformAuthError only."""
    with pytest.raises(PlatformUnavailableError, match="404"):
        adapter.fetch_orders(shop_for(shopify_server, api_version="latest"), [ORDER_ID])


def test_fetch_with_an_unexpected_order_shape(shopify_server: ShopifyAdminServer) -> None:
    broken = sample_json("orders-cancelled")
    broken.update(id=42, updated_at=None)
    shopify_server.add_order(dumps(broken))
    with pytest.raises(PlatformUnavailableError, match="updated_at"):
        adapter.fetch_orders(shop_for(shopify_server), ["42"])


def test_fetch_from_an_unreachable_shop() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    shop = ShopContext(1, SHOP, {"access_token": TOKEN}, {"api_base_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(PlatformUnavailableError, match="unreachable"):
        adapter.fetch_orders(shop, [ORDER_ID])


def test_fetch_times_out(shopify_server: ShopifyAdminServer) -> None:
    shopify_server.state.delay = 1.0
    with ShopifyAdminClient(shopify_server.base_url, "2026-07", TOKEN, timeout=(1.0, 0.2)) as client:
        with pytest.raises(PlatformUnavailableError, match="timed out"):
            client.orders([ORDER_ID])


@pytest.mark.parametrize(("header", "seconds"), [
    ("2.0", 2.0), ("0.5", 0.5), ("30", 2.0), ("-1", 0.0), ("soon", 1.0), (None, 1.0), ("nan", 1.0)])
def test_retry_after_seconds(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds


@pytest.mark.parametrize(("header", "parsed"), [("32/40", (32, 40)), ("1/80", (1, 80)), ("", None),
                                                (None, None), ("x/40", None), ("40", None)])
def test_parse_call_limit(header: str | None, parsed: tuple[int, int] | None) -> None:
    assert parse_call_limit(header) == parsed
