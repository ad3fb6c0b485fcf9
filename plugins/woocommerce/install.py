"""Connecting a WooCommerce site: the key-generation flow and the REST API webhooks, behind
:class:`~.adapter.WooCommerceAdapter`'s install hooks.

What WooCommerce documents and does (REST API docs, "Authentication: Auth endpoint"; its
implementation ``includes/class-wc-auth.php`` and ``WC_REST_Webhooks_Controller``):

* the merchant's browser is sent to ``{site}/wc-auth/v1/authorize?app_name&scope&user_id&
  return_url&callback_url``; every parameter is required, ``scope`` is ``read``, ``write`` or
  ``read_write``, and the ``callback_url`` must be https. ``user_id`` is the app's own value,
  echoed back: here the core's signed token naming the pending install;
* once a logged-in shop manager approves, the site creates the keys and POSTs
  ``{"key_id", "user_id", "consumer_key", "consumer_secret", "key_permissions"}`` as JSON to the
  ``callback_url``; anything but HTTP 200 makes it delete the key and show an error. Only then is
  the browser sent to ``return_url`` with ``success=1&user_id=…`` (``success=0`` when declined);
* webhooks are created with ``POST /wp-json/wc/v3/webhooks`` (``name``, ``topic``,
  ``delivery_url``, ``secret``, ``status``), listed with ``GET /webhooks``, changed with
  ``PUT /webhooks/<id>`` and removed with ``DELETE /webhooks/<id>?force=true``; each delivery is
  signed with its webhook's ``secret`` (``X-WC-Webhook-Signature``), which the add-on generates
  per shop and stores encrypted.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ccms_addon.platforms import (InstallError, InstallRequest, InstallResult, PayloadInvalidError,
                                  PlatformAuthError, PlatformError, PlatformUnavailableError,
                                  WebhookRegistration, load_json)

from .client import WooCommerceClient

#: the name the site shows the merchant on its approval page and in its key list
DEFAULT_APP_NAME = "CCMS Customer Care"
#: the permission asked for: webhooks and refunds need write, the fetches read
SCOPE = "read_write"
#: the topics subscribed (what the adapter normalizes)
WEBHOOK_TOPICS = ("order.created", "order.updated", "order.restored", "customer.created",
                  "customer.updated", "customer.deleted")
#: the prefix of the add-on's webhook names, by which a moved one is recognised
WEBHOOK_NAME_PREFIX = "CCMS "


class WooCommerceInstallQuerySchema(Schema):
    """``GET /install/woocommerce?site=https://shop.example``."""

    class Meta:
        unknown = EXCLUDE

    site = fields.String(required=True, validate=validate.Length(min=1, max=255))


class WooCommerceKeysPayloadSchema(Schema):
    """What ``WC_Auth::post_consumer_data`` posts to the callback URL."""

    class Meta:
        unknown = EXCLUDE

    key_id = fields.Integer(required=True, strict=False)
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    consumer_key = fields.String(required=True,
                                 validate=validate.Regexp(r"^ck_[A-Za-z0-9]{20,128}$"))
    consumer_secret = fields.String(required=True,
                                    validate=validate.Regexp(r"^cs_[A-Za-z0-9]{20,128}$"))
    key_permissions = fields.String(required=True,
                                    validate=validate.OneOf(("read", "write", "read_write")))


class WooCommerceReturnQuerySchema(Schema):
    """The browser's return: ``success`` (1 approved, 0 declined) and ``user_id``."""

    class Meta:
        unknown = EXCLUDE

    success = fields.String(required=True, validate=validate.OneOf(("0", "1")))
    user_id = fields.String(required=True)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def install_shop(request: InstallRequest, settings: Mapping[str, str]) -> str:
    """The canonical site URL of ``?site=``; https only (the REST API is called with HTTP Basic
    auth, which WooCommerce accepts over https only), unless ``CCMS_WOOCOMMERCE_ALLOW_HTTP`` says
    otherwise for a development site."""
    from .adapter import canonical_site_url
    try:
        site = WooCommerceInstallQuerySchema().load(request.args())["site"]
    except ValidationError:
        raise InstallError("Give your store's address: /install/woocommerce?site=https://your-store",
                           code="invalid_request") from None
    try:
        url = canonical_site_url(site)
    except ValueError as exc:
        raise InstallError(str(exc), code="foreign_shop") from None
    if not url.startswith("https://") and not _truthy(settings.get("allow_http")):
        raise InstallError("Your store must be served over https to connect it.",
                           code="https_required")
    return url


