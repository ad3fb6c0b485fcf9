"""The WooCommerce adapter against the real published samples and a loopback REST API v3."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ccms_addon.platforms import (CustomerChanged, CustomerRecord, CustomerRedactRequested,
                                  FinancialStatus, FulfillmentStatus, OrderChanged,
                                  OrderLineRecord, PayloadInvalidError, PlatformAdapter,
                                  PlatformAuthError, PlatformUnavailableError, RefundRecord,
                                  ShopContext, UnknownTopicError, WebhookRequest)
from ccms_addon.plugins import woocommerce
from ccms_addon.plugins.woocommerce import WooCommerceAdapter, canonical_site_url
from ccms_addon.plugins.woocommerce.client import (MAX_RETRY_WAIT, WooCommerceClient,
                                                   retry_after_seconds)
from tests.platform_servers.woocommerce import FakeWooCommerce, make_customer, make_order, serve
from tests.samples import read_sample, sample_params

SECRET = "whsec-test-5f1c2a"
SOURCE = "https://Shop.Example/"
SHOP = "https://shop.example"
UTC = timezone.utc


@pytest.fixture
def adapter() -> WooCommerceAdapter:
    return WooCommerceAdapter()


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def delivery_request(body: bytes, topic: str, *, secret: str | None = SECRET,
                     delivery_id: str = "b1946ac92492d2347c6235b4d2611184",
                     **extra: str) -> WebhookRequest:
    """A request with the headers WooCommerce's WC_Webhook::deliver() sends."""
    resource, _, event = topic.partition(".")
    headers = {"Content-Type": "application/json",
               "User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.3)",
               "X-WC-Webhook-Source": SOURCE, "X-WC-Webhook-Topic": topic,
               "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
               "X-WC-Webhook-ID": "14", "X-WC-Webhook-Delivery-ID": delivery_id, **extra}
    if secret is not None:
        headers["X-WC-Webhook-Signature"] = sign(body, secret)
    return WebhookRequest.build(headers, body, "203.0.113.9")


def topic_of(sample: str) -> str:
    return sample.replace("-", ".", 1)  # "order-updated" -> "order.updated"


def test_hook_register_platforms() -> None:
    adapters = woocommerce.register_platforms()
    assert [a.name for a in adapters] == ["woocommerce"]
    assert isinstance(adapters[0], PlatformAdapter)


# -- every real sample ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", sample_params("woocommerce"))
def test_sample_verifies_identifies_and_normalizes(adapter: WooCommerceAdapter, sample: str) -> None:
    body, topic = read_sample("woocommerce", sample), topic_of(sample)
    request = delivery_request(body, topic)
    payload = json.loads(body)

    assert not adapter.is_ping(request)
    assert adapter.shop_domain(request) == SHOP
    assert adapter.verify(request, adapter.webhook_secrets({}, SECRET))
    identity = adapter.delivery(request)
    modified = datetime.fromisoformat(payload["date_modified_gmt"]).replace(tzinfo=UTC)
    assert identity.shop_domain == SHOP and identity.topic == topic
    assert identity.delivery_id == f"{topic}:{payload['id']}:{modified.isoformat()}"
    assert identity.occurred_at == modified

    events = adapter.normalize(topic, body)
    assert len(events) == 1
    record = events[0].order if topic.startswith("order.") else events[0].customer
    record_id = record.platform_order_id if topic.startswith("order.") else record.platform_customer_id
    assert record_id == str(payload["id"]) and record.updated_at == modified


