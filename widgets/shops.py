"""The shop behind a widget key: its storefront origins, its public widget config (built once and
served with a strong ETag) and the per-process directory that caches it.

The directory lives in ``app.extensions[SHOPS_EXTENSION]``, installed when the widget blueprint
(``views.py``) is registered.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from threading import Lock
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import select

from ccms_addon.runtime import Runtime
from ccms_addon.store.models import Shop, ShopStatus
from ccms_addon.programs.service import public_guarantees
from ccms_addon.widgets.schemas import WidgetConfigSchema
from ccms_addon.widgets.settings import LOCALES, widget_settings

log = logging.getLogger(__name__)

#: seconds a shop looked up by widget key is kept in this process
SHOP_CACHE_TTL = 30.0
#: where the shop directory is kept in ``app.extensions``
SHOPS_EXTENSION = "ccms_widget_shops"
_WIDGET_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------------------------------
# Storefront origins
# --------------------------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a URL or an Origin header, lower-cased; None if not http(s)."""
    if url is None:
        return None
    return _origin_of(url)


@lru_cache(maxsize=4096)  # a pure function of one string: Origin headers repeat endlessly
def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit((url or "").strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def platform_origins(platform: str, domain: str) -> set[str]:
    """The storefront origins a platform gives a shop by default (custom domains come from the
    merchant's ``storefront_origins``). Shopify: the myshopify.com domain; WooCommerce: the site
    URL itself; Cafe24: the default domain ``<mall>.cafe24.com``, the ``<mall>.cafe24shop.com``
    form, and the mobile shop ``m.<mall>.cafe24.com``."""
    domain = (domain or "").strip().lower()
    if not domain:
        return set()
    if platform == "shopify":
        found = {origin_of(f"https://{domain}")}
    elif platform == "woocommerce":
        found = {origin_of(domain if "://" in domain else f"https://{domain}")}
    elif platform == "cafe24":
        found = {origin_of(f"https://{domain}.cafe24.com"),
                 origin_of(f"https://{domain}.cafe24shop.com"),
                 origin_of(f"https://m.{domain}.cafe24.com")}
    else:
        found = set()
    return {o for o in found if o}


# --------------------------------------------------------------------------------------------------
# The shop behind a widget key, cached briefly in the process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WidgetShop:
    id: int
    active: bool
    origins: frozenset[str]
    categories: frozenset[str]
    consent_required: bool
    ack_promise_hours: int
    default_locale: str
    config_body: bytes
    #: the same body gzipped once: it is on the shopper's path before any interaction
    config_body_gzip: bytes
    etag: str  # unquoted; strong

    def allows(self, origin: str | None) -> bool:
        return origin_of(origin) in self.origins if origin else False


def strings_url(public_url: str, locale: str) -> str:
    """The strings of the shop's default language, by the content-hashed name the asset build
    wrote to ``static/manifest.json`` (the loader itself knows every locale's file)."""
    from ccms_addon.widgets import assets
    name = f"{locale}.json"
    try:
        manifest = json.loads((assets.STATIC / "manifest.json").read_text("utf-8"))
        name = manifest[name]["file"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("no built strings for %r in the widget's asset manifest", locale)
    return f"{public_url}/widget/v1/assets/{name}"


def _public_config(shop: Shop, settings: dict, public_url: str,
                   programs: list[dict] = ()) -> tuple[dict, str]:
    stored = (shop.settings or {}).get("widget") or {}
    locale = settings["default_locale"]
    if "default_locale" not in stored and (shop.locale or "")[:2].lower() in LOCALES:
        locale = shop.locale[:2].lower()
    hours = dict(settings["hours"])
    if "timezone" not in (stored.get("hours") or {}):
        try:
            ZoneInfo(shop.timezone or "UTC")
            hours["timezone"] = shop.timezone or "UTC"
        except (ValueError, KeyError, OSError):
            pass
    config = dict(
        shop=dict(name=shop.name or shop.domain, default_locale=locale),
        position=settings["position"], offset_bottom=settings["offset_bottom"],
        color=settings["color"], text_color=settings["text_color"], top_bar=settings["top_bar"],
        contact=dict(phone=settings["phone"], email=settings["email"],
                     kakao_channel_url=settings["kakao_channel_url"],
                     chat_url=settings["chat_url"], links=settings["links"]),
        hours=hours, ack_promise_hours=settings["ack_promise_hours"],
        consent_text=settings["consent_text"], categories=settings["categories"],
        programs=list(programs), strings_url=strings_url(public_url, locale))
    return WidgetConfigSchema().dump(config), locale


class ShopDirectory:
    """Widget key → :class:`WidgetShop`. Found shops (installed or not) are cached for
    :data:`SHOP_CACHE_TTL` seconds; unknown keys are not, so a new shop is found at once."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._cache: dict[str, tuple[float, WidgetShop]] = {}
        self._lock = Lock()

    def get(self, widget_key: str) -> WidgetShop | None:
        if not _WIDGET_KEY.match(widget_key or ""):
            return None
        now = time.monotonic()
        hit = self._cache.get(widget_key)
        if hit and hit[0] > now:
            return hit[1]
        with self.runtime.db.session() as session:
            shop = session.scalar(select(Shop).where(Shop.widget_key == widget_key))
            if shop is None:
                return None
            entry = self._entry(shop, public_guarantees(session, shop.id))
        with self._lock:
            self._cache[widget_key] = (now + SHOP_CACHE_TTL, entry)
        return entry

    def forget(self, widget_key: str | None = None) -> None:
        """Drop one cached shop (after its settings changed) or all of them."""
        with self._lock:
            if widget_key is None:
                self._cache.clear()
            else:
                self._cache.pop(widget_key, None)

    def _entry(self, shop: Shop, programs: list[dict]) -> WidgetShop:
        try:
            settings = widget_settings(shop.settings)
        except ValidationError:
            log.error("shop %s has invalid widget settings; serving the defaults", shop.id)
            settings = widget_settings({})
        config, locale = _public_config(shop, settings, self.runtime.settings.public_url,
                                        programs)
        body = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        extra = {origin_of(o) for o in settings["storefront_origins"]}
        return WidgetShop(
            id=shop.id, active=shop.status is ShopStatus.ACTIVE,
            origins=frozenset({o for o in extra if o}
                              | platform_origins(shop.platform, shop.domain)),
            categories=frozenset(c["key"] for c in settings["categories"]),
            consent_required=bool(settings["consent_text"]),
            ack_promise_hours=settings["ack_promise_hours"], default_locale=locale,
            config_body=body, config_body_gzip=gzip.compress(body, 9, mtime=0),
            etag=hashlib.sha256(body).hexdigest()[:32])


def current_runtime() -> Runtime:
    """The app's :class:`Runtime`, inside a request or app context."""
    return current_app.extensions["ccms"]


def current_shops() -> ShopDirectory:
    """The app's shop directory, inside a request or app context."""
    return current_app.extensions[SHOPS_EXTENSION]
