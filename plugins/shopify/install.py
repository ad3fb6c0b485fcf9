"""Installing the app on a Shopify shop, its webhook subscriptions, and the embedded admin's session
tokens: what :class:`~.adapter.ShopifyAdapter`'s install hooks do.

What Shopify documents, and this module relies on:

* **Authorization code grant** (shopify.dev, "Implement authorization code grant manually",
  ``docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant``):
  the install request is ``GET {app URL}?hmac=…&shop=…&timestamp=…[&host=…]``; ``hmac`` is the hex
  HMAC-SHA256, keyed with the app's client secret, of the rest of the query string, its parameters
  sorted by name and joined as ``name=value`` with ``&``; ``shop`` must match
  ``[a-zA-Z0-9][a-zA-Z0-9-]*.myshopify.com``. The browser is sent to
  ``https://{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state&grant_options[]``
  (an empty ``grant_options[]`` asks for an offline token); Shopify comes back to the redirect URI
  with ``code``, ``hmac``, ``host``, ``shop``, ``state`` and ``timestamp``, and the code is
  exchanged with ``POST https://{shop}/admin/oauth/access_token`` (``client_id``, ``client_secret``,
  ``code``) for ``{"access_token", "scope"}``; the granted scopes are checked against the requested
  ones. Shopify's own library (Shopify/shopify-app-js ``lib/utils/hmac-validator.ts``) fixes the
  details: values are form-encoded (``URLSearchParams``, a space as ``%20``), a repeated name is
  one value joined with ``,``, and the ``timestamp`` may be 90 seconds off.
* **Expiring offline tokens** (changelog "Offline access tokens now support expiry and refresh",
  2025-12-10; ``…/access-tokens/offline-access-tokens``): with ``expiring=1`` in the code exchange
  the answer adds ``expires_in`` (3600), ``refresh_token`` and ``refresh_token_expires_in``; the
  same endpoint takes ``grant_type=refresh_token`` and replaces the refresh token on every use.
  Public apps must use them (new apps from 2026-04-01, all from 2027-01-01), so
  ``CCMS_SHOPIFY_EXPIRING_TOKENS`` defaults to on; see :mod:`.client` for the refresh.
* **Session tokens** (``docs/apps/build/authentication-authorization/session-tokens``): the embedded
  admin's requests carry a JWT (``Authorization: Bearer …``, or ``id_token`` when Shopify loads
  the app URL) signed HS256 with the client secret, valid one minute; its ``iss`` is
  ``https://{shop}/admin``, ``dest`` ``https://{shop}``, ``aud`` the client id, with ``exp``,
  ``nbf``, ``iat``, ``sub``, ``jti`` and ``sid``. Shopify's library allows 10 s of clock skew.
* **Webhook subscriptions** (GraphQL Admin API ``webhookSubscriptionCreate`` /
  ``webhookSubscriptionUpdate`` with ``WebhookSubscriptionInput.uri``, which replaced
  ``callbackUrl`` — changelog "webhookSubscriptionCreate and webhookSubscriptionUpdate support all
  URI types"; ``webhookSubscriptions { nodes { id topic uri } }``). The mandatory compliance topics
  (``customers/data_request``, ``customers/redact``, ``shop/redact``) cannot be subscribed through
  the API: they are declared in the app's ``shopify.app.toml`` (``compliance_topics``) or the
  Partner Dashboard (``docs/api/webhooks``: "shop-specific subscriptions by the GraphQL Admin API
  to all non-compliance topics").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ccms_addon.platforms import (InstallError, InstallRequest, InstallResult, PlatformError,
                                  PlatformUnavailableError, SessionTokenError, ShopContext,
                                  WebhookRegistration)

from .client import DEFAULT_BASE_URL, ShopifyAdminClient, oauth_client, token_credentials

#: what the app asks for when ``CCMS_SHOPIFY_SCOPES`` is unset: orders and customers (the
#: webhooks and fetches) with ``read_all_orders`` (without it the Admin API shows only the last
#: 60 days, and ``sync orders --since`` could not read history; Shopify grants it to apps that
#: request it in the Partner dashboard), refunds and returns (claims), products (the collections
#: a guarantee names), themes and script tags (the widget)
DEFAULT_SCOPES = ("read_orders,read_all_orders,write_orders,read_customers,read_returns,"
                  "write_returns,read_products,read_themes,write_script_tags")
#: seconds a signed Shopify request's ``timestamp`` may be off (Shopify's library: 90)
HMAC_TIMESTAMP_TOLERANCE = 90
#: seconds of clock skew allowed on a session token's ``exp`` / ``nbf`` (Shopify's library: 10)
SESSION_TOKEN_LEEWAY = 10
#: the shop's permanent domain, as Shopify validates it
SHOP_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
#: where Shopify's admin frames embedded apps
ADMIN_ORIGIN = "https://admin.shopify.com"

#: topic (REST spelling, as deliveries name it) → the GraphQL ``WebhookSubscriptionTopic``
WEBHOOK_TOPICS = {
    "orders/create": "ORDERS_CREATE",
    "orders/updated": "ORDERS_UPDATED",
    "orders/paid": "ORDERS_PAID",
    "orders/cancelled": "ORDERS_CANCELLED",
    "orders/fulfilled": "ORDERS_FULFILLED",
    "refunds/create": "REFUNDS_CREATE",
    "customers/create": "CUSTOMERS_CREATE",
    "customers/update": "CUSTOMERS_UPDATE",
    "app/uninstalled": "APP_UNINSTALLED",
}
#: the mandatory privacy topics, configured in shopify.app.toml / the Partner Dashboard only
COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")

_SUBSCRIPTIONS_QUERY = """
query ccmsWebhookSubscriptions {
  webhookSubscriptions(first: 100) { nodes { id topic uri } }
}
"""
_SUBSCRIPTION_CREATE = """
mutation ccmsWebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!,
                                       $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""
