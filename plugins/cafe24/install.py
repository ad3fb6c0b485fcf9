"""Installing the app on a Cafe24 mall (OAuth 2.0 per mall id) and switching its webhooks on: what
:class:`~.adapter.Cafe24Adapter`'s install hooks do.

What Cafe24 documents (Cafe24 REST API, Admin, "Authentication"; developers.cafe24.com
``docs/api/admin/#get-authentication-code``, ``#get-access-token``,
``#get-access-token-using-refresh-token``; and the OAuth 2.0 guide,
``docs-new/docs/guide/oauth2-authentication``):

* the browser is sent to ``GET https://{mall_id}.cafe24api.com/api/v2/oauth/authorize?
  response_type=code&client_id&state&redirect_uri&scope``; Cafe24 answers
  ``302 {redirect_uri}?code={code}&state={state}``; the code is single-use and expires after one
  minute;
* the code is exchanged with ``POST https://{mall_id}.cafe24api.com/api/v2/oauth/token``,
  ``Authorization: Basic base64(client_id:client_secret)``, form-encoded
  ``grant_type=authorization_code&code&redirect_uri``; the answer is ``{"access_token",
  "expires_at", "refresh_token", "refresh_token_expires_at", "client_id", "mall_id", "user_id",
  "scopes", "issued_at", "shop_no"}``;
* an access token lasts 2 hours; ``grant_type=refresh_token&refresh_token`` on the same endpoint
  returns a new access token *and a new refresh token*, the old one being voided; a refresh token
  lasts 2 weeks (the refresh itself lives in :mod:`.client`);
* scopes are ``mall.read_*`` / ``mall.write_*`` per resource, separated by spaces (the OAuth guide):
  orders (``mall.read_order``, ``mall.write_order`` for returns), customers and their private
  data (``mall.read_customer``, ``mall.read_privacy``), the app's script tags and webhook setting
  (``mall.read_application``, ``mall.write_application``), the store (``mall.read_store``),
  products and categories for guarantees that name categories (``mall.read_product``,
  ``mall.read_category``);
* webhooks are not subscribed through the API: the app's events and its webhook URL are chosen in
  the developer center (Apps > the app > Webhook); per mall the API only reads and switches the
  reception on (``GET``/``PUT /api/v2/admin/webhooks/setting``, ``reception_status`` T/F, scopes
  ``mall.read_application`` / ``mall.write_application``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ccms_addon.platforms import (InstallError, InstallRequest, InstallResult, PlatformError,
                                  PlatformUnavailableError, WebhookRegistration)

from .client import AUTHORIZE_PATH, Cafe24Client, oauth_client, token_credentials

#: what the app asks for when ``CCMS_CAFE24_SCOPES`` is unset
DEFAULT_SCOPES = ("mall.read_application mall.write_application mall.read_order mall.write_order "
                  "mall.read_customer mall.read_privacy mall.read_store mall.read_product "
                  "mall.read_category")
#: the events the adapter handles, to choose in the developer center
WEBHOOK_EVENTS = (90023, 90024, 90025, 90026, 90027, 90029, 90032, 90071, 90072, 90073, 90074,
                  90077, 90080, 90147, 90160)
WEBHOOK_SETTING_PATH = "/api/v2/admin/webhooks/setting"


class Cafe24InstallQuerySchema(Schema):
    """What Cafe24 appends to the App URL when a merchant opens (or installs) the app."""

    class Meta:
        unknown = EXCLUDE

    mall_id = fields.String(required=True, validate=validate.Length(min=1, max=255))


class Cafe24CallbackQuerySchema(Schema):
    """Cafe24's redirect back: ``code`` and ``state``, or an OAuth ``error``."""

    class Meta:
        unknown = EXCLUDE

    code = fields.String(validate=validate.Length(min=1, max=512))
    state = fields.String(validate=validate.Length(min=1, max=2000))
    error = fields.String(validate=validate.Length(max=200))
    error_description = fields.String(validate=validate.Length(max=2000))