def test_order_updated_sample(adapter: WooCommerceAdapter) -> None:
    [event] = adapter.normalize("order.updated", read_sample("woocommerce", "order-updated"))
    assert isinstance(event, OrderChanged)
    order = event.order
    assert (order.platform_order_id, order.number, order.currency) == ("723", "723", "USD")
    assert order.total == Decimal("39.00")
    assert order.placed_at == datetime(2017, 3, 21, 19, 16, tzinfo=UTC)
    assert order.updated_at == datetime(2017, 3, 21, 19, 54, 51, tzinfo=UTC)
    assert order.financial_status is FinancialStatus.PARTIALLY_REFUNDED
    assert order.fulfillment_status is FulfillmentStatus.FULFILLED
    assert order.cancelled_at is None and order.complete
    assert order.customer_name == "João Silva"
    assert (order.email, order.phone) == ("joao.silva@example.com", "(11) 1111-1111")
    assert order.customer == CustomerRecord("26", "joao.silva@example.com", "João Silva",
                                            "(11) 1111-1111")
    assert order.lines == (
        OrderLineRecord("311", "Woo Album #2", 1, Decimal("9"), None, "87", None),
        OrderLineRecord("313", "Woo Ninja", 1, Decimal("20"), None, "34", None),
    )
    assert order.refunds == (RefundRecord("726", "723", Decimal("10.00"), "USD"),
                             RefundRecord("724", "723", Decimal("9.00"), "USD"))


def test_order_created_sample_is_a_guest_order(adapter: WooCommerceAdapter) -> None:
    [event] = adapter.normalize("order.created", read_sample("woocommerce", "order-created"))
    order = event.order
    assert order.platform_order_id == "727" and order.total == Decimal("29.35")
    assert order.customer is None  # customer_id 0
    assert (order.email, order.customer_name) == ("john.doe@example.com", "John Doe")
    assert order.financial_status is FinancialStatus.PAID
    assert order.fulfillment_status is FulfillmentStatus.UNFULFILLED
    assert order.refunds == ()
    assert [(l.title, l.quantity, l.unit_price, l.sku, l.product_id, l.variant_id)
            for l in order.lines] == [
        ("Woo Single #1", 2, Decimal("3"), None, "93", None),
        ("Ship Your Idea \u2013 Color: Black, Size: M Test", 1, Decimal("12"), "Bar3", "22", "23"),
    ]


@pytest.mark.parametrize("sample, name", [("customer-created", "John Doe"),
                                          ("customer-updated", "James Doe")])
def test_customer_samples(adapter: WooCommerceAdapter, sample: str, name: str) -> None:
    [event] = adapter.normalize(topic_of(sample), read_sample("woocommerce", sample))
    assert isinstance(event, CustomerChanged)
    customer = event.customer
    assert (customer.platform_customer_id, customer.email, customer.name, customer.phone) == (
        "25", "john.doe@example.com", name, "(555) 555-5555")
    assert customer.updated_at.utcoffset().total_seconds() == 0


# -- ping, identity, signatures, dedupe ---------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded; charset=UTF-8",
                                          "application/x-www-form-urlencoded"])
def test_activation_ping(adapter: WooCommerceAdapter, content_type: str) -> None:
    # WC_Webhook::deliver_ping(): wp_safe_remote_post(body "webhook_id=N"), no X-WC-Webhook-* headers
    ping = WebhookRequest.build({"Content-Type": content_type,
                                 "User-Agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.3)"},
                                b"webhook_id=14")
    assert adapter.is_ping(ping)


@pytest.mark.parametrize("body, headers", [
    (b"webhook_id=abc", {}),
    (b"webhook_id=14&x=1", {}),
    (b"webhook_id=14", {"X-WC-Webhook-Topic": "order.updated"}),
    (b'{"id": 14}', {}),
])
def test_not_a_ping(adapter: WooCommerceAdapter, body: bytes, headers: dict[str, str]) -> None:
    assert not adapter.is_ping(WebhookRequest.build(headers, body))


