"""``order_action`` of the three adapters on their loopback imitations: the documented calls,
the reference written into the platform record and found again, and the refusals made before
any call."""

from __future__ import annotations

import pytest

from ccms_addon.platforms import (OrderActionRequest, PlatformAdapter, PlatformError, ReturnLine,
                                  ShopContext)
from ccms_addon.plugin_manager import get_plugin_manager, platform_registry
from ccms_addon.plugins.cafe24 import Cafe24Adapter
from ccms_addon.plugins.shopify import ShopifyAdapter
from ccms_addon.plugins.woocommerce import WooCommerceAdapter
from tests.voc_order_actions.conftest import (CAFE24_ITEM_1, CAFE24_ORDER, SHOPIFY_ORDER,
                                              WOO_ORDER)


def context(platform) -> ShopContext:
    return ShopContext(shop_id=1, domain=platform.domain, credentials=platform.credentials,
                       settings=platform.settings)


def test_every_built_in_adapter_implements_order_action():
    registry = platform_registry(get_plugin_manager())
    for name in ("shopify", "cafe24", "woocommerce"):
        assert isinstance(registry[name], PlatformAdapter)
        assert callable(registry[name].order_action)


@pytest.mark.parametrize(("request_", "message"), [
    (OrderActionRequest("1", "exchange", "VOC-2026-000001-A1"), "unknown order action"),
    (OrderActionRequest("1", "cancel", " "), "reference"),
    (OrderActionRequest("1", "cancel", "VOC-2026-000001-A1", lines=(ReturnLine("2", 1),)),
     "whole order"),
    (OrderActionRequest("1", "resend", "VOC-2026-000001-A1", lines=(ReturnLine("2", 0),)),
     "positive"),
])
def test_requests_no_platform_could_satisfy_are_refused_before_any_call(request_, message):
    with pytest.raises(PlatformError, match=message):
        request_.check()


def graphql(server, root_field: str) -> list[dict]:
    return [r["json"] for r in server.requests if r["path"].endswith("/graphql.json")
            and r["json"] and f"{root_field}(" in r["json"]["query"]]


def test_shopify_cancel_on_a_version_before_refund_method(platform_for):
    platform = platform_for("shopify", False)
    shop = context(platform)
    shop = ShopContext(shop.shop_id, shop.domain, shop.credentials,
                       {**shop.settings, "api_version": "2025-04"})
    result = ShopifyAdapter().order_action(shop, OrderActionRequest(
        str(SHOPIFY_ORDER), "cancel", "VOC-2026-000001-A1", reason="duplicate", refund=False,
        notify_customer=False))

    assert (result.action, result.status, result.platform_id) == (
        "cancel", "requested", str(SHOPIFY_ORDER))
    (mutation,) = graphql(platform.server, "orderCancel")
    assert mutation["variables"] == {
        "orderId": f"gid://shopify/Order/{SHOPIFY_ORDER}", "reason": "CUSTOMER", "refund": False,
        "restock": True, "notifyCustomer": False, "staffNote": "VOC-2026-000001-A1: duplicate"}
    order = platform.server.state.settlement.orders[str(SHOPIFY_ORDER)]
    assert order.cancelled_at and order.refunds == []
    again = ShopifyAdapter().order_action(shop, OrderActionRequest(
        str(SHOPIFY_ORDER), "cancel", "VOC-2026-000001-A1"))
    assert again.status == "already_existed" and len(graphql(platform.server, "orderCancel")) == 1


def test_shopify_completes_a_replacement_draft_left_open(platform_for):
    """The job died between draftOrderCreate and draftOrderComplete."""
    platform = platform_for("shopify", True)
    fake = platform.server.state.settlement
    from tests.platform_servers.shopify_order_actions import _draft_create
    _draft_create(fake, {"lineItems": [{"variantId": "gid://shopify/ProductVariant/4401",
                                        "quantity": 1}],
                         "tags": ["VOC-2026-000001-A1", "ccms-replacement"]})

    result = ShopifyAdapter().order_action(context(platform), OrderActionRequest(
        str(SHOPIFY_ORDER), "resend", "VOC-2026-000001-A1"))

    assert result.status == "created" and len(fake.draft_orders) == 1
    (placed,) = fake.placed_orders
    assert result.platform_id == placed["id"].rsplit("/", 1)[1]
    assert graphql(platform.server, "draftOrderCreate") == []
    other = ShopifyAdapter().order_action(context(platform), OrderActionRequest(
        str(SHOPIFY_ORDER), "resend", "VOC-2026-000001-A12"))  # a different action's reference
    assert other.status == "created" and len(fake.placed_orders) == 2


