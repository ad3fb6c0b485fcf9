"""The merchant API: bearer-token scoped to one shop, canonical orders, OpenAPI document."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.store import repository
from ccms_addon.store.privacy import redact_customers

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _order(oid: str, updated: datetime, currency="KRW", total="15000") -> OrderRecord:
    return OrderRecord(
        platform_order_id=oid, number=f"2026-{oid}", currency=currency, total=Decimal(total),
        updated_at=updated, placed_at=T0, financial_status=FinancialStatus.PAID,
        fulfillment_status=FulfillmentStatus.FULFILLED, email="kim@example.kr",
        customer_name="김민수", customer=CustomerRecord("M1", email="kim@example.kr", name="김민수"),
        lines=(OrderLineRecord("1", "에코백", 2, Decimal("7500"), sku="BAG"),))


@pytest.fixture
def two_shops(runtime, make_shop):
    a, b = make_shop("cafe24", "malla"), make_shop("cafe24", "mallb")
    with runtime.db.session() as s:
        repository.upsert_orders(s, a.shop.id, [_order(str(i), T0 + timedelta(minutes=i))
                                                for i in range(5)])
        repository.upsert_orders(s, b.shop.id, [_order("b-only", T0)])
    return a, b


def auth(new_shop):
    return {"Authorization": f"Bearer {new_shop.api_token}"}


def test_order_has_the_canonical_shape(client, two_shops):
    a, _ = two_shops
    response = client.get("/api/v1/orders/3", headers=auth(a))
    assert response.status_code == 200
    body = response.json
    assert body["total"] == "15000" and body["currency"] == "KRW"
    assert body["financial_status"] == "paid" and body["fulfillment_status"] == "fulfilled"
    assert body["customer"]["email"] == "kim@example.kr" and body["customer"]["name"] == "김민수"
    assert body["lines"] == [{"platform_line_id": "1", "title": "에코백", "sku": "BAG",
                              "product_id": None, "variant_id": None, "quantity": 2,
                              "unit_price": "7500"}]
    assert body["updated_at"].startswith("2026-05-01T00:03:00")


def test_another_shops_order_is_404_like_a_missing_one(client, two_shops):
    a, b = two_shops
    foreign = client.get("/api/v1/orders/b-only", headers=auth(a))
    missing = client.get("/api/v1/orders/nope", headers=auth(a))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json
    assert client.get("/api/v1/orders/b-only", headers=auth(b)).status_code == 200


def test_list_pages_and_filters(client, two_shops):
    a, _ = two_shops
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/orders", query_string=query, headers=auth(a)).json
        seen += [o["platform_order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["0", "1", "2", "3", "4"]
    since = client.get("/api/v1/orders", headers=auth(a), query_string={
        "updated_since": (T0 + timedelta(minutes=3)).isoformat()}).json
    assert [o["platform_order_id"] for o in since["orders"]] == ["3", "4"]


@pytest.mark.parametrize("query,field", [({"limit": 0}, "limit"), ({"limit": "x"}, "limit"),
                                         ({"updated_since": "yesterday"}, "updated_since"),
                                         ({"bogus": 1}, "bogus"), ({"cursor": "%%%"}, "cursor")])
def test_bad_query_is_422_with_field_errors(client, two_shops, query, field):
    a, _ = two_shops
    response = client.get("/api/v1/orders", query_string=query, headers=auth(a))
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]["query"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc"])
def test_missing_or_bad_token_is_401(client, two_shops, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/orders", headers=headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"


def test_customer_is_null_after_redaction(client, runtime, two_shops):
    a, _ = two_shops
    with runtime.db.session() as s:
        redact_customers(s, a.shop.id, platform_customer_ids=["M1"])
    customer = client.get("/api/v1/orders/1", headers=auth(a)).json["customer"]
    assert customer["email"] is None and customer["name"] is None


def test_openapi_document_describes_the_api(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/orders", "/api/v1/orders/{platform_order_id}"} <= set(spec["paths"])
    order = spec["components"]["schemas"]["Order"]["properties"]
    assert {"platform_order_id", "number", "currency", "total", "financial_status",
            "fulfillment_status", "customer", "lines", "placed_at", "updated_at"} <= set(order)
