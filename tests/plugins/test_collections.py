"""Each adapter lists the products of a collection the platform's documented way, against its
loopback server: Shopify's GraphQL ``collection.products`` (pages of 250, cost-paced, THROTTLED
retried), WooCommerce's product categories (pages of 100, subcategories included), Cafe24's
category listing (one call); an unknown collection is ``CollectionNotFoundError``."""

from __future__ import annotations

import pytest

from ccms_addon.platforms import CollectionNotFoundError, ShopContext
from ccms_addon.plugins.cafe24 import Cafe24Adapter
from ccms_addon.plugins.shopify import ShopifyAdapter
from ccms_addon.plugins.woocommerce import WooCommerceAdapter
from tests.platform_servers.cafe24 import ACCESS_TOKEN, Cafe24ServerState, running_server
from tests.platform_servers.shopify import ShopifyAdminServer
from tests.platform_servers.woocommerce import FakeWooCommerce, serve

TOKEN = "shpat_collections"
SHOP = "my-shop.myshopify.com"


def read_all(adapter, shop: ShopContext, collection_id: str) -> tuple[list[str], str | None, int]:
    """Every product id, the title, and how many pages it took."""
    ids, title, cursor, pages = [], None, None, 0
    while True:
        page = adapter.list_collection_products(shop, collection_id, cursor=cursor)
        ids += page.product_ids
        title = title or page.title
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return ids, title, pages


def test_shopify_pages_through_a_collection_and_retries_a_throttled_query():
    waits: list[float] = []
    with ShopifyAdminServer(TOKEN) as server:
        products = [str(632910392 + i) for i in range(601)]
        server.add_collection(841564295, "Summer guarantee", products)
        server.state.graphql_throttled = 1
        shop = ShopContext(shop_id=1, domain=SHOP, credentials={"access_token": TOKEN},
                           settings={"api_base_url": server.base_url})
        adapter = ShopifyAdapter(sleep=waits.append)
        ids, title, pages = read_all(adapter, shop, "841564295")
        assert (ids, title, pages) == (products, "Summer guarantee", 3)
        assert waits  # the THROTTLED answer was waited out, not failed
        queries = [r["json"] for r in server.requests if r["path"].endswith("/graphql.json")]
        assert queries[-1]["variables"]["id"] == "gid://shopify/Collection/841564295"
        assert {q["variables"]["first"] for q in queries} == {250}
        # a GraphQL id works as well
        assert read_all(adapter, shop, "gid://shopify/Collection/841564295")[0] == products
        with pytest.raises(CollectionNotFoundError):
            adapter.list_collection_products(shop, "1", cursor=None)


def test_woocommerce_lists_a_category_with_its_subcategories_page_by_page():
    site = FakeWooCommerce()
    site.add_category(15, "Kitchen", list(range(1000, 1230)))
    site.add_category(16, "Knives", [2000, 2001], parent=15)
    site.add_category(17, "Garden", [3000])
    with serve(site) as url:
        shop = ShopContext(shop_id=3, domain=url,
                           credentials={"consumer_key": site.consumer_key,
                                        "consumer_secret": site.consumer_secret})
        ids, title, pages = read_all(WooCommerceAdapter(), shop, "15")
        assert title == "Kitchen" and pages == 3
        assert sorted(ids, key=int) == [str(i) for i in [*range(1000, 1230), 2000, 2001]]
        listing = [r for r in site.requests if r["path"].endswith("/products")]
        assert all(r["args"]["_fields"] == "id" and r["args"]["per_page"] == "100"
                   for r in listing)
        with pytest.raises(CollectionNotFoundError):
            WooCommerceAdapter().list_collection_products(shop, "99", cursor=None)


def test_cafe24_lists_a_category_in_one_call():
    state = Cafe24ServerState()
    state.categories["27"] = {"category_name": "주방용품", "product_nos": ["11", "12", "13"]}
    with running_server(state) as base_url:
        shop = ShopContext(shop_id=7, domain="cafe24bestshop",
                           credentials={"access_token": ACCESS_TOKEN},
                           settings={"api_base_url": base_url, "shop_no": "2"})
        ids, title, pages = read_all(Cafe24Adapter(), shop, "27")
        assert (ids, title, pages) == (["11", "12", "13"], "주방용품", 1)
        assert state.calls[-1]["args"] == {"shop_no": "2", "display_group": "1",
                                           "limit": "50000"}
        for missing in ("28", "kitchen"):
            with pytest.raises(CollectionNotFoundError):
                Cafe24Adapter().list_collection_products(shop, missing, cursor=None)