def test_shopify_resend_of_a_line_the_order_lacks_is_refused(platform_for):
    platform = platform_for("shopify", True)
    with pytest.raises(PlatformError, match="no line 999"):
        ShopifyAdapter().order_action(context(platform), OrderActionRequest(
            str(SHOPIFY_ORDER), "resend", "VOC-2026-000001-A1", lines=(ReturnLine("999", 1),)))
    assert graphql(platform.server, "draftOrderCreate") == []


def test_cafe24_resend_adopts_the_exchange_an_earlier_attempt_made(platform_for):
    """The exchange was made but its memo was not written (the job died in between)."""
    platform = platform_for("cafe24", True)
    state = platform.server
    adapter = Cafe24Adapter(timeout=(1.0, 2.0), sleep=lambda _: None)
    request = OrderActionRequest(CAFE24_ORDER, "resend", "VOC-2026-000001-A3",
                                 lines=(ReturnLine(CAFE24_ITEM_1, 2),), reason="lost")
    first = adapter.order_action(context(platform), request)
    state.memos[CAFE24_ORDER].pop()  # the memo naming the exchange never got written

    again = adapter.order_action(context(platform), request)

    assert (again.status, again.platform_id) == ("already_existed", first.platform_id)
    assert len(state.exchanges[CAFE24_ORDER]) == 1
    contents = [m["content"] for m in state.memos[CAFE24_ORDER]]
    assert contents == ["VOC-2026-000001-A3 · resend requested: lost",
                        f"VOC-2026-000001-A3 · exchange {first.platform_id}: lost"]
    (exchange,) = state.exchanges[CAFE24_ORDER]
    assert exchange["same_product"] == "T" and exchange["status"] == "accepted"


def test_cafe24_cancel_of_shipped_items_is_refused_before_any_write(platform_for):
    platform = platform_for("cafe24", True)
    adapter = Cafe24Adapter(timeout=(1.0, 2.0), sleep=lambda _: None)
    with pytest.raises(PlatformError, match="shipped items"):
        adapter.order_action(context(platform), OrderActionRequest(
            CAFE24_ORDER, "cancel", "VOC-2026-000001-A1"))
    assert [c for c in platform.server.calls if c["method"] == "POST"] == []


def test_cafe24_refusal_is_named(platform_for):
    platform = platform_for("cafe24", True)
    state = platform.server
    state.orders[CAFE24_ORDER]["items"][0]["order_status"] = "N10"  # one unshipped item
    state.orders[CAFE24_ORDER]["items"][1]["order_status"] = "N10"
    state.orders[CAFE24_ORDER]["items"][0]["quantity"] = 0  # …that Cafe24 will refuse
    state.orders[CAFE24_ORDER]["items"][1]["quantity"] = 0
    adapter = Cafe24Adapter(timeout=(1.0, 2.0), sleep=lambda _: None)
    with pytest.raises(PlatformError, match="no item left to cancel"):
        adapter.order_action(context(platform), OrderActionRequest(
            CAFE24_ORDER, "cancel", "VOC-2026-000001-A1"))


def test_woocommerce_cancel_without_restock_is_refused_before_any_call(platform_for):
    platform = platform_for("woocommerce", False)
    with pytest.raises(PlatformError, match="back in stock itself"):
        WooCommerceAdapter().order_action(context(platform), OrderActionRequest(
            str(WOO_ORDER), "cancel", "VOC-2026-000001-A1", restock=False))
    assert platform.server.requests == []


def test_woocommerce_replacement_is_found_among_the_orders_children(platform_for):
    platform = platform_for("woocommerce", True)
    site = platform.server
    request = OrderActionRequest(str(WOO_ORDER), "resend", "VOC-2026-000001-A2",
                                 reason="parcel lost")
    made = WooCommerceAdapter().order_action(context(platform), request)

    replacement = site.orders[int(made.platform_id)]
    assert replacement["parent_id"] == WOO_ORDER and replacement["total"] == "0.00"
    assert replacement["status"] == "processing" and replacement["date_paid"]
    assert replacement["shipping"]["city"] == "Porto"
    assert [(l["product_id"], l["variation_id"], l["quantity"])
            for l in replacement["line_items"]] == [(501, 502, 2)]

    again = WooCommerceAdapter().order_action(context(platform), request)
    assert (again.status, again.platform_id) == ("already_existed", made.platform_id)
    assert site.created_orders == [int(made.platform_id)]
    listing = [r for r in site.requests if r["method"] == "GET" and r["path"].endswith("/orders")]
    assert listing and all(r["args"]["parent"] == str(WOO_ORDER) for r in listing)


def test_woocommerce_resend_of_an_unshipped_order_is_refused(platform_for):
    platform = platform_for("woocommerce", False)
    with pytest.raises(PlatformError, match="not completed"):
        WooCommerceAdapter().order_action(context(platform), OrderActionRequest(
            str(WOO_ORDER), "resend", "VOC-2026-000001-A1"))
    assert platform.server.created_orders == []