@pytest.mark.parametrize("url, canonical", [
    ("https://Shop.Example/", "https://shop.example"),
    ("HTTPS://shop.example:443", "https://shop.example"),
    ("http://shop.example:80/", "http://shop.example"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("https://example.org/Store/", "https://example.org/Store"),
    ("https://café.example/", "https://xn--caf-dma.example"),
    ("https://[2001:DB8::1]:8443/", "https://[2001:db8::1]:8443"),
])
def test_canonical_site_url(url: str, canonical: str) -> None:
    assert canonical_site_url(url) == canonical


@pytest.mark.parametrize("url", ["", "shop.example", "ftp://shop.example/", "https://",
                                 "https://user:pw@shop.example/", "https://shop.example/?p=1",
                                 "https://shop.example:99999/", None])
def test_canonical_site_url_rejects(adapter: WooCommerceAdapter, url: str) -> None:
    with pytest.raises(ValueError):
        canonical_site_url(url)
    with pytest.raises(ValueError):
        adapter.canonical_shop_domain(url)
    request = WebhookRequest.build({"X-WC-Webhook-Source": str(url)}, b"{}")
    with pytest.raises(PayloadInvalidError):
        adapter.shop_domain(request)


def test_delivery_headers_round_trip(adapter: WooCommerceAdapter) -> None:
    body = json.dumps(make_order(77)).encode()
    headers = adapter.delivery_headers(body, shop_domain=adapter.canonical_shop_domain(SOURCE),
                                       topic="order.updated", secret=SECRET)
    assert headers["X-WC-Webhook-Source"] == "https://shop.example/"
    assert (headers["X-WC-Webhook-Resource"], headers["X-WC-Webhook-Event"]) == ("order", "updated")
    request = WebhookRequest.build(headers, body)
    assert not adapter.is_ping(request) and adapter.verify(request, [SECRET])
    identity = adapter.delivery(request)
    assert (identity.shop_domain, identity.delivery_id) == (
        SHOP, "order.updated:77:2024-05-02T08:30:00+00:00")
    again = adapter.delivery_headers(body, shop_domain=SHOP, topic="order.updated", secret=SECRET)
    assert again["X-WC-Webhook-Delivery-ID"] != headers["X-WC-Webhook-Delivery-ID"]
    with pytest.raises(ValueError):
        adapter.delivery_headers(body, shop_domain=SHOP, topic=None, secret=SECRET)


def test_shop_domain_missing(adapter: WooCommerceAdapter) -> None:
    with pytest.raises(PayloadInvalidError, match="X-WC-Webhook-Source"):
        adapter.shop_domain(WebhookRequest.build({"X-WC-Webhook-Topic": "order.updated"}, b"{}"))


def test_webhook_secrets(adapter: WooCommerceAdapter) -> None:
    assert adapter.webhook_secrets({"client_secret": "app"}, "per-webhook") == ["per-webhook"]
    assert adapter.webhook_secrets({}, None) == [] and adapter.webhook_secrets({}, "") == []


def test_rotated_secret_verifies(adapter: WooCommerceAdapter) -> None:
    request = delivery_request(b'{"id": 5}', "order.deleted", secret="old-secret")
    assert adapter.verify(request, ["new-secret", "old-secret"])
    assert not adapter.verify(request, ["new-secret"])


def test_secret_is_used_decoded_like_wordpress(adapter: WooCommerceAdapter) -> None:
    # WooCommerce signs with wp_specialchars_decode(secret): a stored "a&amp;b" signs as "a&b"
    request = delivery_request(b'{"id": 5}', "order.deleted", secret="a&b<c")
    assert adapter.verify(request, ["a&amp;b&lt;c"])


@pytest.mark.parametrize("signature", [None, "", "not-base64!", "é", sign(b"other body"),
                                       sign(b'{"id": 5}', "wrong")])
def test_bad_or_missing_signature(adapter: WooCommerceAdapter, signature: str | None) -> None:
    request = delivery_request(b'{"id": 5}', "order.deleted", secret=None)
    if signature is not None:
        request = WebhookRequest.build({**dict(request.headers),
                                        "X-WC-Webhook-Signature": signature}, request.body)
    assert not adapter.verify(request, [SECRET])


def test_no_secret_never_verifies(adapter: WooCommerceAdapter) -> None:
    assert not adapter.verify(delivery_request(b'{"id": 5}', "order.deleted"), [])
    assert not adapter.verify(delivery_request(b'{"id": 5}', "order.deleted", secret=""), [""])


def test_dedupe_id_ignores_the_per_attempt_delivery_id(adapter: WooCommerceAdapter) -> None:
    body = read_sample("woocommerce", "order-updated")
    first = adapter.delivery(delivery_request(body, "order.updated", delivery_id="a" * 32))
    retry = adapter.delivery(delivery_request(body, "order.updated", delivery_id="b" * 32))
    assert first.delivery_id == retry.delivery_id == "order.updated:723:2017-03-21T19:54:51+00:00"

    newer = json.loads(body) | {"date_modified_gmt": "2017-03-22T08:00:00"}
    newer_id = adapter.delivery(delivery_request(json.dumps(newer).encode(), "order.updated"))
    assert newer_id.delivery_id != first.delivery_id


def test_dedupe_id_of_a_deleted_resource(adapter: WooCommerceAdapter) -> None:
    body = b'{"id":723}'
    first = adapter.delivery(delivery_request(body, "order.deleted", delivery_id="a" * 32))
    retry = adapter.delivery(delivery_request(body, "order.deleted", delivery_id="b" * 32))
    assert first.delivery_id == retry.delivery_id == (
        f"order.deleted:723:{hashlib.sha256(body).hexdigest()}")
    assert first.occurred_at is None


@pytest.mark.parametrize("body, topic", [
    (b"webhook_id=14", "order.updated"),
    (b"[1, 2]", "order.updated"),
    (b'{"date_modified_gmt": "2024-01-01T00:00:00"}', "order.updated"),
    (b'{"id": "723"}', "customer.deleted"),
    (b'{"id": 0}', "order.deleted"),
    (b'{"id": 5, "date_modified_gmt": "last tuesday"}', "order.updated"),
])
def test_delivery_rejects_malformed_bodies(adapter: WooCommerceAdapter, body: bytes,
                                           topic: str) -> None:
    with pytest.raises(PayloadInvalidError):
        adapter.delivery(delivery_request(body, topic))


def test_delivery_needs_a_topic(adapter: WooCommerceAdapter) -> None:
    request = WebhookRequest.build({"X-WC-Webhook-Source": SOURCE}, b'{"id": 1}')
    with pytest.raises(PayloadInvalidError, match="X-WC-Webhook-Topic"):
        adapter.delivery(request)


def test_action_topic_without_id_is_identified(adapter: WooCommerceAdapter) -> None:
    body = b'{"action":"woocommerce_add_to_cart","arg":"c4ca4238"}'
    identity = adapter.delivery(delivery_request(body, "action.woocommerce_add_to_cart"))
    assert identity.delivery_id.startswith("action.woocommerce_add_to_cart:-:")
    with pytest.raises(UnknownTopicError):
        adapter.normalize(identity.topic, body)


# -- normalize: topics, statuses, malformed bodies -----------------------------------------------


def test_customer_deleted_requests_redaction(adapter: WooCommerceAdapter) -> None:
    assert adapter.normalize("customer.deleted", b'{"id": 25}') == [
        CustomerRedactRequested(platform_customer_ids=("25",))]


@pytest.mark.parametrize("topic", ["order.deleted", "product.created", "coupon.updated",
                                   "action.woocommerce_add_to_cart", "order.paid", ""])
def test_unhandled_topics(adapter: WooCommerceAdapter, topic: str) -> None:
    with pytest.raises(UnknownTopicError):
        adapter.normalize(topic, b'{"id": 1}')


@pytest.mark.parametrize("status, financial, fulfillment, cancelled", [
    ("pending", FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED, False),
    ("on-hold", FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED, False),
    ("failed", FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED, False),
    ("checkout-draft", FinancialStatus.PENDING, FulfillmentStatus.UNFULFILLED, False),
    ("processing", FinancialStatus.PAID, FulfillmentStatus.UNFULFILLED, False),
    ("completed", FinancialStatus.PAID, FulfillmentStatus.FULFILLED, False),
    ("cancelled", FinancialStatus.VOIDED, FulfillmentStatus.UNFULFILLED, True),
    ("refunded", FinancialStatus.REFUNDED, FulfillmentStatus.UNKNOWN, False),
    ("trash", FinancialStatus.UNKNOWN, FulfillmentStatus.UNKNOWN, False),
    ("shipped-by-plugin", FinancialStatus.UNKNOWN, FulfillmentStatus.UNKNOWN, False),
])
def test_status_mapping(adapter: WooCommerceAdapter, status: str, financial: FinancialStatus,
                        fulfillment: FulfillmentStatus, cancelled: bool) -> None:
    body = json.dumps(make_order(900, status=status)).encode()
    event, *undone = adapter.normalize("order.updated", body)  # OrderCancelled: tests/voc_intake
    assert len(undone) == (status in ("cancelled", "refunded"))
    assert event.order.financial_status is financial
    assert event.order.fulfillment_status is fulfillment
    assert event.order.cancelled_at == (event.order.updated_at if cancelled else None)


def test_order_dates_with_offsets_and_php_empty_billing(adapter: WooCommerceAdapter) -> None:
    body = json.dumps(make_order(901, modified="2024-05-02T10:30:00+02:00", billing=[],
                                 refunds=[{"id": 7, "reason": " damaged ", "total": "-5.00"}])).encode()
    order = adapter.normalize("order.restored", body)[0].order
    assert order.updated_at == datetime(2024, 5, 2, 8, 30, tzinfo=UTC)
    assert order.email is None and order.customer_name == "Ana Lima"  # falls back to shipping
    assert order.refunds == (RefundRecord("7", "901", Decimal("5.00"), "EUR", "damaged"),)
    assert order.financial_status is FinancialStatus.PARTIALLY_REFUNDED


@pytest.mark.parametrize("topic, body, field", [
    ("order.updated", b"not json", "JSON"),
    ("order.updated", b"[]", "object"),
    ("order.updated", json.dumps(make_order(1) | {"id": "1"}).encode(), "id"),
    ("order.updated", json.dumps({k: v for k, v in make_order(1).items() if k != "total"}).encode(),
     "total"),
    ("order.updated", json.dumps(make_order(1, total="lots")).encode(), "total"),
    ("order.updated", json.dumps(make_order(1, total="NaN")).encode(), "total"),
    ("order.updated", json.dumps(make_order(1, currency="")).encode(), "currency"),
    ("order.updated", json.dumps(make_order(1, date_created_gmt=None,
                                            date_modified_gmt=None)).encode(), "date_modified_gmt"),
    ("order.created", json.dumps(make_order(1, refunds=[{"id": 2, "total": "abc"}])).encode(),
     "refunds"),
    ("order.created", json.dumps(make_order(1, line_items=[{"id": 3, "quantity": "2"}])).encode(),
     "line_items"),
    ("order.created", json.dumps(make_order(1, billing="Ana")).encode(), "billing"),
    ("customer.updated", json.dumps(make_customer(5, date_modified_gmt="soon")).encode(),
     "date_modified_gmt"),
    ("customer.deleted", b"{}", "id"),
    ("customer.deleted", b'{"id": true}', "id"),
])
def test_malformed_bodies(adapter: WooCommerceAdapter, topic: str, body: bytes, field: str) -> None:
    with pytest.raises(PayloadInvalidError, match=field):
        adapter.normalize(topic, body)


# -- fuzz: only the documented errors escape ------------------------------------------------------

TOPICS = ["order.created", "order.updated", "order.restored", "order.deleted", "customer.created",
          "customer.updated", "customer.deleted", "product.updated", "action.woocommerce_x"]
json_leaves = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
               | st.floats(allow_nan=False, allow_infinity=False)
               | st.sampled_from(["2024-05-02T08:30:00", "0001-01-01T00:00:00+05:00", "-10.00",
                                  "9" * 40, "1e999999", ""]))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
