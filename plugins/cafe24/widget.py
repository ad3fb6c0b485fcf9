"""Putting the contact widget's loader on every page of a Cafe24 mall: the ScriptTags API.

What Cafe24 documents (Admin API, "Scripttags"; scope ``mall.write_application``):

* ``GET /api/v2/admin/scripttags?shop_no=N`` → ``{"scripttags": [{"shop_no", "script_no", "client_id",
  "src", "display_location", "exclude_path", "skin_no", "integrity", "created_date", "updated_date"}]}``;
* ``POST /api/v2/admin/scripttags`` with ``{"shop_no": N, "request": {"src", "display_location"}}`` →
  ``{"scripttag": {...}}``; ``display_location: ["all"]`` puts the script on every page;
* ``PUT /api/v2/admin/scripttags/{script_no}`` with the same shape changes it;
* script tags belong to the app (``client_id``) that created them.

A script tag is only a ``src``, so the widget key travels in its query: ``loader.js?shop_key=<key>``.
:func:`inject_widget` is idempotent: it finds our tag by the loader's path first, creates one only when
there is none, and updates it when its ``src`` or locations changed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ccms_addon.platforms import PlatformError, PlatformUnavailableError, WidgetInjection

from .client import Cafe24Client

SCRIPTTAGS_PATH = "/api/v2/admin/scripttags"
#: every page of the mall
DISPLAY_LOCATION = ["all"]
SHOP_KEY_PARAM = "shop_key"


def script_tag_src(loader_url: str, widget_key: str) -> str:
    """``loader_url`` with ``?shop_key=<widget_key>`` (any other query kept)."""
    parts = urlsplit(loader_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != SHOP_KEY_PARAM]
    query.append((SHOP_KEY_PARAM, widget_key))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def is_our_script_tag(tag: dict[str, Any], loader_url: str, client_id: str | None) -> bool:
    """Our loader (same path, any host or key) and, when we know it, installed by our app."""
    src = str(tag.get("src") or "")
    if not src or urlsplit(src).path != urlsplit(loader_url).path:
        return False
    return not client_id or not tag.get("client_id") or tag.get("client_id") == client_id


def inject_widget(client: Cafe24Client, *, shop_no: str, loader_url: str, widget_key: str,
                  client_id: str | None = None) -> WidgetInjection:
    """Make the widget load on every page of the mall's shop ``shop_no`` (see the module docstring)."""
    if not widget_key or not loader_url:
        raise PlatformError("a widget key and a loader URL are needed to inject the widget")
    if not str(shop_no).isdigit():
        raise PlatformError(f"Cafe24 shop_no must be a number, not {shop_no!r}")
    src = script_tag_src(loader_url, widget_key)
    answer = client.get(SCRIPTTAGS_PATH, {"shop_no": shop_no})
    tags = answer.get("scripttags") if isinstance(answer, dict) else None
    if not isinstance(tags, list):
        raise PlatformUnavailableError("Cafe24 scripttags answer has no 'scripttags' list")
    ours = [t for t in tags if isinstance(t, dict) and is_our_script_tag(t, loader_url, client_id)]
    ours.sort(key=lambda t: t.get("src") != src)  # keep one already right, if any
    for extra in ours[1:]:
        client.delete(f"{SCRIPTTAGS_PATH}/{quote(str(extra.get('script_no')), safe='')}",
                      {"shop_no": shop_no})
    request = {"src": src, "display_location": DISPLAY_LOCATION}
    if not ours:
        tag = _scripttag(client.post(SCRIPTTAGS_PATH, {"shop_no": int(shop_no), "request": request}))
    elif ours[0].get("src") != src or list(ours[0].get("display_location") or []) != DISPLAY_LOCATION:
        script_no = quote(str(ours[0].get("script_no")), safe="")
        tag = _scripttag(client.put(f"{SCRIPTTAGS_PATH}/{script_no}",
                                    {"shop_no": int(shop_no), "request": request}))
    else:
        tag = ours[0]
    return WidgetInjection(
        method="script_tag", reference=str(tag.get("script_no", "")),
        detail="The contact widget is installed on every page of your Cafe24 shop "
               f"(shop no. {shop_no}) through a script tag. Nothing else to do.")


def _scripttag(answer: Any) -> dict[str, Any]:
    tag = answer.get("scripttag") if isinstance(answer, dict) else None
    if not isinstance(tag, dict) or not tag.get("script_no"):
        raise PlatformUnavailableError("Cafe24 scripttags answered without a 'scripttag'")
    return tag