_SUBSCRIPTION_UPDATE = """
mutation ccmsWebhookSubscriptionUpdate($id: ID!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionUpdate(id: $id, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""


# --------------------------------------------------------------------------------------------------
# Inputs (Shopify's query strings: unknown parameters are kept for the HMAC, not validated)
# --------------------------------------------------------------------------------------------------


class ShopifyInstallQuerySchema(Schema):
    """The install request Shopify sends to the app URL."""

    class Meta:
        unknown = EXCLUDE

    shop = fields.String(required=True, validate=validate.Length(max=255))
    hmac = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-fA-F]{64}$"))
    timestamp = fields.String(required=True, validate=validate.Regexp(r"^\d{1,12}$"))
    host = fields.String(validate=validate.Length(max=2000))


class ShopifyCallbackQuerySchema(ShopifyInstallQuerySchema):
    """Shopify's redirect back to the app once the merchant approved it."""

    code = fields.String(required=True, validate=validate.Length(min=1, max=512))
    state = fields.String(required=True, validate=validate.Length(min=1, max=2000))


def _load(schema: Schema, data: Mapping[str, str]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        names = ", ".join(sorted(exc.normalized_messages()))
        raise InstallError(f"The request from Shopify is missing or has malformed parameters: "
                           f"{names}.", code="invalid_request") from None


# --------------------------------------------------------------------------------------------------
# The query-string HMAC
# --------------------------------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")


def _form_encode(text: str) -> str:
    """``URLSearchParams`` encoding, as Shopify's library signs (a space is ``%20``)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def hmac_message(query: Sequence[tuple[str, str]]) -> str:
    """The signed text of a query: without ``hmac`` (and ``signature``), names sorted, a repeated
    name's values joined with ``,``, each pair form-encoded, joined with ``&``."""
    values: dict[str, list[str]] = {}
    for name, value in query:
        if name not in ("hmac", "signature"):
            values.setdefault(name, []).append(value)
    return "&".join(f"{_form_encode(name)}={_form_encode(','.join(found))}"
                    for name, found in sorted(values.items()))


def sign_query(query: Sequence[tuple[str, str]], secret: str) -> str:
    """The hex ``hmac`` Shopify puts on ``query``."""
    return hmac.new(secret.encode("utf-8"), hmac_message(query).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def verify_query(query: Sequence[tuple[str, str]], secrets: Sequence[str]) -> bool:
    """True when the query's ``hmac`` is Shopify's for one of ``secrets`` (constant time, every
    secret tried so the time does not tell which matched)."""
    sent = next((value for name, value in query if name == "hmac"), "")
    sent_bytes = sent.strip().lower().encode("ascii", "replace")
    valid = False
    for secret in secrets:
        if secret:
            expected = sign_query(query, secret).encode("ascii")
            valid = hmac.compare_digest(expected, sent_bytes) or valid
    return valid


def app_secrets(settings: Mapping[str, str]) -> list[str]:
    """The client secret, then the previous one while it is being rotated."""
    return [s for s in (settings.get("api_secret"), settings.get("api_secret_previous")) if s]


def _require_app(settings: Mapping[str, str]) -> None:
    if not settings.get("api_key") or not settings.get("api_secret"):
        raise InstallError("The Shopify app is not configured on this server (CCMS_SHOPIFY_API_KEY "
                           "and CCMS_SHOPIFY_API_SECRET).", status=503, code="not_configured")


def _check_signed(query: Sequence[tuple[str, str]], args: Mapping[str, Any],
                  settings: Mapping[str, str], now: float | None = None) -> str:
    """The shop of a signed Shopify request: its form, its ``hmac``, its ``timestamp``."""
    shop = str(args["shop"]).strip().lower()
    if not SHOP_RE.fullmatch(shop):
        raise InstallError("Only a permanent *.myshopify.com shop domain can install this app.",
                           code="foreign_shop")
    if not verify_query(query, app_secrets(settings)):
        raise InstallError("The request's Shopify signature (hmac) is missing or wrong.",
                           status=401, code="invalid_hmac")
    if abs((now or time.time()) - int(args["timestamp"])) > HMAC_TIMESTAMP_TOLERANCE:
        raise InstallError("The request from Shopify is too old (or the clocks disagree): "
                           "open the app from Shopify again.", code="stale_request")
    return shop


# --------------------------------------------------------------------------------------------------
# The adapter's install hooks
# --------------------------------------------------------------------------------------------------


def install_shop(request: InstallRequest, settings: Mapping[str, str]) -> str:
    """The shop of a verified install request (form, hmac, timestamp)."""
    _require_app(settings)
    args = _load(ShopifyInstallQuerySchema(), request.args())
    return _check_signed(request.query, args, settings)


def requested_scopes(settings: Mapping[str, str]) -> list[str]:
    """``CCMS_SHOPIFY_SCOPES`` (comma or space separated), else :data:`DEFAULT_SCOPES`."""
    text = settings.get("scopes") or DEFAULT_SCOPES
    return [s for s in re.split(r"[\s,]+", text) if s]


def install_url(shop_domain: str, *, state: str, callback_url: str,
                settings: Mapping[str, str]) -> str:
    """``https://{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state&grant_options[]``."""
    _require_app(settings)
    base = settings.get("api_base_url", DEFAULT_BASE_URL).format(domain=shop_domain).rstrip("/")
    query = urlencode({"client_id": settings["api_key"],
                       "scope": ",".join(requested_scopes(settings)),
                       "redirect_uri": callback_url, "state": state,
                       "grant_options[]": ""})  # empty: an offline (shop) token
    return f"{base}/admin/oauth/authorize?{query}"


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


#: asked for, but an install goes on without them: ``read_all_orders`` is granted only to apps
#: Shopify approved for it; without it the add-on reads the last 60 days of orders
OPTIONAL_SCOPES = frozenset({"read_all_orders"})


def missing_scopes(requested: Sequence[str], granted: str) -> list[str]:
    """Requested scopes the grant lacks, but :data:`OPTIONAL_SCOPES`; a ``write_x`` grant
    includes ``read_x``."""
    have = {s.strip() for s in granted.split(",") if s.strip()}
    return [s for s in requested
            if s not in have and s not in OPTIONAL_SCOPES
            and not (s.startswith("read_") and "write_" + s[5:] in have)]


def complete_install(shop_domain: str, request: InstallRequest, *, callback_url: str,
                     settings: Mapping[str, str]) -> InstallResult:
    """Verify Shopify's redirect (hmac, timestamp, the pending shop), exchange the code for an
    offline token (expiring unless ``CCMS_SHOPIFY_EXPIRING_TOKENS=0``), check the scopes."""
    _require_app(settings)
    args = _load(ShopifyCallbackQuerySchema(), request.args())
    shop = _check_signed(request.query, args, settings)
    if shop != shop_domain:
        raise InstallError("Shopify answered for another shop than the one being installed.",
                           code="shop_mismatch")
    body: dict[str, Any] = {"client_id": settings["api_key"], "client_secret": settings["api_secret"],
                            "code": args["code"]}
    if _truthy(settings.get("expiring_tokens"), True):
        body["expiring"] = "1"
    with oauth_client(shop, settings) as client:
        try:
            answer = client.token(body)
        except PlatformUnavailableError:
            raise
        except PlatformError:  # 400 invalid_request (used or expired code), 401/403
            raise InstallError("Shopify refused the authorization code (it is used or expired): "
                               "install the app again from Shopify.", code="code_refused") from None
    credentials = token_credentials(answer)
    lacking = missing_scopes(requested_scopes(settings), credentials["scope"])
    if lacking:
        raise InstallError("Shopify granted fewer permissions than the app asked for ("
                           + ", ".join(lacking) + "): install the app again.", status=403,
                           code="scopes_missing")
    landing = (f"https://{shop}/admin/apps/{settings['api_key']}"
               if _truthy(settings.get("embedded"), True) else None)
    return InstallResult(shop_domain=shop, credentials=credentials, landing_url=landing,
                         settings={"granted_scopes": credentials["scope"]})


# --------------------------------------------------------------------------------------------------
# Webhook subscriptions (GraphQL Admin API)
# --------------------------------------------------------------------------------------------------


def register_webhooks(shop: ShopContext, webhook_url: str) -> WebhookRegistration:
    """Subscribe every topic of :data:`WEBHOOK_TOPICS` to ``webhook_url``: existing subscriptions
    (the app sees only its own) are kept, those pointing elsewhere are moved, missing ones
    created. The compliance topics are the app configuration's (see the module docstring)."""
    if not webhook_url.startswith("https://"):
        raise PlatformError(f"Shopify delivers webhooks to https URLs only, not {webhook_url!r}: "
                            "set CCMS_PUBLIC_URL to the add-on's https address")
    with ShopifyAdminClient.for_shop(shop) as client:
        data = client.graphql(_SUBSCRIPTIONS_QUERY)
        nodes = ((data.get("webhookSubscriptions") or {}).get("nodes") or [])
        existing: dict[str, list[dict[str, Any]]] = {}
        for node in nodes:
            if isinstance(node, dict):
                existing.setdefault(str(node.get("topic")), []).append(node)
        for topic, enum in WEBHOOK_TOPICS.items():
            found = existing.get(enum, [])
            if any(node.get("uri") == webhook_url for node in found):
                continue
            if found:
                _subscription(client, _SUBSCRIPTION_UPDATE, "webhookSubscriptionUpdate",
                              {"id": found[0]["id"], "webhookSubscription": {"uri": webhook_url}},
                              topic)
            else:
                _subscription(client, _SUBSCRIPTION_CREATE, "webhookSubscriptionCreate",
                              {"topic": enum, "webhookSubscription": {"uri": webhook_url,
                                                                      "format": "JSON"}}, topic)
    return WebhookRegistration(
        topics=tuple(WEBHOOK_TOPICS),
        detail=("The privacy topics " + ", ".join(COMPLIANCE_TOPICS) + " are not subscribed per "
                "shop: Shopify takes them only from the app's configuration (shopify.app.toml "
                "compliance_topics, or the Partner Dashboard), pointing at " + webhook_url + "."))


def _subscription(client: ShopifyAdminClient, mutation: str, root: str,
                  variables: Mapping[str, Any], topic: str) -> None:
    data = client.graphql(mutation, variables)
    errors = (data.get(root) or {}).get("userErrors") or []
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict)]
    # a subscription created meanwhile (a concurrent install) is what we wanted
    if messages and not all("already been taken" in m for m in messages):
        raise PlatformError(f"Shopify refused the {topic} webhook subscription: "
                            + "; ".join(messages)[:300])