#: where a mutation lands in an otherwise valid order: a top-level key or a key of a nested object
ORDER_PATHS = [(key,) for key in make_order(1)] + [
    ("billing", "email"), ("billing", "first_name"), ("line_items", 0, "id"),
    ("line_items", 0, "quantity"), ("line_items", 0, "price"), ("line_items", 0, "name"),
    ("line_items", 0, "product_id"), ("refunds", 0, "id"), ("refunds", 0, "total"),
    ("refunds", 0, "reason")]


def mutate(path: tuple, value: object) -> dict:
    """A valid order (with one refund) whose value at ``path`` is replaced; None deletes the key."""
    order = make_order(8, refunds=[{"id": 9, "reason": "", "total": "-1.00"}])
    *parents, last = path
    target = order
    for step in parents:
        target = target[step]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return order


def _only_documented_errors(adapter: WooCommerceAdapter, topic: str, body: bytes) -> None:
    for call in (lambda: adapter.delivery(delivery_request(body, topic)),
                 lambda: adapter.normalize(topic, body)):
        try:
            call()
        except (PayloadInvalidError, UnknownTopicError):
            pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), body=st.binary(max_size=200) | json_values.map(
    lambda v: json.dumps(v).encode()))
def test_fuzz_arbitrary_bodies(topic: str, body: bytes) -> None:
    _only_documented_errors(WooCommerceAdapter(), topic, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), path=st.sampled_from(ORDER_PATHS),
       value=st.none() | json_values)
