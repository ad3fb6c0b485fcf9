"""settle_claim of the three adapters: the refund or return an approved guarantee claim asks for,
created through each platform's documented admin API on a loopback server, exactly once per claim
reference, with the platforms' rate limits, outages and refusals mapped to the adapter contract."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest

from ccms_addon.platforms import (PlatformAdapter, PlatformError, PlatformUnavailableError,
                                  ReturnLine, SettlementRequest, SettlementResult, ShopContext,
                                  carries_reference, exact_amount)
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.plugins.cafe24 import Cafe24Adapter
from ccms_addon.plugins.shopify import ShopifyAdapter
from ccms_addon.plugins.shopify import settlement as shopify_settlement
from ccms_addon.plugins.shopify.client import ShopifyAdminClient
from ccms_addon.plugins.woocommerce import WooCommerceAdapter
from ccms_addon.plugins.woocommerce.client import WooCommerceClient
from tests.platform_servers.cafe24 import (ACCESS_TOKEN, Cafe24ServerState, make_item, make_order,
                                           running_server)
from tests.platform_servers.shopify import ShopifyAdminServer
from tests.platform_servers.shopify_settlement import LOCATION_ID
from tests.platform_servers.woocommerce import FakeWooCommerce
from tests.platform_servers.woocommerce import make_order as make_woo_order
from tests.platform_servers.woocommerce import serve


def test_every_built_in_adapter_implements_settle_claim() -> None:
    registry = platform_registry(get_plugin_manager())
    for name in ("shopify", "cafe24", "woocommerce"):
        assert isinstance(registry[name], PlatformAdapter)
        assert callable(registry[name].settle_claim)


def test_reference_is_matched_as_a_whole_token() -> None:
    assert carries_reference("CLAIM-7: buyback", "CLAIM-7")
    assert carries_reference("refund for [CLAIM-7]", "CLAIM-7")
    assert not carries_reference("CLAIM-71: buyback", "CLAIM-7")
    assert not carries_reference("CLAIM-7-2", "CLAIM-7")
    assert not carries_reference(None, "CLAIM-7")


@pytest.mark.parametrize(("request_", "message"), [
    (SettlementRequest("1", "exchange", "CLAIM-1", "USD", Decimal("1")), "unknown settlement action"),
    (SettlementRequest("1", "refund", " ", "USD", Decimal("1")), "reference"),
    (SettlementRequest("1", "refund", "CLAIM-1", "USD", Decimal("-1")), "positive"),
    (SettlementRequest("1", "refund", "CLAIM-1", "KRW", Decimal("15000.5")), "more decimals"),
    (SettlementRequest("1", "refund", "CLAIM-1", "USD"), "an amount or"),
    (SettlementRequest("1", "return", "CLAIM-1", "USD", lines=(ReturnLine("2", 0),)), "positive"),
])
def test_requests_no_platform_could_satisfy_are_refused_before_any_call(
        request_: SettlementRequest, message: str) -> None:
    with pytest.raises(PlatformError, match=message):
        request_.check()


def test_amounts_are_exact_in_the_currencys_minor_unit() -> None:
    assert exact_amount(Decimal("15000"), "KRW") == "15000"
    assert exact_amount(Decimal("49.9"), "USD") == "49.90"
    with pytest.raises(PlatformError, match="more decimals"):
        exact_amount(Decimal("1.005"), "USD")


# ==================================================================================================
# Shopify: GraphQL refundCreate (@idempotent) and returnCreate
# ==================================================================================================

TOKEN = "shpat_settlement_token"
SHOP = "settle-shop.myshopify.com"
ORDER = 450789469
LINE_A, LINE_B = 669751112, 669751113


@pytest.fixture
def shopify():
    with ShopifyAdminServer(TOKEN) as server:
        server.add_settlement_order(ORDER, name="#1001", currency="USD",
                                    lines=[(LINE_A, 2, "49.95"), (LINE_B, 1, "20.00")])
        yield server


def shopify_shop(server: ShopifyAdminServer, **settings: str) -> ShopContext:
    return ShopContext(shop_id=1, domain=SHOP, credentials={"access_token": TOKEN},
                       settings={"api_base_url": server.base_url, **settings})


def graphql_calls(server: ShopifyAdminServer, root_field: str) -> list[dict]:
    return [r["json"] for r in server.requests
            if r["path"].endswith("/graphql.json") and r["json"]
            and f"{root_field}(" in r["json"]["query"]]


def test_shopify_refund_of_an_amount(shopify: ShopifyAdminServer) -> None:
    result = ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        str(ORDER), "refund", "CLAIM-7", "USD", amount=Decimal("30.00"),
        reason="buyback:  the  seams came loose", notify_customer=False))

    order = shopify.state.settlement.orders[str(ORDER)]
    (refund,) = order.refunds
    assert result == SettlementResult(
        action="refund", platform_id=refund["id"].rsplit("/", 1)[1], status="created",
        amount=Decimal("30"), detail=result.detail)
    assert "30.00 USD" in result.detail and "#1001" in result.detail
    (mutation,) = graphql_calls(shopify, "refundCreate")
    assert "@idempotent(key: $idempotencyKey)" in mutation["query"]
    assert uuid.UUID(mutation["variables"]["idempotencyKey"])
    txn = order.transactions[0]
    assert mutation["variables"]["input"] == {
        "orderId": f"gid://shopify/Order/{ORDER}", "note": "CLAIM-7: buyback: the seams came loose",
        "notify": False, "currency": "USD",
        "transactions": [{"orderId": f"gid://shopify/Order/{ORDER}", "gateway": "shopify_payments",
                          "kind": "REFUND", "amount": "30.00",
                          "parentId": f"gid://shopify/OrderTransaction/{txn.id}"}]}
    assert txn.refunded == Decimal("30.00")
    (suggestion,) = graphql_calls(shopify, "suggestedRefund")
    assert suggestion["variables"]["suggestFullRefund"] is True
    assert all(r["path"] == "/admin/api/2026-07/graphql.json" for r in shopify.requests)


def test_shopify_refund_of_lines_with_restock(shopify: ShopifyAdminServer) -> None:
    result = ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        str(ORDER), "refund", "CLAIM-8", "USD", lines=(ReturnLine(str(LINE_A), 1),), restock=True))

    assert (result.action, result.status, result.amount) == ("refund", "created", Decimal("49.95"))
    (mutation,) = graphql_calls(shopify, "refundCreate")
    refund_input = mutation["variables"]["input"]
    assert refund_input["refundLineItems"] == [{
        "lineItemId": f"gid://shopify/LineItem/{LINE_A}", "quantity": 1, "restockType": "RETURN",
        "locationId": LOCATION_ID}]
    assert [t["amount"] for t in refund_input["transactions"]] == ["49.95"]
    line = shopify.state.settlement.orders[str(ORDER)].lines[LINE_A]
    assert (line.refunded, line.restocked) == (1, 1)


def test_shopify_amounts_in_krw_have_no_minor_unit(shopify: ShopifyAdminServer) -> None:
    shopify.add_settlement_order(5001, currency="KRW", lines=[(77, 2, "15000")])
    result = ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        "5001", "refund", "CLAIM-9", "KRW", amount=Decimal("15000")))
    assert result.amount == Decimal("15000")
    (mutation,) = graphql_calls(shopify, "refundCreate")
    assert mutation["variables"]["input"]["currency"] == "KRW"
    assert [t["amount"] for t in mutation["variables"]["input"]["transactions"]] == ["15000"]


def test_shopify_return_is_an_open_return_carrying_the_reference(shopify: ShopifyAdminServer) -> None:
    result = ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        str(ORDER), "return", "CLAIM-10", "USD", lines=(ReturnLine(str(LINE_A), 2),),
        reason="free return within 30 days", restock=True))

    order = shopify.state.settlement.orders[str(ORDER)]
    (created,) = order.returns
    assert (result.action, result.platform_id, result.status, result.amount) == (
        "return", created["id"].rsplit("/", 1)[1], "created", None)
    assert "#1001-R1" in result.detail and "processed" in result.detail
    (mutation,) = graphql_calls(shopify, "returnCreate")
    assert mutation["variables"] == {"returnInput": {
        "orderId": f"gid://shopify/Order/{ORDER}",
        "returnLineItems": [{"fulfillmentLineItemId": f"gid://shopify/FulfillmentLineItem/{LINE_A}1",
                             "quantity": 2,
                             "returnReasonNote": "CLAIM-10: free return within 30 days"}]}}
    assert order.lines[LINE_A].returned == 2 and order.refunds == []


def test_shopify_return_without_lines_returns_everything_returnable(
        shopify: ShopifyAdminServer) -> None:
    ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        str(ORDER), "return", "CLAIM-11", "USD"))
    lines = shopify.state.settlement.orders[str(ORDER)].lines
    assert (lines[LINE_A].returned, lines[LINE_B].returned) == (2, 1)


@pytest.mark.parametrize("action", ["refund", "return"])
def test_shopify_second_call_with_the_same_reference_creates_nothing(
        shopify: ShopifyAdminServer, action: str) -> None:
    adapter, shop = ShopifyAdapter(), shopify_shop(shopify)
    request = SettlementRequest(str(ORDER), action, "CLAIM-12", "USD",
                                amount=Decimal("10.00") if action == "refund" else None,
                                lines=() if action == "refund" else (ReturnLine(str(LINE_B), 1),))
    first = adapter.settle_claim(shop, request)
    shopify.requests.clear()
    again = adapter.settle_claim(shop, request)

    assert (again.action, again.platform_id, again.status) == (action, first.platform_id,
                                                              "already_existed")
    assert "CLAIM-12" in again.detail
    assert len(shopify.requests) == 1  # the look-up only
    order = shopify.state.settlement.orders[str(ORDER)]
    assert len(order.refunds) + len(order.returns) == 1
    # a different claim on the same order is not mistaken for this one
    other = adapter.settle_claim(shop, SettlementRequest(str(ORDER), "refund", "CLAIM-120", "USD",
                                                         amount=Decimal("1.00")))
    assert other.status == "created"


def test_shopify_idempotency_key_replays_the_first_refund(shopify: ShopifyAdminServer) -> None:
    """Should the look-up miss a refund whose answer was lost, Shopify's idempotency key still
    returns the original refund: the same settlement always derives the same key."""
    shop = shopify_shop(shopify)
    request = SettlementRequest(str(ORDER), "refund", "CLAIM-13", "USD", amount=Decimal("5.00"))
    body = {"orderId": "gid://shopify/Order/1", "amount": "5.00"}
    key = shopify_settlement._idempotency_key(shop, "gid://shopify/Order/1", request, body)
    assert key == shopify_settlement._idempotency_key(shop, "gid://shopify/Order/1", request, body)
    assert key != shopify_settlement._idempotency_key(shop, "gid://shopify/Order/1", request,
                                                      {**body, "amount": "6.00"})
    ShopifyAdapter().settle_claim(shop, request)
    (mutation,) = graphql_calls(shopify, "refundCreate")
    with ShopifyAdminClient(shopify.base_url, "2026-07", TOKEN) as client:
        replay = client.graphql(mutation["query"], mutation["variables"])
    (refund,) = shopify.state.settlement.orders[str(ORDER)].refunds
    assert replay["refundCreate"]["refund"]["id"] == refund["id"]
    assert shopify.state.settlement.refunds_created == 1


def test_shopify_rate_limit_storm_then_success(shopify: ShopifyAdminServer) -> None:
    shopify.fail_next(2, 429, retry_after="0.01")
    result = ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
        str(ORDER), "refund", "CLAIM-14", "USD", amount=Decimal("10.00")))
    assert result.status == "created"
    assert len(shopify.requests) == 2 + 3  # two throttled, then look-up, suggestion, refundCreate
    assert shopify.state.settlement.refunds_created == 1


def test_shopify_graphql_throttling_is_retried_later(shopify: ShopifyAdminServer) -> None:
    shopify.state.graphql_throttled = 1
    with pytest.raises(PlatformUnavailableError, match="throttled"):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            str(ORDER), "refund", "CLAIM-15", "USD", amount=Decimal("10.00")))
    assert shopify.state.settlement.refunds_created == 0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_shopify_persistent_server_errors_are_unavailable(shopify: ShopifyAdminServer,
                                                          status: int) -> None:
    shopify.fail_next(10, status)
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            str(ORDER), "refund", "CLAIM-16", "USD", amount=Decimal("10.00")))
    assert len(shopify.requests) == 1 and shopify.state.settlement.refunds_created == 0


def test_shopify_amount_above_refundable_is_refused(shopify: ShopifyAdminServer) -> None:
    with pytest.raises(PlatformError, match=r"500.00 USD is more than the 119.90 USD still "
                                            r"refundable on order #1001") as caught:
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            str(ORDER), "refund", "CLAIM-17", "USD", amount=Decimal("500.00")))
    assert not isinstance(caught.value, PlatformUnavailableError)
    assert graphql_calls(shopify, "refundCreate") == []


def test_shopify_refusal_in_user_errors_is_a_platform_error(shopify: ShopifyAdminServer) -> None:
    # three units of a line bought twice: the suggestion caps the quantity, refundCreate refuses
    with pytest.raises(PlatformError, match="Shopify refused the refund of order #1001: Quantity"):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            str(ORDER), "refund", "CLAIM-18", "USD", amount=Decimal("10.00"),
            lines=(ReturnLine(str(LINE_A), 3),)))
    assert shopify.state.settlement.refunds_created == 0


@pytest.mark.parametrize("order_id", ["999", "not-a-number"])
def test_shopify_unknown_order_is_refused(shopify: ShopifyAdminServer, order_id: str) -> None:
    with pytest.raises(PlatformError, match=re.escape(order_id)) as caught:
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            order_id, "refund", "CLAIM-19", "USD", amount=Decimal("1.00")))
    assert not isinstance(caught.value, PlatformUnavailableError)


def test_shopify_currency_other_than_the_orders_is_refused(shopify: ShopifyAdminServer) -> None:
    with pytest.raises(PlatformError, match="paid in USD"):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            str(ORDER), "refund", "CLAIM-20", "EUR", amount=Decimal("1.00")))


def test_shopify_return_of_unfulfilled_items_is_refused(shopify: ShopifyAdminServer) -> None:
    shopify.add_settlement_order(5002, lines=[(88, 1, "10.00")], fulfilled=False)
    with pytest.raises(PlatformError, match="fulfilled"):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            "5002", "return", "CLAIM-21", "USD"))
    with pytest.raises(PlatformError, match="only 0 fulfilled"):
        ShopifyAdapter().settle_claim(shopify_shop(shopify), SettlementRequest(
            "5002", "return", "CLAIM-21", "USD", lines=(ReturnLine("88", 1),)))


def test_shopify_older_api_versions_get_what_they_require(shopify: ShopifyAdminServer) -> None:
    """Before 2026-01 refundCreate knows no @idempotent and returns need a returnReason."""
    shop = shopify_shop(shopify, api_version="2025-10")
    adapter = ShopifyAdapter()
    assert adapter.settle_claim(shop, SettlementRequest(
        str(ORDER), "refund", "CLAIM-22", "USD", amount=Decimal("1.00"))).status == "created"
    assert adapter.settle_claim(shop, SettlementRequest(
        str(ORDER), "return", "CLAIM-23", "USD", lines=(ReturnLine(str(LINE_B), 1),))
    ).status == "created"
    (refund,) = graphql_calls(shopify, "refundCreate")
    assert "@idempotent" not in refund["query"] and "idempotencyKey" not in refund["variables"]
    (ret,) = graphql_calls(shopify, "returnCreate")
    assert ret["variables"]["returnInput"]["returnLineItems"][0]["returnReason"] == "OTHER"
    assert {r["path"] for r in shopify.requests} == {"/admin/api/2025-10/graphql.json"}


def test_shopify_refund_without_the_directive_is_refused_from_2026_04(
        shopify: ShopifyAdminServer) -> None:
    """What the loopback server enforces, as Shopify does: the adapter always sends the key."""
    with ShopifyAdminClient(shopify.base_url, "2026-07", TOKEN) as client:
        with pytest.raises(PlatformError, match="idempotent"):
            client.graphql(shopify_settlement.REFUND_CREATE_MUTATION_LEGACY, {"input": {
                "orderId": f"gid://shopify/Order/{ORDER}"}})


# ==================================================================================================
# Cafe24: POST /api/v2/admin/orders/{order_id}/return
# ==================================================================================================

C_ORDER = "20240305-0000021"
ITEM_1, ITEM_2 = f"{C_ORDER}-01", f"{C_ORDER}-02"


@pytest.fixture
def cafe24_state() -> Cafe24ServerState:
    state = Cafe24ServerState()
    # item 1: 2 × (10000 + 2000 option) KRW; item 2: 1 × 12000 KRW; both delivered
    state.orders[C_ORDER] = make_order(C_ORDER, items=[
        make_item(C_ORDER, 1, "N40"),
        make_item(C_ORDER, 2, "N40", product_price="12000.00", option_price="0.00", quantity=1)])
    return state


@pytest.fixture
def cafe24_url(cafe24_state: Cafe24ServerState):
    with running_server(cafe24_state) as base_url:
        yield base_url


@pytest.fixture
def cafe24_sleeps() -> list[float]:
    return []


@pytest.fixture
def cafe24(cafe24_sleeps: list[float]) -> Cafe24Adapter:
    return Cafe24Adapter(timeout=(1.0, 2.0), sleep=cafe24_sleeps.append)


def cafe24_shop(base_url: str, **settings: str) -> ShopContext:
    return ShopContext(shop_id=7, domain="cafe24bestshop", credentials={"access_token": ACCESS_TOKEN},
                       settings={"api_base_url": base_url, **settings})


def cafe24_posts(state: Cafe24ServerState) -> list[dict]:
    return [c for c in state.calls if c["method"] == "POST"]


def test_cafe24_refund_is_a_completed_return_refunded_by_cafe24(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    result = cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
        C_ORDER, "refund", "CLAIM-31", "KRW", amount=Decimal("12000"),
        lines=(ReturnLine(ITEM_1, 1),), reason="buyback"))

    (claim,) = cafe24_state.returns[C_ORDER]
    assert result == SettlementResult(action="refund", platform_id=claim["claim_code"],
                                      status="created", amount=Decimal("12000"), detail=result.detail)
    assert "12000 KRW" in result.detail
    (post,) = cafe24_posts(cafe24_state)
    assert post["path"] == f"/api/v2/admin/orders/{C_ORDER}/return"
    assert post["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert post["json"] == {"shop_no": 1, "request": {
        "status": "returned", "recover_inventory": "F", "add_memo_too": "T",
        "claim_reason_type": "I", "reason": "CLAIM-31 · approved 12000 KRW: buyback",
        "items": [{"order_item_code": ITEM_1, "quantity": 1}], "payment_gateway_cancel": "T"}}
    (refund,) = cafe24_state.refunds
    assert (refund["refund_amount"], refund["currency"]) == ("12000.00", "KRW")
    (look_up,) = [c for c in cafe24_state.calls if c["method"] == "GET"]
    assert look_up["path"] == f"/api/v2/admin/orders/{C_ORDER}"
    assert look_up["args"] == {"shop_no": "1", "embed": "items,return"}


def test_cafe24_refund_without_amount_refunds_the_items_value(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    result = cafe24.settle_claim(cafe24_shop(cafe24_url, cafe24_pg_cancel="false"), SettlementRequest(
        C_ORDER, "refund", "CLAIM-32", "KRW", lines=(ReturnLine(ITEM_1, 2), ReturnLine(ITEM_2, 1))))
    assert result.amount == Decimal("36000")
    assert cafe24_posts(cafe24_state)[0]["json"]["request"]["payment_gateway_cancel"] == "F"


def test_cafe24_return_is_an_accepted_return_with_restock(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    result = cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
        C_ORDER, "return", "CLAIM-33", "KRW", lines=(ReturnLine(ITEM_2, 1),), restock=True,
        reason="free return"))

    (claim,) = cafe24_state.returns[C_ORDER]
    assert (result.action, result.platform_id, result.status, result.amount) == (
        "return", claim["claim_code"], "created", None)
    request = cafe24_posts(cafe24_state)[0]["json"]["request"]
    assert (request["status"], request["recover_inventory"]) == ("accepted", "T")
    assert "payment_gateway_cancel" not in request
    assert cafe24_state.refunds == []  # refunded when the merchant completes the return
    item = cafe24_state.orders[C_ORDER]["items"][1]
    assert (item["order_status"], item["claim_code"]) == ("R10", claim["claim_code"])


def test_cafe24_second_call_with_the_same_reference_creates_nothing(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    shop = cafe24_shop(cafe24_url)
    request = SettlementRequest(C_ORDER, "return", "CLAIM-34", "KRW", lines=(ReturnLine(ITEM_2, 1),))
    first = cafe24.settle_claim(shop, request)
    cafe24_state.calls.clear()
    again = cafe24.settle_claim(shop, request)
    assert (again.action, again.platform_id, again.status) == ("return", first.platform_id,
                                                              "already_existed")
    assert cafe24_posts(cafe24_state) == [] and len(cafe24_state.returns[C_ORDER]) == 1


def test_cafe24_call_limit_storm_then_success(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str,
        cafe24_sleeps: list[float]) -> None:
    cafe24_state.fail_status, cafe24_state.fail_times, cafe24_state.retry_after = 429, 3, "1"
    result = cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
        C_ORDER, "refund", "CLAIM-35", "KRW", lines=(ReturnLine(ITEM_2, 1),)))
    assert result.status == "created" and len(cafe24_state.returns[C_ORDER]) == 1
    assert cafe24_sleeps[:3] == [1.0, 1.0, 1.0]  # Retry-After honoured in the call
    assert len(cafe24_state.calls) == 3 + 2


def test_cafe24_call_limit_header_slows_down_before_the_bucket_overflows(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str,
        cafe24_sleeps: list[float]) -> None:
    cafe24_state.bucket_level = 38.0
    cafe24_state.bucket_drain_per_second = 0.0
    cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
        C_ORDER, "return", "CLAIM-36", "KRW", lines=(ReturnLine(ITEM_2, 1),)))
    assert cafe24_sleeps and all(0 < pause <= 2.0 for pause in cafe24_sleeps)


@pytest.mark.parametrize("status", [500, 503])
def test_cafe24_persistent_server_errors_are_unavailable(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str,
        status: int) -> None:
    cafe24_state.fail_status, cafe24_state.fail_times = status, 10
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            C_ORDER, "refund", "CLAIM-37", "KRW", lines=(ReturnLine(ITEM_2, 1),)))
    assert len(cafe24_state.calls) == 1 and C_ORDER not in cafe24_state.returns


def test_cafe24_amount_above_the_items_value_is_refused(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    with pytest.raises(PlatformError, match="50000 KRW is more than the 12000 KRW"):
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            C_ORDER, "refund", "CLAIM-38", "KRW", amount=Decimal("50000"),
            lines=(ReturnLine(ITEM_2, 1),)))
    assert cafe24_posts(cafe24_state) == []


def test_cafe24_partial_amount_cannot_be_refunded_through_the_api(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    with pytest.raises(PlatformError, match="takes no amount"):
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            C_ORDER, "refund", "CLAIM-39", "KRW", amount=Decimal("5000"),
            lines=(ReturnLine(ITEM_2, 1),)))
    assert cafe24_posts(cafe24_state) == []


def test_cafe24_refusal_from_cafe24_is_a_platform_error(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    cafe24_state.orders[C_ORDER]["items"][0]["claim_quantity"] = 2  # claimed elsewhere already
    with pytest.raises(PlatformError, match=f"Cafe24 refused the return of order {C_ORDER}.*422"
                       ) as caught:
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            C_ORDER, "return", "CLAIM-40", "KRW", lines=(ReturnLine(ITEM_1, 1),)))
    assert not isinstance(caught.value, PlatformUnavailableError)


@pytest.mark.parametrize(("lines", "message"), [
    ((ReturnLine(f"{C_ORDER}-09", 1),), "has no item"),
    ((ReturnLine(ITEM_2, 2),), "only 1 ordered"),
])
def test_cafe24_lines_are_checked_before_the_call(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str,
        lines: tuple[ReturnLine, ...], message: str) -> None:
    with pytest.raises(PlatformError, match=message):
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            C_ORDER, "return", "CLAIM-41", "KRW", lines=lines))
    assert cafe24_posts(cafe24_state) == []


def test_cafe24_unshipped_items_are_not_returned(
        cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState, cafe24_url: str) -> None:
    cafe24_state.orders["20240305-0000022"] = make_order("20240305-0000022")  # items N10
    with pytest.raises(PlatformError, match="can be returned"):
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            "20240305-0000022", "return", "CLAIM-42", "KRW"))


def test_cafe24_unknown_order_is_refused(cafe24: Cafe24Adapter, cafe24_state: Cafe24ServerState,
                                         cafe24_url: str) -> None:
    with pytest.raises(PlatformError, match="no order 20240101-0000001") as caught:
        cafe24.settle_claim(cafe24_shop(cafe24_url), SettlementRequest(
            "20240101-0000001", "refund", "CLAIM-43", "KRW", amount=Decimal("1000")))
    assert not isinstance(caught.value, PlatformUnavailableError)
    assert cafe24_posts(cafe24_state) == []


# ==================================================================================================
# WooCommerce: POST /wp-json/wc/v3/orders/{id}/refunds
# ==================================================================================================


@pytest.fixture
def site() -> FakeWooCommerce:
    site = FakeWooCommerce()
    # total 57.50 EUR: line 411 is 2 × 25.00, shipping 7.50
    site.add_orders(make_woo_order(41, status="completed"))
    return site


@pytest.fixture
def woo_url(site: FakeWooCommerce):
    with serve(site) as url:
        yield url


def woo_shop(url: str, site: FakeWooCommerce, **settings: str) -> ShopContext:
    return ShopContext(shop_id=3, domain=url, settings=settings,
                       credentials={"consumer_key": site.consumer_key,
                                    "consumer_secret": site.consumer_secret})


def woo_posts(site: FakeWooCommerce) -> list[dict]:
    return [r for r in site.requests if r["method"] == "POST"]


def test_woocommerce_refund_of_an_amount(site: FakeWooCommerce, woo_url: str) -> None:
    result = WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
        "41", "refund", "CLAIM-51", "EUR", amount=Decimal("20.00"), reason="buyback"))

    (refund,) = site.refunds[41]
    assert result == SettlementResult(action="refund", platform_id=str(refund["id"]),
                                      status="created", amount=Decimal("20.00"),
                                      detail=result.detail)
    assert "20.00 EUR" in result.detail and "payment gateway" in result.detail
    (post,) = woo_posts(site)
    assert post["path"] == "/wp-json/wc/v3/orders/41/refunds"
    assert post["json"] == {"amount": "20.00", "reason": "CLAIM-51: buyback", "api_refund": True,
                            "api_restock": False, "line_items": [],
                            "meta_data": [{"key": "ccms_reference", "value": "CLAIM-51"}]}
    assert site.orders[41]["refunds"] == [{"id": refund["id"], "reason": "CLAIM-51: buyback",
                                           "total": "-20.00"}]
    assert site.restocked == {}


def test_woocommerce_return_is_a_refund_of_the_lines_with_restock(site: FakeWooCommerce,
                                                                   woo_url: str) -> None:
    result = WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
        "41", "return", "CLAIM-52", "EUR", lines=(ReturnLine("411", 1),), reason="free return"))

    assert (result.action, result.status, result.amount) == ("refund", "created", Decimal("25.00"))
    assert "no returns" in result.detail and "restocked" in result.detail
    (post,) = woo_posts(site)
    assert post["json"]["line_items"] == [{"id": 411, "quantity": 1, "refund_total": "25.00"}]
    assert (post["json"]["amount"], post["json"]["api_restock"]) == ("25.00", True)
    assert site.restocked == {502: 1}


def test_woocommerce_refund_of_lines_shares_their_taxes(site: FakeWooCommerce, woo_url: str) -> None:
    site.add_orders(make_woo_order(42, total="60.00", line_items=[
        {"id": 421, "name": "Mug", "product_id": 601, "variation_id": 0, "quantity": 2,
         "subtotal": "50.00", "subtotal_tax": "10.00", "total": "50.00", "total_tax": "10.00",
         "taxes": [{"id": 3, "total": "10.00", "subtotal": "10.00"}], "sku": "MUG", "price": 25}]))
    result = WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
        "42", "refund", "CLAIM-53", "EUR", lines=(ReturnLine("421", 1),), restock=True))
    assert result.amount == Decimal("30.00")
    (post,) = woo_posts(site)
    assert post["json"]["line_items"] == [{"id": 421, "quantity": 1, "refund_total": "25.00",
                                           "refund_tax": [{"id": 3, "refund_total": "5.00"}]}]
    assert post["json"]["api_restock"] is True and site.restocked == {601: 1}


def test_woocommerce_amounts_in_krw_have_no_minor_unit(site: FakeWooCommerce, woo_url: str) -> None:
    site.price_decimals = 0
    site.add_orders(make_woo_order(43, currency="KRW", total="30000", line_items=[
        {"id": 431, "name": "Tee", "product_id": 701, "variation_id": 0, "quantity": 2,
         "subtotal": "30000", "subtotal_tax": "0", "total": "30000", "total_tax": "0", "taxes": [],
         "sku": "TEE", "price": 15000}]))
    result = WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
        "43", "refund", "CLAIM-54", "KRW", amount=Decimal("15000")))
    assert result.amount == Decimal("15000")
    assert woo_posts(site)[0]["json"]["amount"] == "15000"


def test_woocommerce_second_call_with_the_same_reference_creates_nothing(
        site: FakeWooCommerce, woo_url: str) -> None:
    adapter, shop = WooCommerceAdapter(), woo_shop(woo_url, site)
    request = SettlementRequest("41", "return", "CLAIM-55", "EUR", lines=(ReturnLine("411", 1),))
    first = adapter.settle_claim(shop, request)
    site.requests.clear()
    again = adapter.settle_claim(shop, request)
    assert (again.action, again.platform_id, again.status, again.amount) == (
        "refund", first.platform_id, "already_existed", Decimal("25.00"))
    assert woo_posts(site) == [] and len(site.refunds[41]) == 1


def test_woocommerce_reference_is_found_in_the_meta_data_too(site: FakeWooCommerce,
                                                             woo_url: str) -> None:
    adapter, shop = WooCommerceAdapter(), woo_shop(woo_url, site)
    adapter.settle_claim(shop, SettlementRequest("41", "refund", "CLAIM-56", "EUR",
                                                 amount=Decimal("1.00")))
    site.refunds[41][0]["reason"] = "edited by the merchant"
    again = adapter.settle_claim(shop, SettlementRequest("41", "refund", "CLAIM-56", "EUR",
                                                         amount=Decimal("1.00")))
    assert again.status == "already_existed" and len(site.refunds[41]) == 1


def test_woocommerce_rate_limit_storm_then_success(site: FakeWooCommerce, woo_url: str) -> None:
    site.fail_next(429, times=2, retry_after="0")
    result = WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
        "41", "refund", "CLAIM-57", "EUR", amount=Decimal("5.00")))
    assert result.status == "created" and len(site.refunds[41]) == 1
    assert len(site.requests) == 2 + 3  # two throttled, then order, refunds, POST


@pytest.mark.parametrize("status", [500, 502, 503])
def test_woocommerce_persistent_server_errors_are_unavailable(site: FakeWooCommerce, woo_url: str,
                                                              status: int) -> None:
    site.fail_next(status, times=10)
    with pytest.raises(PlatformUnavailableError, match=str(status)):
        WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
            "41", "refund", "CLAIM-58", "EUR", amount=Decimal("5.00")))
    assert len(site.requests) == 1 and 41 not in site.refunds


def test_woocommerce_amount_above_refundable_is_refused(site: FakeWooCommerce, woo_url: str) -> None:
    adapter, shop = WooCommerceAdapter(), woo_shop(woo_url, site)
    adapter.settle_claim(shop, SettlementRequest("41", "refund", "CLAIM-59", "EUR",
                                                 amount=Decimal("40.00")))
    with pytest.raises(PlatformError, match="20.00 EUR is more than the 17.50 EUR still refundable"
                       ) as caught:
        adapter.settle_claim(shop, SettlementRequest("41", "refund", "CLAIM-60", "EUR",
                                                     amount=Decimal("20.00")))
    assert not isinstance(caught.value, PlatformUnavailableError)
    assert len(woo_posts(site)) == 1


def test_woocommerce_refusal_sent_as_500_is_a_platform_error(site: FakeWooCommerce,
                                                             woo_url: str) -> None:
    """WooCommerce answers wc_create_refund's refusals with HTTP 500: they are not outages."""
    site.gateway_refunds = False
    with pytest.raises(PlatformError, match="does not support automatic refunds") as caught:
        WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
            "41", "refund", "CLAIM-61", "EUR", amount=Decimal("5.00")))
    assert not isinstance(caught.value, PlatformUnavailableError)
    # a manual refund (the shop setting) goes through
    result = WooCommerceAdapter().settle_claim(
        woo_shop(woo_url, site, woocommerce_api_refund="false"),
        SettlementRequest("41", "refund", "CLAIM-61", "EUR", amount=Decimal("5.00")))
    assert result.status == "created" and woo_posts(site)[-1]["json"]["api_refund"] is False
    assert "manual refund" in result.detail
    # an amount too high that slipped past the check (a refund made meanwhile) is refused as well
    with WooCommerceClient(woo_url, site.consumer_key, site.consumer_secret) as client:
        with pytest.raises(PlatformError, match="Invalid refund amount") as caught:
            client.call("POST", "orders/41/refunds", json_body={"amount": "999.00",
                                                                "api_refund": False})
    assert not isinstance(caught.value, PlatformUnavailableError)


@pytest.mark.parametrize("order_id", ["999", "abc"])
def test_woocommerce_unknown_order_is_refused(site: FakeWooCommerce, woo_url: str,
                                              order_id: str) -> None:
    with pytest.raises(PlatformError, match=order_id) as caught:
        WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
            order_id, "refund", "CLAIM-62", "EUR", amount=Decimal("5.00")))
    assert not isinstance(caught.value, PlatformUnavailableError)
    assert woo_posts(site) == []


def test_woocommerce_unknown_line_is_refused(site: FakeWooCommerce, woo_url: str) -> None:
    with pytest.raises(PlatformError, match="no line 999"):
        WooCommerceAdapter().settle_claim(woo_shop(woo_url, site), SettlementRequest(
            "41", "return", "CLAIM-63", "EUR", lines=(ReturnLine("999", 1),)))