# --------------------------------------------------------------------------------------------------
# Session tokens (the embedded admin)
# --------------------------------------------------------------------------------------------------


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_session_token(token: str, settings: Mapping[str, str], *,
                         now: float | None = None) -> str:
    """The shop a session token authenticates; :class:`SessionTokenError` otherwise.

    Only HS256 is accepted (never ``none`` or another algorithm the header names); the signature
    is checked in constant time against the client secret (and the previous one while it is
    rotated) before any claim is read.
    """
    if not settings.get("api_key") or not app_secrets(settings):
        raise SessionTokenError("the Shopify app is not configured (CCMS_SHOPIFY_API_KEY/SECRET)")
    parts = (token or "").strip().split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise SessionTokenError("not a JSON web token")
    try:
        header = json.loads(_b64url(parts[0]))
        signature = _b64url(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SessionTokenError("the token's header or signature is not readable") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise SessionTokenError("only HS256 session tokens are accepted")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    valid = False
    for secret in app_secrets(settings):
        expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
        valid = hmac.compare_digest(expected, signature) or valid
    if not valid:
        raise SessionTokenError("the session token's signature is wrong")
    try:
        claims = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SessionTokenError("the token's claims are not readable") from None
    if not isinstance(claims, dict):
        raise SessionTokenError("the token's claims are not an object")
    moment = now if now is not None else time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or moment > exp + SESSION_TOKEN_LEEWAY:
        raise SessionTokenError("the session token has expired")
    if not isinstance(nbf, (int, float)) or moment < nbf - SESSION_TOKEN_LEEWAY:
        raise SessionTokenError("the session token is not valid yet")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if settings["api_key"] not in audiences:
        raise SessionTokenError("the session token is for another app")
    dest_host = _https_host(claims.get("dest"))
    if dest_host is None or not SHOP_RE.fullmatch(dest_host):
        raise SessionTokenError("the session token's destination is not a myshopify.com shop")
    if _https_host(claims.get("iss")) != dest_host:
        raise SessionTokenError("the session token's issuer is not its destination shop")
    return dest_host


def _https_host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or not host or port not in (None, 443) or parts.username:
        return None
    return host.lower()


def frame_ancestors(shop_domain: str) -> list[str]:
    """The shop's own admin and Shopify's unified admin may frame the embedded app."""
    return [f"https://{shop_domain}", ADMIN_ORIGIN]


__all__ = ["COMPLIANCE_TOPICS", "DEFAULT_SCOPES", "WEBHOOK_TOPICS", "complete_install",
           "frame_ancestors", "hmac_message", "install_shop", "install_url", "register_webhooks",
           "sign_query", "verify_query", "verify_session_token"]
