"""The Cafe24 adapter against Cafe24's published webhook samples and a loopback Admin API."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccms_addon.platforms import (
    AppUninstalled,
    CustomerChanged,
    CustomerRecord,
    CustomerRedactRequested,
    CustomersNeedFetch,
    FinancialStatus,
    FulfillmentStatus,
    OrderChanged,
    OrderLineRecord,
    OrderRecord,
    OrdersNeedFetch,
    PayloadInvalidError,
    PlatformAdapter,
    PlatformAuthError,
    PlatformUnavailableError,
    RefundCreated,
    RefundRecord,
    ShopContext,
    UnknownTopicError,
    WebhookRequest,
)
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.plugins import cafe24 as cafe24_plugin
from ccms_addon.plugins.cafe24.adapter import DEFAULT_API_VERSION, Cafe24Adapter
from ccms_addon.plugins.cafe24.client import call_limit_pause, retry_after_seconds
from tests.platform_servers.cafe24 import (
    ACCESS_TOKEN,
    Cafe24ServerState,
    make_customer,
    make_item,
    make_order,
    running_server,
)
from tests.samples import read_sample, sample_params

KEY = "cafe24-webhook-key"
UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def request_for(body: bytes, key: str | None = KEY, remote_addr: str | None = "203.0.113.7"
                ) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    return WebhookRequest.build(headers, body, remote_addr)


@pytest.fixture
def adapter() -> Cafe24Adapter:
    return Cafe24Adapter()


# --------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------


def test_hook_register_platforms() -> None:
    pm = get_plugin_manager([cafe24_plugin], load_entry_points=False)
    registry = platform_registry(pm)
    assert isinstance(registry["cafe24"], Cafe24Adapter)
    assert isinstance(registry["cafe24"], PlatformAdapter)


# --------------------------------------------------------------------------------------------------
# Every real sample: verify, identity, events
# --------------------------------------------------------------------------------------------------

ORDER_EVENT = "order"  # an OrderChanged summary followed by OrdersNeedFetch of the same order

EXPECTED: dict[str, tuple[str, str, Any]] = {
    "app-deleted-90077": ("leesunsin", "90077", [AppUninstalled()]),
    "customer-deleted-90147": ("cafe24bestshop", "90147", [
        CustomerRedactRequested(platform_customer_ids=("sampleid1", "sampleid2", "sampleid3"))]),
    "customer-info-changed-90080": ("cafe24bestshop", "90080", [CustomersNeedFetch(("gdhong",))]),
    "customer-signed-up-90032": ("cafe24bestshop", "90032", [CustomerChanged(CustomerRecord(
        platform_customer_id="gdhong", email="gdhong@cafe24corp.com", name="Jake Park",
        phone="010-2468-2468", updated_at=utc(2020, 7, 17, 6, 26)))]),
    "order-created-90023": ("cafe24bestshop", "90023", (ORDER_EVENT, "20200717-0029236")),
    "order-shipping-status-changed-90024": ("cafe24bestshop", "90024",
                                            (ORDER_EVENT, "20200717-0029236")),
    "order-payment-status-changed-90025": ("cafe24bestshop", "90025",
                                           (ORDER_EVENT, "20200717-0029236")),
    "order-cancellation-status-changed-90026": ("cafe24bestshop", "90026",
                                                (ORDER_EVENT, "20200716-0000023")),
    "order-return-status-changed-90027": ("cafe24bestshop", "90027",
                                          (ORDER_EVENT, "20200716-0000023")),
    "order-refund-status-changed-90029": ("cafe24bestshop", "90029",
                                          (ORDER_EVENT, "20200716-0000023")),
    "order-shipping-status-changed-bulk-90071": ("cafe24bestshop", "90071", [OrdersNeedFetch((
        "20200717-0001242", "20200717-0001251", "20200717-0001261", "20200717-0001270",
        "20200717-0001287"))]),
    "order-cancellation-status-changed-bulk-90072": ("cafe24bestshop", "90072", [
        OrdersNeedFetch(("20200713-0000039", "20200708-0000080"))]),
    "order-refund-status-changed-bulk-90073": ("cafe24bestshop", "90073", [
        OrdersNeedFetch(("20200529-0000015", "20200527-0000078"))]),
    "order-return-status-changed-bulk-90074": ("cafe24bestshop", "90074", [
        OrdersNeedFetch(("20200528-0000019", "20200513-0000040"))]),
    "order-return-completed-90160": ("samplemall", "90160", [
        RefundCreated(RefundRecord(platform_refund_id="C20230329-0001215",
                                   platform_order_id="20230316-0000287",
                                   amount=Decimal("35000.00"), currency="KRW")),
        OrdersNeedFetch(("20230316-0000287",))]),
}


@pytest.mark.parametrize("name", sample_params("cafe24"))
def test_sample_verifies_identifies_and_normalizes(adapter: Cafe24Adapter, name: str) -> None:
    body = read_sample("cafe24", name)
    assert name in EXPECTED, f"new sample {name}: add its expectation"
    mall_id, topic, expected = EXPECTED[name]
    request = request_for(body)

    assert adapter.is_ping(request) is False
    assert adapter.shop_domain(request) == mall_id
    assert adapter.verify(request, adapter.webhook_secrets({"webhook_key": KEY}, None))
    identity = adapter.delivery(request)
    assert identity.shop_domain == mall_id
    assert identity.topic == topic
    assert identity.delivery_id.endswith(hashlib.sha256(body).hexdigest())

    events = adapter.normalize(identity.topic, body)
    if isinstance(expected, tuple):
        _, order_id = expected
        changed, fetch, *claims = events  # the return's reason in 90027: tests/voc_intake
        assert isinstance(changed, OrderChanged)
        assert changed.order.platform_order_id == order_id
        assert changed.order.complete is False
        assert changed.order.total == Decimal("24680.00")
        assert changed.order.currency == "KRW"
        assert changed.order.updated_at.tzinfo is not None
        assert fetch == OrdersNeedFetch((order_id,))
    else:
        assert events == expected


def test_order_created_summary_has_every_header_value(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-created-90023")
    [changed, fetch] = adapter.normalize("90023", body)
    customer = CustomerRecord(platform_customer_id="gdhong", email="gdhong@cafe24corp.com",
                              name="Jessica Hong", phone="010-2424-2424")
    assert changed == OrderChanged(OrderRecord(
        platform_order_id="20200717-0029236", number="20200717-0029236", currency="KRW",
        total=Decimal("24680.00"),
        updated_at=utc(2020, 7, 17, 6, 28, 14),  # order_date, later than payment_date in this sample
        placed_at=utc(2020, 7, 17, 6, 28, 14),
        financial_status=FinancialStatus.PAID, fulfillment_status=FulfillmentStatus.UNFULFILLED,
        email="gdhong@cafe24corp.com", phone="010-2424-2424", customer_name="Jessica Hong",
        customer=customer, complete=False))
    assert str(changed.order.total) == "24680.00"
    assert fetch == OrdersNeedFetch(("20200717-0029236",))


def test_korean_text_and_delivered_status_survive(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-shipping-status-changed-90024")
    [changed, _] = adapter.normalize("90024", body)
    assert changed.order.customer_name == "홍길동"
    assert changed.order.fulfillment_status is FulfillmentStatus.DELIVERED
    [changed, *_] = adapter.normalize("90027", read_sample("cafe24", "order-return-status-changed-90027"))
    assert changed.order.customer.name == "홍길동"


def test_amount_without_decimals_stays_exact(adapter: Cafe24Adapter) -> None:
    data = json.loads(read_sample("cafe24", "order-payment-status-changed-90025"))
    del data["resource"]["order_price_amount"]  # total falls back to actual_payment_amount "27580"
    [changed, _] = adapter.normalize("90025", json.dumps(data, ensure_ascii=False).encode())
    assert changed.order.total == Decimal("27580")
    assert str(changed.order.total) == "27580"


def test_dates_become_utc(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-cancellation-status-changed-90026")
    [changed, _] = adapter.normalize("90026", body)
    assert changed.order.placed_at == utc(2020, 7, 15, 17, 20, 20)  # 2020-07-16T02:20:20+09:00
    assert changed.order.placed_at.utcoffset() == timedelta(0)
    assert changed.order.updated_at == utc(2020, 7, 17, 6, 24, 7)  # payment_date is the latest


# --------------------------------------------------------------------------------------------------
# Verification, secrets, sender allow-list
# --------------------------------------------------------------------------------------------------


def test_wrong_or_missing_key_fails(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-created-90023")
    secrets = adapter.webhook_secrets({"webhook_key": KEY}, None)
    assert not adapter.verify(request_for(body, key="not-the-key"), secrets)
    assert not adapter.verify(request_for(body, key=None), secrets)
    assert not adapter.verify(request_for(body, key=""), secrets)
    assert not adapter.verify(request_for(body, key="키가-아님"), secrets)
    assert not adapter.verify(request_for(body), [])
    assert not adapter.verify(request_for(body, key=""), [""])


def test_any_listed_secret_verifies(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-created-90023")
    assert adapter.verify(request_for(body, key="old-key"), ["new-key", "old-key"])


def test_webhook_secrets(adapter: Cafe24Adapter) -> None:
    assert adapter.webhook_secrets({"webhook_key": KEY}, "per-shop") == [KEY]
    assert adapter.webhook_secrets({}, None) == []
    assert adapter.webhook_secrets({"webhook_key": "  "}, None) == []


def test_sender_allowed(adapter: Cafe24Adapter) -> None:
    request = request_for(b"{}", remote_addr="203.0.113.7")
    assert adapter.sender_allowed(request, {})
    assert adapter.sender_allowed(request, {"allowed_ips": " "})
    assert adapter.sender_allowed(request, {"allowed_ips": "198.51.100.1, 203.0.113.0/24"})
    assert adapter.sender_allowed(request, {"allowed_ips": "203.0.113.7"})
    assert not adapter.sender_allowed(request, {"allowed_ips": "198.51.100.0/24"})
    assert not adapter.sender_allowed(request_for(b"{}", remote_addr=None), {"allowed_ips": "10.0.0.1"})
    with pytest.raises(ValueError, match="allowed_ips"):
        adapter.sender_allowed(request, {"allowed_ips": "203.0.113.7, not-an-ip"})


def test_delivery_headers_verify(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-created-90023")
    headers = adapter.delivery_headers(body, shop_domain="cafe24bestshop", topic=None, secret=KEY)
    assert headers == {"Content-Type": "application/json", "X-API-Key": KEY}
    request = WebhookRequest.build(headers, body)
    assert adapter.verify(request, adapter.webhook_secrets({"webhook_key": KEY}, None))


@pytest.mark.parametrize("value", ["cafe24bestshop", "CafE24BestShop", " cafe24bestshop ",
                                   "https://cafe24bestshop.cafe24.com/", "cafe24bestshop.cafe24api.com"])
def test_canonical_shop_domain(adapter: Cafe24Adapter, value: str) -> None:
    assert adapter.canonical_shop_domain(value) == "cafe24bestshop"


@pytest.mark.parametrize("value", ["", "bad mall", "shop_1", "https://evil.example/cafe24bestshop",
                                   "cafe24bestshop.cafe24.com.evil.example", "x" * 40, "[::1"])
def test_canonical_shop_domain_rejects(adapter: Cafe24Adapter, value: str) -> None:
    with pytest.raises(ValueError, match="not a Cafe24 mall id"):
        adapter.canonical_shop_domain(value)


# --------------------------------------------------------------------------------------------------
# Delivery identity
# --------------------------------------------------------------------------------------------------


def test_delivery_id_is_event_shop_and_body_hash(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-created-90023")
    identity = adapter.delivery(request_for(body))
    assert identity.delivery_id == f"90023:1:{hashlib.sha256(body).hexdigest()}"
    assert adapter.delivery(request_for(body, key="other")).delivery_id == identity.delivery_id

    data = json.loads(body)
    data["resource"]["event_shop_no"] = "2"
    other_shop = adapter.delivery(request_for(json.dumps(data).encode()))
    assert other_shop.delivery_id.startswith("90023:2:")
    assert other_shop.shop_domain == "cafe24bestshop"


def test_unwrapped_shapes_are_inferred(adapter: Cafe24Adapter) -> None:
    deleted = adapter.delivery(request_for(read_sample("cafe24", "customer-deleted-90147")))
    assert (deleted.topic, deleted.delivery_id.split(":")[1]) == ("90147", "90147")
    changed = adapter.delivery(request_for(read_sample("cafe24", "customer-info-changed-90080")))
    assert changed.topic == "90080"


def test_wrapped_customer_events_are_accepted_too(adapter: Cafe24Adapter) -> None:
    body = json.dumps({"event_no": 90147, "resource": {
        "mall_id": "cafe24bestshop", "event_shop_no": "1", "member_id": "a,b"}}).encode()
    assert adapter.delivery(request_for(body)).topic == "90147"
    assert adapter.normalize("90147", body) == [
        CustomerRedactRequested(platform_customer_ids=("a", "b"))]


def test_mall_id_is_lower_cased(adapter: Cafe24Adapter) -> None:
    body = read_sample("cafe24", "order-return-completed-90160")  # "sampleMall"
    assert adapter.shop_domain(request_for(body)) == "samplemall"


# --------------------------------------------------------------------------------------------------
# Malformed bodies and unknown topics
# --------------------------------------------------------------------------------------------------


def wrapped(event_no: Any, **resource: Any) -> bytes:
    return json.dumps({"event_no": event_no, "resource": {"mall_id": "cafe24bestshop",
                                                          "event_shop_no": "1", **resource}}).encode()


@pytest.mark.parametrize("body, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"event_no": 90023}', "resource"),
    (b'{"event_no": 90023, "resource": []}', "resource"),
    (b'{"event_no": true, "resource": {"mall_id": "cafe24bestshop"}}', "event_no"),
    (b'{"event_no": 90023, "resource": {"event_shop_no": "1"}}', "mall_id"),
    (b'{"event_no": 90023, "resource": {"mall_id": "bad mall!"}}', "mall_id"),
    (b'{"event_no": 90023, "resource": {"mall_id": 123456}}', "mall_id"),
    (b'{"mall_id": "cafe24bestshop", "order_id": "1"}', "no event_no"),
])
def test_malformed_deliveries(adapter: Cafe24Adapter, body: bytes, message: str) -> None:
    with pytest.raises(PayloadInvalidError, match=message):
        adapter.delivery(request_for(body))
    with pytest.raises(PayloadInvalidError):
        adapter.shop_domain(request_for(body))


@pytest.mark.parametrize("topic, body, message", [
    ("90023", wrapped(90023, order_date="2020-07-17T15:28:14+09:00", order_price_amount="1"),
     "order_id"),
    ("90023", wrapped(90023, order_id="1", order_price_amount="1"), "order_date"),
    ("90023", wrapped(90023, order_id="1", order_date="yesterday", order_price_amount="1"), "order_date"),
    ("90023", wrapped(90023, order_id="1", order_date="2020-07-17T15:28:14+09:00"), "order_price_amount"),
    ("90023", wrapped(90023, order_id="1", order_date="2020-07-17T15:28:14+09:00",
                      order_price_amount="abc"), "order_price_amount"),
    ("90023", wrapped(90023, order_id="1", order_date="2020-07-17T15:28:14+09:00",
                      order_price_amount=True), "order_price_amount"),
    ("90023", wrapped(90023, order_id=["1"], order_date="2020-07-17T15:28:14+09:00",
                      order_price_amount="1"), "order_id"),
    ("90071", wrapped(90071, order_id=" , ,"), "order_id"),
    ("90071", wrapped(90071), "order_id"),
    ("90160", wrapped(90160, order_id="1", claim_code="C1", refund_amount="NaN"), "refund_amount"),
    ("90160", wrapped(90160, order_id="1", claim_code="C1", refund_amount="1", currency="KRWX"),
     "currency"),
    ("90032", wrapped(90032, name="Jake"), "member_id"),
    ("90080", wrapped(90080, diff_key="name"), "member_id"),
    ("90024", wrapped(90023, order_id="1"), "stored as topic 90024"),
])
def test_malformed_bodies(adapter: Cafe24Adapter, topic: str, body: bytes, message: str) -> None:
    with pytest.raises(PayloadInvalidError, match=message):
        adapter.normalize(topic, body)


@pytest.mark.parametrize("topic", ["90028", "90999", "orders/create", "", "٩٠٠٢٣", "-90023"])
def test_unknown_topics(adapter: Cafe24Adapter, topic: str) -> None:
    with pytest.raises(UnknownTopicError):
        adapter.normalize(topic, read_sample("cafe24", "order-created-90023"))


def test_unknown_event_still_has_an_identity(adapter: Cafe24Adapter) -> None:
    body = wrapped(90999, anything="x")
    assert adapter.delivery(request_for(body)).topic == "90999"
    with pytest.raises(UnknownTopicError):
        adapter.normalize("90999", body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                     max_size=4),
    max_leaves=12)
resource_keys = st.sampled_from(["mall_id", "event_shop_no", "order_id", "order_date", "member_id",
                                 "order_price_amount", "actual_payment_amount", "claim_code",
                                 "refund_amount", "currency", "diff_key", "paid", "created_date"])
resources = st.dictionaries(resource_keys, json_values | st.text(max_size=30), max_size=8)
topics = st.sampled_from(["90023", "90024", "90071", "90032", "90077", "90080", "90147", "90160",
                          "90999", "x"])
ALLOWED = (PayloadInvalidError, UnknownTopicError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), topic=topics)
def test_fuzz_bytes_raise_only_contract_errors(body: bytes, topic: str) -> None:
    adapter = Cafe24Adapter()
    for call in (lambda: adapter.delivery(request_for(body)), lambda: adapter.normalize(topic, body)):
        try:
            call()
        except ALLOWED:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_no=st.sampled_from([90023, 90024, 90071, 90032, 90077, 90080, 90147, 90160, "90023"])
       | json_values, resource=resources | json_values, wrap=st.booleans(), topic=topics)
def test_fuzz_json_raises_only_contract_errors(event_no: Any, resource: Any, wrap: bool,
                                               topic: str) -> None:
    adapter = Cafe24Adapter()
    data = {"event_no": event_no, "resource": resource} if wrap else resource
    body = json.dumps(data).encode()
    for call in (lambda: adapter.delivery(request_for(body)), lambda: adapter.normalize(topic, body),
                 lambda: adapter.shop_domain(request_for(body))):
        try:
            call()
        except ALLOWED:
            pass


# --------------------------------------------------------------------------------------------------
# Admin API: fetch_orders / fetch_customers against the loopback server
# --------------------------------------------------------------------------------------------------


def shop_for(base_url: str, token: str = ACCESS_TOKEN, **settings_: str) -> ShopContext:
    return ShopContext(shop_id=7, domain="cafe24bestshop", credentials={"access_token": token},
                       settings={"api_base_url": base_url, **settings_})


@pytest.fixture
def state() -> Cafe24ServerState:
    return Cafe24ServerState()


@pytest.fixture
def server(state: Cafe24ServerState):
    with running_server(state) as base_url:
        yield base_url


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def fast_adapter(sleeps: list[float]) -> Cafe24Adapter:
    return Cafe24Adapter(timeout=(1.0, 2.0), sleep=sleeps.append)


def test_fetch_orders(fast_adapter: Cafe24Adapter, state: Cafe24ServerState, server: str) -> None:
    state.orders["20240302-0000011"] = make_order("20240302-0000011")
    state.orders["20240302-0000012"] = make_order("20240302-0000012", paid="F", items=[
        make_item("20240302-0000012", 1, "N00", custom_variant_code="SKU-1-RED")])
    before = datetime.now(UTC)

    records = fast_adapter.fetch_orders(shop_for(server, shop_no="2"),
                                        ["20240302-0000011", "20240302-0000012", "20240302-9999999"])

    assert [r.platform_order_id for r in records] == ["20240302-0000011", "20240302-0000012"]
    first, second = records
    assert first.complete is True
    assert first.total == Decimal("36000.00")
    assert first.currency == "KRW"
    assert first.placed_at == utc(2024, 3, 2, 1, 15)
    assert before <= first.updated_at <= datetime.now(UTC)  # no modification time: the fetch time
    assert first.financial_status is FinancialStatus.PAID
    assert first.fulfillment_status is FulfillmentStatus.UNFULFILLED
    assert (first.customer_name, first.email, first.phone) == ("홍길동", "hong@example.kr", "010-1234-5678")
    assert first.customer == CustomerRecord(platform_customer_id="hong123", email="hong@example.kr",
                                            name="홍길동", phone="010-1234-5678")
    assert first.lines[0] == OrderLineRecord(
        platform_line_id="20240302-0000011-01", title="카페24 테스트 상품1", quantity=2,
        unit_price=Decimal("12000.00"), sku="SKU-1", product_id="11", variant_id="P0000BAA0001")
    assert first.lines[1].unit_price == Decimal("12000.00")
    assert second.financial_status is FinancialStatus.PENDING
    assert second.lines[0].sku == "SKU-1-RED"

    [call] = state.calls
    assert call["path"] == "/api/v2/admin/orders"
    assert call["args"]["order_id"] == "20240302-0000011,20240302-0000012,20240302-9999999"
    assert set(call["args"]["embed"].split(",")) >= {"items", "buyer"}
    assert call["args"]["shop_no"] == "2"
    assert int(call["args"]["limit"]) >= 3
    assert call["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call["headers"]["X-Cafe24-Api-Version"] == DEFAULT_API_VERSION


def test_fetch_orders_api_version_setting(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                          server: str) -> None:
    fast_adapter.fetch_orders(shop_for(server, api_version="2025-06-01"), ["x"])
    assert state.calls[0]["headers"]["X-Cafe24-Api-Version"] == "2025-06-01"
    assert state.calls[0]["args"]["shop_no"] == "1"


@pytest.mark.parametrize("codes, paid, shipping, financial, fulfillment", [
    (["N30", "N30"], "T", "M", FinancialStatus.PAID, FulfillmentStatus.FULFILLED),
    (["N40", "N50"], "T", "T", FinancialStatus.PAID, FulfillmentStatus.DELIVERED),
    (["N30", "N20"], "T", "M", FinancialStatus.PAID, FulfillmentStatus.PARTIAL),
    (["N40", "C40"], "T", "T", FinancialStatus.PARTIALLY_REFUNDED, FulfillmentStatus.DELIVERED),
    (["C40", "C35"], "T", "F", FinancialStatus.REFUNDED, FulfillmentStatus.UNFULFILLED),
    (["C47", "C49"], "F", "F", FinancialStatus.VOIDED, FulfillmentStatus.UNFULFILLED),
    (["R40", "R40"], "T", "T", FinancialStatus.REFUNDED, FulfillmentStatus.RETURNED),
    (["R41", "N40"], "T", "T", FinancialStatus.PAID, FulfillmentStatus.DELIVERED),
    (["E00"], "M", "T", FinancialStatus.PARTIALLY_PAID, FulfillmentStatus.DELIVERED),
    ([], "T", "W", FinancialStatus.PAID, FulfillmentStatus.UNFULFILLED),
])
def test_fetched_order_states(fast_adapter: Cafe24Adapter, state: Cafe24ServerState, server: str,
                              codes: list[str], paid: str, shipping: str,
                              financial: FinancialStatus, fulfillment: FulfillmentStatus) -> None:
    state.orders["o1"] = make_order("o1", paid=paid, shipping_status=shipping,
                                    items=[make_item("o1", i, code) for i, code in enumerate(codes, 1)])
    [record] = fast_adapter.fetch_orders(shop_for(server), ["o1"])
    assert (record.financial_status, record.fulfillment_status) == (financial, fulfillment)


def test_fetch_orders_chunks_long_id_lists(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                           server: str) -> None:
    ids = [f"20240302-{n:07d}" for n in range(150)]
    for order_id in ids[::10]:
        state.orders[order_id] = make_order(order_id)
    records = fast_adapter.fetch_orders(shop_for(server), ids + ids[:3])
    assert [r.platform_order_id for r in records] == ids[::10]
    assert len(state.calls) == 2


def test_fetch_nothing_makes_no_call(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                     server: str) -> None:
    assert fast_adapter.fetch_orders(shop_for(server), []) == []
    assert fast_adapter.fetch_customers(shop_for(server), ["", " "]) == []
    assert state.calls == []


def test_fetch_customers(fast_adapter: Cafe24Adapter, state: Cafe24ServerState, server: str) -> None:
    state.customers["gdhong"] = make_customer("gdhong")
    before = datetime.now(UTC)
    [record] = fast_adapter.fetch_customers(shop_for(server), ["gdhong", "gone-member"])
    assert (record.platform_customer_id, record.name, record.email, record.phone) == (
        "gdhong", "김민지", "gdhong@example.kr", "010-9876-5432")
    assert before <= record.updated_at <= datetime.now(UTC)
    assert [c["path"] for c in state.calls] == ["/api/v2/admin/customersprivacy/gdhong",
                                               "/api/v2/admin/customersprivacy/gone-member"]


def test_wrong_token_is_an_auth_error(fast_adapter: Cafe24Adapter, server: str) -> None:
    with pytest.raises(PlatformAuthError, match="401"):
        fast_adapter.fetch_orders(shop_for(server, token="revoked"), ["1"])
    with pytest.raises(PlatformAuthError):
        fast_adapter.fetch_customers(shop_for(server, token="revoked"), ["gdhong"])


def test_missing_token_is_an_auth_error(fast_adapter: Cafe24Adapter, server: str) -> None:
    shop = ShopContext(shop_id=1, domain="cafe24bestshop", settings={"api_base_url": server})
    with pytest.raises(PlatformAuthError, match="access token"):
        fast_adapter.fetch_orders(shop, ["1"])


def test_429_storm_is_retried_honouring_capped_retry_after(
        fast_adapter: Cafe24Adapter, state: Cafe24ServerState, server: str, sleeps: list[float]) -> None:
    state.orders["o1"] = make_order("o1")
    state.fail_times, state.retry_after = 2, "7"
    [record] = fast_adapter.fetch_orders(shop_for(server), ["o1"])
    assert record.platform_order_id == "o1"
    assert sleeps == [2.0, 2.0]  # Retry-After 7 s, capped at 2 s
    assert len(state.calls) == 3


def test_endless_429_is_unavailable(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                    server: str, sleeps: list[float]) -> None:
    state.fail_times, state.retry_after = 100, None
    with pytest.raises(PlatformUnavailableError, match="429"):
        fast_adapter.fetch_orders(shop_for(server), ["o1"])
    assert len(state.calls) == 4  # one call and three quick retries
    assert sleeps == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_unavailable(fast_adapter: Cafe24Adapter, state: Cafe24ServerState, server: str,
                            status: int) -> None:
    state.fail_status, state.fail_times = status, 1
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        fast_adapter.fetch_customers(shop_for(server), ["gdhong"])


def test_timeout_is_unavailable(state: Cafe24ServerState, server: str) -> None:
    state.delay = 1.0
    adapter = Cafe24Adapter(timeout=(1.0, 0.2), sleep=lambda _: None)
    with pytest.raises(PlatformUnavailableError, match="timed out"):
        adapter.fetch_orders(shop_for(server), ["o1"])


def test_connection_refused_is_unavailable(fast_adapter: Cafe24Adapter) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PlatformUnavailableError, match="unreachable"):
        fast_adapter.fetch_orders(shop_for(f"http://127.0.0.1:{port}"), ["o1"])


def test_nearly_full_bucket_slows_down(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                       server: str, sleeps: list[float]) -> None:
    state.customers.update({m: make_customer(m) for m in ("a1", "b2", "c3")})
    state.bucket_level = 38  # the first call fills it to 39/40
    records = fast_adapter.fetch_customers(shop_for(server), ["a1", "b2", "c3"])
    assert len(records) == 3
    assert sleeps and all(0 < pause <= 2.0 for pause in sleeps)


def test_malformed_api_answer_is_unavailable(fast_adapter: Cafe24Adapter, state: Cafe24ServerState,
                                             server: str) -> None:
    state.orders["o1"] = make_order("o1", order_date="not a date")
    with pytest.raises(PlatformUnavailableError, match="order_date"):
        fast_adapter.fetch_orders(shop_for(server), ["o1"])


@pytest.mark.parametrize("value, seconds", [
    (None, 0.5), ("0", 0.0), ("1", 1.0), ("1.5", 1.5), ("120", 2.0), ("-3", 0.0), ("soon", 0.5),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_seconds(value: str | None, seconds: float) -> None:
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize("value, pause", [
    (None, 0.0), ("1/40", 0.0), ("35/40", 0.0), ("36/40", 0.5), ("37/40", 1.0), ("40/40", 2.0),
    ("junk", 0.0)])
def test_call_limit_pause(value: str | None, pause: float) -> None:
    assert call_limit_pause(value) == pause
