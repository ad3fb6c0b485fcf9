"""The products of a collection (custom or smart), for guarantees that name collections.

GraphQL Admin API ``collection(id:)`` with its ``products`` connection, 250 a page, paced by the
same query-cost bucket as the order listing. Order lines carry the product's numeric id, so the
page gives ``legacyResourceId``. Needs the ``read_products`` scope.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ccms_addon.platforms import CollectionNotFoundError, CollectionPage, ShopContext

from .client import ShopifyAdminClient
from .sync import CostPacer, paced_query

#: products a page (the connection's maximum)
PAGE_SIZE = 250
#: what one page costs: the collection, the connection and one point per product
PAGE_COST = PAGE_SIZE + 3

COLLECTION_PRODUCTS_QUERY = """
query CollectionProducts($id: ID!, $first: Int!, $after: String) {
  collection(id: $id) {
    title
    products(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { legacyResourceId }
    }
  }
}
"""


def collection_gid(collection_id: str) -> str:
    return collection_id if collection_id.startswith("gid://") \
        else f"gid://shopify/Collection/{collection_id}"


def list_collection_products(shop: ShopContext, collection_id: str, cursor: str | None, *,
                             sleep: Callable[[float], None] = time.sleep,
                             clock: Callable[[], float] = time.monotonic) -> CollectionPage:
    pacer = CostPacer(shop.domain, sleep=sleep, clock=clock)
    with ShopifyAdminClient.for_shop(shop, sleep=sleep) as client:
        data = paced_query(client, pacer, COLLECTION_PRODUCTS_QUERY,
                           {"id": collection_gid(collection_id), "first": PAGE_SIZE,
                            "after": cursor}, expected_cost=PAGE_COST, sleep=sleep)
    collection = data.get("collection")
    if not isinstance(collection, dict):
        raise CollectionNotFoundError(f"Shopify has no collection {collection_id} in {shop.domain}")
    products = collection.get("products") or {}
    info = products.get("pageInfo") or {}
    ids = tuple(str(node["legacyResourceId"]) for node in products.get("nodes") or ()
                if isinstance(node, dict) and node.get("legacyResourceId") is not None)
    more = bool(info.get("hasNextPage")) and isinstance(info.get("endCursor"), str)
    return CollectionPage(product_ids=ids, title=collection.get("title"),
                          next_cursor=info["endCursor"] if more else None)