def _load(schema: Schema, data: Mapping[str, str]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        names = ", ".join(sorted(exc.normalized_messages()))
        raise InstallError(f"The request is missing or has malformed parameters: {names}.",
                           code="invalid_request") from None


def _require_app(settings: Mapping[str, str]) -> None:
    if not settings.get("client_id") or not settings.get("client_secret"):
        raise InstallError("The Cafe24 app is not configured on this server (CCMS_CAFE24_CLIENT_ID "
                           "and CCMS_CAFE24_CLIENT_SECRET).", status=503, code="not_configured")


def requested_scopes(settings: Mapping[str, str]) -> list[str]:
    """``CCMS_CAFE24_SCOPES`` (space or comma separated), else :data:`DEFAULT_SCOPES`."""
    return [s for s in re.split(r"[\s,]+", settings.get("scopes") or DEFAULT_SCOPES) if s]


def install_shop(request: InstallRequest, settings: Mapping[str, str]) -> str:
    """The mall id of ``GET /install/cafe24?mall_id=…`` (a mall id or its cafe24.com address)."""
    _require_app(settings)
    from .adapter import canonical_mall_id
    mall = _load(Cafe24InstallQuerySchema(), request.args())["mall_id"]
    try:
        return canonical_mall_id(mall)
    except ValueError as exc:
        raise InstallError(str(exc), code="foreign_shop") from None


def install_url(shop_domain: str, *, state: str, callback_url: str,
                settings: Mapping[str, str]) -> str:
    """``https://{mall_id}.cafe24api.com/api/v2/oauth/authorize?response_type=code&…``."""
    _require_app(settings)
    base = settings.get("api_base_url", "https://{domain}.cafe24api.com").replace(
        "{domain}", shop_domain).rstrip("/")
    query = urlencode({"response_type": "code", "client_id": settings["client_id"],
                       "state": state, "redirect_uri": callback_url,
                       "scope": " ".join(requested_scopes(settings))})
    return f"{base}{AUTHORIZE_PATH}?{query}"


def complete_install(shop_domain: str, request: InstallRequest, *, callback_url: str,
                     settings: Mapping[str, str]) -> InstallResult:
    """Exchange the code (HTTP Basic client credentials) and check that the token is this mall's
    and this app's."""
    _require_app(settings)
    args = _load(Cafe24CallbackQuerySchema(), request.args())
    if args.get("error"):
        raise InstallError("The app was not authorised in Cafe24 (" + args["error"] + "): open it "
                           "from the Cafe24 admin to try again.", status=403, code="declined")
    if not args.get("code"):
        raise InstallError("Cafe24's redirect carries no authorization code.",
                           code="invalid_request")
    with oauth_client(shop_domain, settings) as client:
        try:
            answer = client.token({"grant_type": "authorization_code", "code": args["code"],
                                   "redirect_uri": callback_url})
        except PlatformUnavailableError:
            raise
        except PlatformError:  # 400 invalid_grant (a used or expired code), 401 client refused
            raise InstallError("Cafe24 refused the authorization code (codes expire after one "
                               "minute and work once): open the app from the Cafe24 admin again.",
                               code="code_refused") from None
    if str(answer.get("mall_id") or shop_domain).lower() != shop_domain:
        raise InstallError("Cafe24 issued the token for another mall than the one being installed.",
                           code="shop_mismatch")
    if answer.get("client_id") and answer["client_id"] != settings["client_id"]:
        raise InstallError("Cafe24 issued the token to another app.", code="client_mismatch")
    shop_no = str(answer.get("shop_no") or "1")
    if not shop_no.isdigit():
        shop_no = "1"
    return InstallResult(shop_domain=shop_domain, credentials=token_credentials(answer),
                         settings={"shop_no": shop_no})


def register_webhooks(client: Cafe24Client, webhook_url: str) -> WebhookRegistration:
    """Switch the mall's webhook reception on (the events themselves are the developer center's)."""
    answer = client.get(WEBHOOK_SETTING_PATH)
    setting = answer.get("webhook") if isinstance(answer, dict) else None
    if not isinstance(setting, dict):
        raise PlatformUnavailableError("Cafe24 webhooks/setting answered without 'webhook'")
    if setting.get("reception_status") != "T":
        client.put(WEBHOOK_SETTING_PATH, {"request": {"reception_status": "T"}})
    return WebhookRegistration(
        topics=tuple(str(e) for e in WEBHOOK_EVENTS),
        detail=("Cafe24 delivers the events chosen for the app in the developer center (Apps > "
                "the app > Webhook): choose " + ", ".join(map(str, WEBHOOK_EVENTS)) + " there, "
                "with the webhook URL " + webhook_url + " and the webhook key set as "
                "CCMS_CAFE24_WEBHOOK_KEY. Webhook reception is switched on for this mall."))


__all__ = ["DEFAULT_SCOPES", "WEBHOOK_EVENTS", "complete_install", "install_shop", "install_url",
           "register_webhooks", "requested_scopes"]
