"""The built-in WooCommerce plugin.

It provides one platform adapter, ``woocommerce`` (webhooks at ``/webhooks/woocommerce``), registered
through the ``ccms_addon`` entry-point group exactly as a third-party plugin would be. A WooCommerce shop
is identified by its site URL (see :func:`canonical_site_url`), verifies deliveries with the secret of
its webhooks, and is read through the REST API v3 with a consumer key and secret.
"""

from ccms_addon import hookimpl

from .adapter import WooCommerceAdapter, canonical_site_url

__all__ = ["WooCommerceAdapter", "canonical_site_url", "register_platforms"]


@hookimpl
def register_platforms() -> list[WooCommerceAdapter]:
    return [WooCommerceAdapter()]