def install_url(shop_domain: str, *, state: str, callback_url: str,
                settings: Mapping[str, str]) -> str:
    """``{site}/wc-auth/v1/authorize`` asking for ``read_write`` keys, with ``user_id`` = ``state``
    and the callback URL as both ``callback_url`` (the keys) and ``return_url`` (the browser)."""
    if not callback_url.startswith("https://"):
        raise InstallError("WooCommerce posts the keys to https URLs only: CCMS_PUBLIC_URL must "
                           "be the add-on's https address.", status=503, code="not_configured")
    query = urlencode({"app_name": settings.get("app_name") or DEFAULT_APP_NAME, "scope": SCOPE,
                       "user_id": state, "return_url": callback_url,
                       "callback_url": callback_url}, quote_via=quote)
    return f"{shop_domain}/wc-auth/v1/authorize?{query}"


def install_state(request: InstallRequest) -> str | None:
    """``user_id``: in the return's query (GET) or in the posted keys (POST)."""
    if request.method == "POST":
        try:
            body = load_json(request.body)
        except PayloadInvalidError:
            return None
        value = body.get("user_id") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None
    return request.arg("user_id")


def complete_install(shop_domain: str, request: InstallRequest, *,
                     settings: Mapping[str, str]) -> InstallResult | None:
    """POST: check the posted keys (read_write, accepted by the site) and make the webhook secret.
    GET: the browser's return, which carries nothing to store (None), or the merchant's refusal."""
    if request.method != "POST":
        try:
            back = WooCommerceReturnQuerySchema().load(request.args())
        except ValidationError:
            raise InstallError("The return from WooCommerce is malformed.",
                               code="invalid_request") from None
        if back["success"] != "1":
            raise InstallError("The connection was declined in WooCommerce. Start again to "
                               "connect the store.", status=403, code="declined")
        return None
    try:
        keys = WooCommerceKeysPayloadSchema().load(load_json(request.body))
    except (PayloadInvalidError, ValidationError, TypeError):
        raise InstallError("The posted keys are not what WooCommerce sends.",
                           code="invalid_payload") from None
    if keys["key_permissions"] != SCOPE:
        raise InstallError(f"The keys are {keys['key_permissions']!r}; the add-on needs "
                           f"{SCOPE!r} keys.", status=403, code="insufficient_permissions")
    with WooCommerceClient(shop_domain, keys["consumer_key"], keys["consumer_secret"]) as client:
        try:
            client.send("GET", "webhooks", params={"per_page": 1})
        except PlatformAuthError:
            raise InstallError("The site does not accept these keys.", status=403,
                               code="keys_refused") from None
        except PlatformUnavailableError:
            raise
        except PlatformError as exc:
            raise InstallError(f"The site refused to list webhooks with these keys ({exc}).",
                               code="keys_refused") from None
    return InstallResult(
        shop_domain=shop_domain,
        credentials={"consumer_key": keys["consumer_key"],
                     "consumer_secret": keys["consumer_secret"], "key_id": keys["key_id"]},
        webhook_secret=secrets.token_urlsafe(32))


def register_webhooks(client: WooCommerceClient, webhook_url: str,
                      webhook_secret: str | None) -> WebhookRegistration:
    """One active webhook per topic of :data:`WEBHOOK_TOPICS`, delivering to ``webhook_url``,
    signed with ``webhook_secret``: an existing one (same topic, same URL, or one of ours that
    points elsewhere) is updated, duplicates are deleted, missing ones created."""
    if not webhook_secret:
        raise PlatformError("WooCommerce webhooks need the shop's webhook secret; reconnect the store")
    existing = client.list_all("webhooks", {})
    for topic in WEBHOOK_TOPICS:
        same = [w for w in existing if w.get("topic") == topic
                and w.get("delivery_url") == webhook_url]
        moved = [w for w in existing if w.get("topic") == topic and w not in same
                 and str(w.get("name") or "").startswith(WEBHOOK_NAME_PREFIX)]
        found = same + moved
        wanted: dict[str, Any] = {"name": WEBHOOK_NAME_PREFIX + topic, "topic": topic,
                                  "delivery_url": webhook_url, "secret": webhook_secret,
                                  "status": "active"}
        if not found:
            client.call("POST", "webhooks", json_body=wanted)
            continue
        client.call("PUT", f"webhooks/{int(found[0]['id'])}", json_body=wanted)
        for extra in found[1:]:
            client.send("DELETE", f"webhooks/{int(extra['id'])}", params={"force": "true"},
                        missing_ok=True)
    return WebhookRegistration(topics=WEBHOOK_TOPICS,
                               detail="Webhooks are active on the site, each signed with the "
                                      "shop's own secret.")


__all__ = ["DEFAULT_APP_NAME", "SCOPE", "WEBHOOK_TOPICS", "complete_install", "install_shop",
           "install_state", "install_url", "register_webhooks"]
