"""The Shopify plugin: registers :class:`ShopifyAdapter` as the ``shopify`` platform.

It is found through the ``ccms_addon`` entry-point group (``shopify = ccms_addon.plugins.shopify``),
exactly as a third-party platform plugin would be. The adapter verifies Shopify's HMAC-signed webhooks
(``/webhooks/shopify``), turns the order, refund, customer, fulfillment, uninstall and mandatory privacy
topics into canonical events, and fetches orders and customers from the REST Admin API. Settings come
from ``CCMS_SHOPIFY_*`` (``api_secret``, ``api_secret_previous``); per shop, ``api_base_url`` and
``api_version`` may override where and which Admin API version is called.
"""

from __future__ import annotations

from ccms_addon import hookimpl

from .adapter import ShopifyAdapter

__all__ = ["ShopifyAdapter", "register_platforms"]


@hookimpl
def register_platforms() -> list[ShopifyAdapter]:
    return [ShopifyAdapter()]