@example(topic="order.updated", path=("date_modified_gmt",), value="9999-12-31T23:00:00-05:00")
@example(topic="order.updated", path=("refunds", 0, "total"), value="9" * 20)
@example(topic="order.updated", path=("billing",), value=[])
def test_fuzz_mutated_orders(topic: str, path: tuple, value: object) -> None:
    _only_documented_errors(WooCommerceAdapter(), topic, json.dumps(mutate(path, value)).encode())


# -- the REST API v3 over loopback --------------------------------------------------------------


@pytest.fixture
def site() -> FakeWooCommerce:
    return FakeWooCommerce()


@pytest.fixture
def base_url(site: FakeWooCommerce):
    with serve(site) as url:
        yield url


def shop_at(url: str, site: FakeWooCommerce, **settings: str) -> ShopContext:
    return ShopContext(shop_id=3, domain=url, settings=settings,
                       credentials={"consumer_key": site.consumer_key,
                                    "consumer_secret": site.consumer_secret})


def test_fetch_orders(adapter: WooCommerceAdapter, site: FakeWooCommerce, base_url: str) -> None:
    site.add_orders(make_order(10, customer_id=4, status="completed"), make_order(11),
                    make_order(12, status="trash"), make_order(13))
    orders = adapter.fetch_orders(shop_at(base_url, site), ["11", "10", "12", "999", "x"])
    assert sorted(o.platform_order_id for o in orders) == ["10", "11"]  # unknown and trashed left out
    by_id = {o.platform_order_id: o for o in orders}
    assert by_id["10"].customer.platform_customer_id == "4"
    assert by_id["11"].lines[0] == OrderLineRecord("111", "Linen Shirt \u2013 Blue", 2, Decimal("25"),
                                                   "LS-BLUE", "501", "502")
    assert by_id["11"].total == Decimal("57.50") and by_id["11"].currency == "EUR"
    [call] = site.requests
    assert call["path"] == "/wp-json/wc/v3/orders"
    assert call["args"] == {"include": "10,11,12,999", "per_page": "100", "page": "1"}


