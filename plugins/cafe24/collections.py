"""The products of a category, for guarantees that name collections.

Cafe24 files products in categories (분류): ``GET /api/v2/admin/categories/{category_no}`` gives
its name (404 when there is none; scope ``mall.read_category``), then
``GET /api/v2/admin/categories/{category_no}/products?display_group=1`` lists the products shown in
it (the ordinary display group; scope ``mall.read_product``). That listing has no offset: one call
with ``limit`` up to 50,000 returns the whole category, so there is one page.
"""

from __future__ import annotations

from ccms_addon.platforms import CollectionNotFoundError, CollectionPage, PayloadInvalidError

from .client import Cafe24Client

#: the listing's largest ``limit``
CATEGORY_PRODUCTS_LIMIT = 50000
#: the ordinary display of a category (2 and 3 are its "recommended" and "new" sections)
DISPLAY_GROUP = 1


def list_collection_products(client: Cafe24Client, category_no: str, shop_no: str) -> CollectionPage:
    if not category_no.isdigit():
        raise CollectionNotFoundError(f"a Cafe24 category number is digits, not {category_no!r}")
    body = client.get(f"/api/v2/admin/categories/{category_no}", {"shop_no": shop_no})
    category = body.get("category") if isinstance(body, dict) else None
    if not isinstance(category, dict):
        raise CollectionNotFoundError(f"Cafe24 has no category {category_no}")
    listing = client.get(f"/api/v2/admin/categories/{category_no}/products",
                         {"shop_no": shop_no, "display_group": str(DISPLAY_GROUP),
                          "limit": str(CATEGORY_PRODUCTS_LIMIT)})
    products = listing.get("products") if isinstance(listing, dict) else None
    if not isinstance(products, list):
        raise PayloadInvalidError(f"Cafe24 categories/{category_no}/products: no products array")
    ids = tuple(str(p["product_no"]) for p in products
                if isinstance(p, dict) and p.get("product_no") is not None)
    return CollectionPage(product_ids=ids, title=category.get("category_name"), next_cursor=None)
