"""Putting the contact widget's loader on a Shopify storefront.

Shopify's App Store requires a theme app extension for storefront code: ours (``extension/``) has one
app embed block, ``blocks/ccms_widget.liquid``, which renders the loader with the widget key it reads
from the app's app-data metafields. An app embed is off until the merchant switches it on in the theme
editor, which an app cannot do for them; until then (and on vintage themes, which have no app embeds)
a ScriptTag created through the Admin API loads the loader. A ScriptTag's ``src`` is all Shopify
renders (no data attributes), so the key travels in its query: ``loader.js?shop_key=<key>``.

:func:`inject_widget` is idempotent: it writes the metafields only when they differ, finds our script
tag by the loader's path before creating one, updates it when the ``src`` changed, and removes it once
the app embed is on so the widget never loads twice.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ccms_addon.platforms import PlatformError, ShopContext, WidgetInjection

from .client import SETTINGS_DATA_KEY, ShopifyAdminClient

#: the app embed block's file name in ``extension/blocks/`` (its handle in deep links)
EMBED_HANDLE = "ccms_widget"
#: the name merchants see in the theme editor (the block schema's ``name``)
EMBED_NAME = "CCMS contact widget"
#: the app-data metafield namespace the block reads (``app.metafields.ccms.*``)
METAFIELD_NAMESPACE = "ccms"
#: the query parameter a script tag's loader URL carries the widget key in
SHOP_KEY_PARAM = "shop_key"

_LEADING_COMMENT = re.compile(r"^\s*/\*.*?\*/", re.S)


def script_tag_src(loader_url: str, widget_key: str) -> str:
    """``loader_url`` with ``?shop_key=<widget_key>`` (any other query kept)."""
    parts = urlsplit(loader_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != SHOP_KEY_PARAM]
    query.append((SHOP_KEY_PARAM, widget_key))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def is_our_script_tag(src: str, loader_url: str) -> bool:
    """True for a script tag loading our loader, whatever host or key it names (script tags are
    scoped to the app that created them, so the path is enough to recognise ours)."""
    return bool(src) and urlsplit(src).path == urlsplit(loader_url).path


def activation_link(shop_domain: str, api_key: str | None) -> str:
    """The theme editor deep link that switches our app embed on in the live theme (the merchant
    then clicks Save): ``https://{shop}/admin/themes/current/editor?context=apps&activateAppId=
    {api_key}/{handle}``. Without the app's API key, the theme editor's App embeds panel."""
    base = f"https://{shop_domain}/admin/themes/current/editor?context=apps"
    return f"{base}&activateAppId={quote(api_key, safe='')}/{EMBED_HANDLE}" if api_key else base


def app_embed_enabled(settings_data: str | None) -> bool:
    """Whether ``config/settings_data.json`` has our app embed block switched on.

    Shopify records app embeds under ``current.blocks`` as ``{"type": "shopify://apps/<app>/blocks/
    <handle>/<uuid>", "disabled": bool}``; ``current`` may name a preset instead, and the file may open
    with a ``/* … */`` comment.
    """
    if not settings_data:
        return False
    try:
        data = json.loads(_LEADING_COMMENT.sub("", settings_data, count=1))
    except ValueError:
        return False
    current: Any = data.get("current") if isinstance(data, dict) else None
    if isinstance(current, str):
        current = (data.get("presets") or {}).get(current)
    blocks = current.get("blocks") if isinstance(current, dict) else None
    if not isinstance(blocks, dict):
        return False
    marker = f"/blocks/{EMBED_HANDLE}/"
    return any(isinstance(block, dict) and marker in str(block.get("type", ""))
               and not block.get("disabled", False) for block in blocks.values())


def inject_widget(shop: ShopContext, loader_url: str, widget_key: str, **client_kwargs: Any
                  ) -> WidgetInjection:
    """Make the widget load on every storefront page of ``shop`` (see the module docstring)."""
    if not widget_key or not loader_url:
        raise PlatformError("a widget key and a loader URL are needed to inject the widget")
    with ShopifyAdminClient.for_shop(shop, **client_kwargs) as client:
        _ensure_metafields(client, {"widget_key": widget_key, "loader_url": loader_url})
        theme = client.main_theme()
        embed_on = theme is not None and app_embed_enabled(
            client.theme_asset(theme["id"], SETTINGS_DATA_KEY))
        ours = [tag for tag in client.script_tags()
                if is_our_script_tag(str(tag.get("src") or ""), loader_url)]
        if embed_on:
            for tag in ours:  # the embed loads the widget: a script tag would load it twice
                client.delete_script_tag(tag["id"])
            return WidgetInjection(
                method="theme_app_extension", reference=f"theme:{theme['id']}",
                detail=f'The "{EMBED_NAME}" app embed is on in your live theme '
                       f'"{theme.get("name", "")}". Nothing else to do.')
        src = script_tag_src(loader_url, widget_key)
        ours.sort(key=lambda tag: tag.get("src") != src)  # keep one already right, if any
        for extra in ours[1:]:
            client.delete_script_tag(extra["id"])
        if not ours:
            tag = client.create_script_tag(src)
        elif ours[0].get("src") != src:
            tag = client.update_script_tag(ours[0]["id"], src)
        else:
            tag = ours[0]
    link = activation_link(shop.domain, shop.settings.get("app_embed_id") or shop.settings.get("api_key"))
    return WidgetInjection(
        method="script_tag", reference=str(tag.get("id", "")),
        detail=f"The contact widget is live on your storefront through a script tag. To finish the "
               f'setup the way Shopify recommends, switch on the "{EMBED_NAME}" app embed: open '
               f"{link} , check that it is on and click Save. The script tag is removed the next "
               f"time the widget is installed, so the widget never loads twice.")


def _ensure_metafields(client: ShopifyAdminClient, wanted: dict[str, str]) -> None:
    """Write the app-data metafields the app embed reads, only those that differ."""
    owner_id, current = client.app_metafields(METAFIELD_NAMESPACE)
    changed = {key: value for key, value in wanted.items() if current.get(key) != value}
    if changed:
        client.set_app_metafields(owner_id, METAFIELD_NAMESPACE, changed)