def test_fetch_nothing_makes_no_request(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                        base_url: str) -> None:
    assert adapter.fetch_orders(shop_at(base_url, site), []) == []
    assert site.requests == []


def test_fetch_follows_pages_and_chunks(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                        base_url: str) -> None:
    site.add_orders(*(make_order(i) for i in range(1, 131)))
    site.page_size_cap = 40  # a site that answers fewer than per_page: X-WP-TotalPages says so
    orders = adapter.fetch_orders(shop_at(base_url, site), [str(i) for i in range(1, 131)])
    assert sorted(int(o.platform_order_id) for o in orders) == list(range(1, 131))
    pages = [(len(r["args"]["include"].split(",")), r["args"]["page"]) for r in site.requests]
    assert pages == [(100, "1"), (100, "2"), (100, "3"), (30, "1")]


def test_fetch_uses_api_base_url_setting(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                         base_url: str) -> None:
    site.add_orders(make_order(21))
    shop = ShopContext(shop_id=3, domain="https://shop.example", settings={"api_base_url": base_url},
                       credentials={"consumer_key": site.consumer_key,
                                    "consumer_secret": site.consumer_secret})
    assert [o.platform_order_id for o in adapter.fetch_orders(shop, ["21"])] == ["21"]


def test_fetch_customers_of_any_role(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                     base_url: str) -> None:
    site.add_customers(make_customer(4), make_customer(5, role="subscriber"), make_customer(6))
    customers = adapter.fetch_customers(shop_at(base_url, site), ["4", "5"])
    assert sorted(c.platform_customer_id for c in customers) == ["4", "5"]
    assert {c.name for c in customers} == {"Rui Costa"}
    assert customers[0].updated_at == datetime(2024, 4, 1, 12, tzinfo=UTC)
    assert site.requests[0]["args"]["role"] == "all"


