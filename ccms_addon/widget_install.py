"""Putting the contact widget on a shop's storefront: what ``ccms-addon widget install --shop ID`` runs
(and the install flows, right after a shop is registered).

The platform work is the adapter's ``inject_widget`` (a theme app extension or a script tag on Shopify,
a script tag on Cafe24, the WordPress plugin on WooCommerce); this module loads the shop, hands the
adapter the shop's decrypted credentials, the loader's public URL and the shop's widget key, and keeps
the answer in ``Shop.settings["widget_injection"]`` so the dashboard can show what the merchant still
has to do. Calling it again is safe: the adapters are idempotent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ccms_addon.config import Settings
from ccms_addon.platforms import WidgetInjection
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import Shop, ShopStatus

#: the loader's path under ``CCMS_PUBLIC_URL`` (the URL merchants' pages load)
LOADER_PATH = "/widget/v1/loader.js"
#: the key of ``Shop.settings`` the result is kept under
SETTINGS_KEY = "widget_injection"
#: the adapter setting naming where a download for the merchant (the WordPress plugin) is written


class WidgetInstallError(RuntimeError):
    """The widget cannot be installed for this shop (unknown, uninstalled, or no adapter)."""


class ShopNotFoundError(WidgetInstallError, LookupError):
    """No shop has this id."""


def loader_url(settings: Settings) -> str:
    """The loader's absolute URL: ``{CCMS_PUBLIC_URL}/widget/v1/loader.js``."""
    return f"{settings.public_url.rstrip('/')}{LOADER_PATH}"


def install_widget(runtime: Runtime, shop_id: int) -> WidgetInjection:
    """Inject the widget into shop ``shop_id``'s storefront and record how it was done.

    Raises :class:`ShopNotFoundError`, :class:`WidgetInstallError` for an uninstalled shop or a
    platform without an adapter, and whatever the adapter raises (``PlatformUnavailableError``:
    try again later; ``PlatformAuthError``: the shop must re-authorise the app; ``PlatformError``).
    Nothing is recorded when it fails.
    """
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise ShopNotFoundError(f"no shop with id {shop_id}")
        if shop.status is not ShopStatus.ACTIVE:
            raise WidgetInstallError(f"shop {shop_id} is {shop.status.value}: reinstall the app first")
        adapter = runtime.platforms.get(shop.platform)
        if adapter is None:
            raise WidgetInstallError(f"no adapter named {shop.platform!r} is installed")
        context = runtime.shop_context(shop, adapter)
        widget_key = shop.widget_key
    url = loader_url(runtime.settings)
    # the platform's API is called outside any transaction
    result = adapter.inject_widget(context, url, widget_key)
    record: dict[str, Any] = {"method": result.method, "reference": result.reference,
                              "detail": result.detail, "loader_url": url,
                              "installed_at": datetime.now(timezone.utc).isoformat()}
    with runtime.db.session() as session:
        shop = session.get(Shop, shop_id, with_for_update=True)
        if shop is not None:
            # a new dict, so the JSON column's change is seen
            shop.settings = {**(shop.settings or {}), SETTINGS_KEY: record}
    return result
