"""What the listings make of the platforms' answers: the same records as the webhooks make."""

from __future__ import annotations

import dataclasses
import json
import pytest

from ccms_addon.platforms import CursorInvalidError, FinancialStatus, FulfillmentStatus
from ccms_addon.plugins.cafe24 import sync as cafe24_sync
from ccms_addon.plugins.shopify import sync as shopify_sync
from ccms_addon.plugins.shopify.adapter import ShopifyAdapter
from ccms_addon.plugins.woocommerce import sync as woo_sync
from tests.platform_servers.shopify_orders import graphql_order_from_rest
from tests.samples import read_sample


@pytest.mark.parametrize("sample", ["orders-create", "orders-updated", "orders-paid",
                                    "orders-cancelled", "orders-fulfilled"])
def test_graphql_order_maps_to_the_record_its_webhook_makes(sample):
    """The backfill (GraphQL ``Order``) and the webhooks (the REST Order) must agree field for
    field, ids included, or the store would hold two versions of one order."""
    body = read_sample("shopify", sample)
    from_webhook = ShopifyAdapter().normalize("orders/updated", body)[0].order
    node = graphql_order_from_rest(json.loads(body))
    from_listing = shopify_sync.order_record(node, node.pop("lineItems"))
    webhook, listing = dataclasses.asdict(from_webhook), dataclasses.asdict(from_listing)
    # the listing knows more than the webhook mapping reads: the shopper's locale and country
    assert listing.pop("locale") == json.loads(body).get("customer_locale")
    assert listing.pop("country_code")
    webhook.pop("locale"), webhook.pop("country_code")
    assert listing == webhook


def test_graphql_statuses():
    node = graphql_order_from_rest(json.loads(read_sample("shopify", "orders-updated")))
    lines = node.pop("lineItems")
    for shown, financial in [("EXPIRED", FinancialStatus.VOIDED),
                             ("PARTIALLY_REFUNDED", FinancialStatus.PARTIALLY_REFUNDED),
                             ("SOMETHING_NEW", FinancialStatus.UNKNOWN)]:
        record = shopify_sync.order_record({**node, "displayFinancialStatus": shown}, lines)
        assert record.financial_status is financial
    for shown, fulfillment in [("PARTIALLY_FULFILLED", FulfillmentStatus.PARTIAL),
                               ("ON_HOLD", FulfillmentStatus.UNFULFILLED),
                               ("RESTOCKED", FulfillmentStatus.RETURNED)]:
        record = shopify_sync.order_record({**node, "displayFulfillmentStatus": shown}, lines)
        assert record.fulfillment_status is fulfillment


@pytest.mark.parametrize("broken", [
    {"legacyResourceId": "not-a-number"},
    {"totalPriceSet": {"shopMoney": {"amount": "1.2.3"}}},
    {"updatedAt": "yesterday"},
])
def test_an_unexpected_graphql_order_is_an_outage_not_a_crash(broken):
    from ccms_addon.platforms import PlatformUnavailableError
    node = graphql_order_from_rest(json.loads(read_sample("shopify", "orders-updated")))
    lines = node.pop("lineItems")
    with pytest.raises(PlatformUnavailableError, match="unexpected order"):
        shopify_sync.order_record({**node, **broken}, lines)


@pytest.mark.parametrize("decode", [shopify_sync.decode_cursor, cafe24_sync.decode_cursor,
                                    woo_sync.decode_cursor])
@pytest.mark.parametrize("cursor", ["", "garbage", "shopify:1:!!!", "cafe24:1:e30",
                                    "woocommerce:1:e30"])
def test_a_cursor_of_another_kind_is_refused(decode, cursor):
    with pytest.raises(CursorInvalidError):
        decode(cursor)


def test_cursors_round_trip():
    state = {"m": "page", "since": "2025-01-01T00:00:00Z", "after": "c1:abc", "first": 10}
    assert shopify_sync.decode_cursor(shopify_sync.encode_cursor(state)) == state
    woo = {"after": "2025-01-01T00:00:00", "page": 2, "read": 100}
    assert woo_sync.decode_cursor(woo_sync.encode_cursor(woo)) == woo