def test_fetch_with_wrong_keys(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                               base_url: str) -> None:
    shop = ShopContext(shop_id=3, domain=base_url,
                       credentials={"consumer_key": "ck_revoked", "consumer_secret": "cs_revoked"})
    with pytest.raises(PlatformAuthError, match="401"):
        adapter.fetch_orders(shop, ["1"])
    with pytest.raises(PlatformAuthError):
        adapter.fetch_customers(ShopContext(shop_id=3, domain=base_url), ["1"])


def test_fetch_retries_429_then_succeeds(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                         base_url: str) -> None:
    site.add_orders(make_order(31))
    site.fail_next(429, times=2, retry_after="0")
    assert [o.platform_order_id for o in adapter.fetch_orders(shop_at(base_url, site), ["31"])] == ["31"]
    assert len(site.requests) == 3


def test_fetch_429_after_retries(adapter: WooCommerceAdapter, site: FakeWooCommerce,
                                 base_url: str) -> None:
    site.fail_next(429, times=10, retry_after="0")
    with pytest.raises(PlatformUnavailableError, match="429"):
        adapter.fetch_orders(shop_at(base_url, site), ["31"])
    assert len(site.requests) == 3


def test_fetch_503(adapter: WooCommerceAdapter, site: FakeWooCommerce, base_url: str) -> None:
    site.fail_next(503, times=1)
    with pytest.raises(PlatformUnavailableError, match="503"):
        adapter.fetch_orders(shop_at(base_url, site), ["31"])
    assert len(site.requests) == 1  # 5xx is the worker's backoff's business, not an in-call retry


def test_fetch_connection_refused(adapter: WooCommerceAdapter, site: FakeWooCommerce) -> None:
    with serve(site) as url:
        pass  # the port is closed again
    with pytest.raises(PlatformUnavailableError):
        adapter.fetch_orders(shop_at(url, site), ["1"])


def test_client_read_timeout(site: FakeWooCommerce, base_url: str) -> None:
    site.delay = 0.5
    with WooCommerceClient(base_url, site.consumer_key, site.consumer_secret,
                           timeout=(2.0, 0.1)) as client:
        with pytest.raises(PlatformUnavailableError, match="timed out"):
            client.list_all("orders", {"include": "1"})


def test_client_caps_retry_after(site: FakeWooCommerce, base_url: str) -> None:
    site.fail_next(429, times=10, retry_after="120")
    waits: list[float] = []
    with WooCommerceClient(base_url, site.consumer_key, site.consumer_secret,
                           sleep=waits.append) as client:
        with pytest.raises(PlatformUnavailableError):
            client.list_all("orders", {})
    assert waits == [MAX_RETRY_WAIT, MAX_RETRY_WAIT]


@pytest.mark.parametrize("header, seconds", [("1", 1.0), ("0", 0.0), ("120", MAX_RETRY_WAIT),
                                             (None, 0.5), ("soon", 0.5),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_seconds(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header) == seconds
