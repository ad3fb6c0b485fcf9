"""The products of a product category, for guarantees that name collections.

WooCommerce's REST API has no collections; a product category plays the part:
``GET /wp-json/wc/v3/products/categories/{id}`` for its name (404 ``woocommerce_rest_term_invalid``
when there is none), then ``GET /wp-json/wc/v3/products?category={id}`` page by page
(``X-WP-TotalPages``), asking only for the ids (``_fields=id``).
"""

from __future__ import annotations

from ccms_addon.platforms import CollectionNotFoundError, CollectionPage, PayloadInvalidError

from .client import MAX_PER_PAGE, WooCommerceClient, wp_total_pages


def list_collection_products(client: WooCommerceClient, category_id: str,
                             cursor: str | None) -> CollectionPage:
    page = int(cursor) if cursor and cursor.isdigit() else 1
    title = None
    if page == 1:
        category = client.call("GET", f"products/categories/{category_id}", missing_ok=True)
        if not isinstance(category, dict):
            raise CollectionNotFoundError(f"WooCommerce has no product category {category_id}")
        title = str(category.get("name") or "") or None
    response = client.send("GET", "products", params={
        "category": category_id, "per_page": MAX_PER_PAGE, "page": page, "_fields": "id",
        "orderby": "id", "order": "asc"})
    body = client.decode("products", response)
    if not isinstance(body, list):
        raise PayloadInvalidError("WooCommerce products: expected a JSON array")
    ids = tuple(str(item["id"]) for item in body if isinstance(item, dict) and "id" in item)
    more = page < wp_total_pages(response)
    return CollectionPage(product_ids=ids, title=title, next_cursor=str(page + 1) if more else None)
