"""A small client for Shopify's Admin API: orders and customers for the worker, script tags, the live
theme's settings and app-data metafields for the widget injection, and the GraphQL operations of a
claim's settlement (:mod:`.settlement`).

Shopify rate-limits the REST Admin API per app and shop with a leaky bucket (40 requests, leaking
2 per second on a standard plan); every response reports the bucket in ``X-Shopify-Shop-Api-Call-Limit``
(``"32/40"``) and a throttled request gets ``429 Too Many Requests`` with ``Retry-After`` in seconds
(``"2.0"``). The shared :class:`~ccms_addon.platform_http.AdminApiClient` retries a 429 a few times in
the call, waiting at most ``RETRY_AFTER_CAP`` seconds, and turns every failure into the adapter errors
the worker understands. The GraphQL Admin API answers a throttled query with 200 and an error whose
``extensions.code`` is ``THROTTLED``: that becomes :class:`ShopifyThrottledError` (a
``PlatformUnavailableError``) carrying how long the cost bucket needs, read from the answer's
``extensions.cost.throttleStatus``, which :attr:`ShopifyAdminClient.last_cost` keeps for the order
listing's pacing (:mod:`.sync`); a query asking for more than 1,000 points (``MAX_COST_EXCEEDED``)
is :class:`QueryCostExceededError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

from ccms_addon.platform_http import AdminApiClient
from ccms_addon.platform_http import retry_after_seconds as _retry_after_seconds
from ccms_addon.platforms import (PlatformAuthError, PlatformError, PlatformUnavailableError,
                                  ShopContext, expires_at, fresh_context)
from ccms_addon.platforms import reauthorizer as core_reauthorizer

#: the Admin API version requested when the shop's settings name none
DEFAULT_API_VERSION = "2026-07"
#: where the Admin API lives; ``{domain}`` is the shop's myshopify domain
DEFAULT_BASE_URL = "https://{domain}"
#: (connect, read) timeouts in seconds for one request
TIMEOUT = (5.0, 30.0)
#: attempts of one request when Shopify answers 429 (the first try included)
MAX_ATTEMPTS = 3
#: longest in-call wait for a 429, whatever Retry-After says
RETRY_AFTER_CAP = 2.0
#: wait for a 429 without a usable Retry-After: one request leaks in 0.5 s on a standard plan
DEFAULT_RETRY_AFTER = 1.0
#: most ids Shopify accepts in one ``ids=`` filter, and the largest page (``limit``)
PAGE_SIZE = 250
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"
ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"
#: the only ``event`` a ScriptTag accepts
SCRIPT_TAG_EVENT = "onload"
#: storefront pages only: script tags on the order status page are sunset (checkout extensibility)
SCRIPT_TAG_DISPLAY_SCOPE = "online_store"
#: the theme asset that records which app embeds are on
SETTINGS_DATA_KEY = "config/settings_data.json"
#: the metafield type of the app-data values the app embed block reads
METAFIELD_TYPE = "single_line_text_field"

_APP_INSTALLATION_QUERY = """
query ccmsAppInstallation($namespace: String!) {
  currentAppInstallation {
    id
    metafields(namespace: $namespace, first: 20) { nodes { key value } }
  }
}
"""

_METAFIELDS_SET_MUTATION = """
mutation ccmsMetafieldsSet($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { key value }
    userErrors { field message code }
  }
}
"""


class ShopifyThrottledError(PlatformUnavailableError):
    """The GraphQL Admin API answered ``THROTTLED``: the bucket did not hold the query's cost.

    ``wait`` is how long the bucket needs to restore the missing points (requested cost less
    what is available, over the restore rate), 0 when the answer did not say; ``cost`` is the
    answer's ``extensions.cost``."""

    def __init__(self, message: str, *, wait: float = 0.0,
                 cost: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.wait = wait
        self.cost = cost


class QueryCostExceededError(PlatformError):
    """The query asks for more than a single query may cost (``MAX_COST_EXCEEDED``): ask for less."""


def throttle_wait(cost: Mapping[str, Any] | None) -> float:
    """Seconds until the bucket of ``extensions.cost`` holds the requested cost again."""
    try:
        status = cost["throttleStatus"]  # type: ignore[index]
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])  # type: ignore[index]
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return max(0.0, missing / rate) if rate > 0 else 0.0


class ShopifyAdminClient(AdminApiClient):
    """Admin API calls for one shop. Use as a context manager: it owns a ``requests.Session``."""

    #: ``extensions.cost`` of the last GraphQL answer (requested and actual cost, the bucket)
    last_cost: Mapping[str, Any] | None = None

    platform = "Shopify"
    max_retries = MAX_ATTEMPTS - 1
    retry_after_cap = RETRY_AFTER_CAP
    default_retry_after = DEFAULT_RETRY_AFTER

    def __init__(self, base_url: str, api_version: str, access_token: str, *,
                 timeout: tuple[float, float] = TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(f"{base_url.rstrip('/')}/admin/api/{api_version}",
                         headers={ACCESS_TOKEN_HEADER: access_token}, timeout=timeout, sleep=sleep)
        self.api_version = api_version
        #: the last ``(used, size)`` of the rate-limit bucket Shopify reported, if any
        self.call_limit: tuple[int, int] | None = None

    @classmethod
    def for_shop(cls, shop: ShopContext, **kwargs: Any) -> "ShopifyAdminClient":
        """A client for ``shop``: settings ``api_base_url`` / ``api_version``, credential ``access_token``.

        An expiring offline token is refreshed first when it is about to expire, and once more if
        Shopify answers 401 (see :func:`refresh_access_token`); the new tokens go to
        ``shop.credentials_store``.
        """
        shop = fresh_shop(shop)
        token = shop.credentials.get("access_token")
        if not token or not isinstance(token, str):
            raise PlatformAuthError(f"no Shopify access token stored for {shop.domain}")
        base_url = shop.settings.get("api_base_url", DEFAULT_BASE_URL).format(domain=shop.domain)
        version = shop.settings.get("api_version", DEFAULT_API_VERSION)
        client = cls(base_url, version, token, **kwargs)
        if shop.credentials.get("refresh_token"):
            client.reauthorize = _reauthorizer(shop)
        return client

    # -- a refused expiring token: refresh once and retry -----------------------------------------

    #: called once when Shopify answers 401: returns a fresh access token, or None
    reauthorize: Callable[[], str | None] | None = None
    _reauthorized = False
    #: the HTTP status of the last answer (401 tells an expired token from a 403 missing scope)
    last_status: int | None = None

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        """As the shared client's ``send``; a 401 is answered once by refreshing the token."""
        try:
            return super().send(method, path, **kwargs)
        except PlatformAuthError:
            if self.reauthorize is None or self._reauthorized or self.last_status != 401:
                raise
            self._reauthorized = True
            token = self.reauthorize()
            if not token:
                raise
            self.headers[ACCESS_TOKEN_HEADER] = token
            return super().send(method, path, **kwargs)

    # -- the shared client's hooks -----------------------------------------------------------------

    def observe_response(self, response: requests.Response) -> float:
        """Keep the bucket Shopify reported; the 429 retries are the only waits."""
        self.last_status = response.status_code
        self.call_limit = parse_call_limit(response.headers.get(CALL_LIMIT_HEADER)) or self.call_limit
        return 0.0

    def error_for(self, method: str, path: str, response: requests.Response) -> PlatformError:
        status = response.status_code
        if status in (402, 423):
            # 402: the shop is frozen (unpaid bill); 423: the shop is locked. Both end on Shopify's side.
            return PlatformUnavailableError(f"Shopify shop unavailable ({status}) for {path}")
        error = super().error_for(method, path, response)
        if method == "GET" and type(error) is PlatformError:
            # 3xx/404/406…: not transient, but the fetch contract's only other error means "stop";
            # the worker's retries are bounded, and the status is kept in the delivery's error.
            return PlatformUnavailableError(f"Shopify answered an unexpected {status} for {path}")
        return error

    # -- orders and customers ----------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``/admin/api/{version}/{path}`` and return its JSON (fractions as ``Decimal``)."""
        return self.call("GET", path, params=params)

    def orders(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Orders by id, open or not (``status=any``); unknown ids are simply absent."""
        return list(self._by_ids("orders", ids, {"status": "any"}))

    def customers(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Customers by id; unknown ids are simply absent."""
        return list(self._by_ids("customers", ids, {}))

    def _by_ids(self, resource: str, ids: Sequence[str], params: Mapping[str, str]
                ) -> Iterator[dict[str, Any]]:
        # a non-numeric id cannot exist on Shopify: leave it out rather than have the call fail
        wanted = list(dict.fromkeys(i for i in ids if i.isascii() and i.isdigit()))
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start:start + PAGE_SIZE]
            body = self.get(f"{resource}.json", {**params, "ids": ",".join(chunk),
                                                 "limit": str(PAGE_SIZE)})
            yield from _items(body, resource, f"{resource}.json")

    # -- script tags (REST ScriptTag resource) ----------------------------------------------------

    def script_tags(self) -> list[dict[str, Any]]:
        """The script tags of this app (Shopify scopes them to the app that created them)."""
        body = self.get("script_tags.json", {"limit": str(PAGE_SIZE)})
        return list(_items(body, "script_tags", "script_tags.json"))

    def create_script_tag(self, src: str) -> dict[str, Any]:
        body = self.call("POST", "script_tags.json", json_body={"script_tag": {
            "event": SCRIPT_TAG_EVENT, "src": src, "display_scope": SCRIPT_TAG_DISPLAY_SCOPE}})
        return _item(body, "script_tag", "script_tags.json")

    def update_script_tag(self, script_tag_id: int | str, src: str) -> dict[str, Any]:
        body = self.call("PUT", f"script_tags/{script_tag_id}.json", json_body={"script_tag": {
            "id": script_tag_id, "src": src, "display_scope": SCRIPT_TAG_DISPLAY_SCOPE}})
        return _item(body, "script_tag", f"script_tags/{script_tag_id}.json")

    def delete_script_tag(self, script_tag_id: int | str) -> None:
        """Delete one script tag; one already gone is fine."""
        self.send("DELETE", f"script_tags/{script_tag_id}.json", missing_ok=True)

    # -- themes (the app embed's state lives in the live theme's settings_data.json) ---------------

    def main_theme(self) -> dict[str, Any] | None:
        """The published theme (``role == "main"``), if the shop has one."""
        body = self.get("themes.json", {"fields": "id,name,role"})
        return next((t for t in _items(body, "themes", "themes.json") if t.get("role") == "main"), None)

    def theme_asset(self, theme_id: int | str, key: str) -> str | None:
        """The text of one theme asset, None when the theme has no such asset."""
        path = f"themes/{theme_id}/assets.json"
        response = self.send("GET", path, params={"asset[key]": key}, missing_ok=True)
        if response is None:
            return None
        value = _item(self.decode(path, response), "asset", path).get("value")
        return value if isinstance(value, str) else None

    # -- GraphQL: app-data metafields --------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``data`` of one GraphQL Admin API operation; its errors mapped like HTTP errors."""
        body = self.call("POST", "graphql.json",
                         json_body={"query": query, "variables": dict(variables or {})})
        if not isinstance(body, dict):
            raise PlatformUnavailableError("Shopify graphql.json answered without a JSON object")
        extensions = body.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        self.last_cost = cost if isinstance(cost, dict) else None
        errors = body.get("errors")
        if errors:
            codes = {str((e.get("extensions") or {}).get("code", "")) for e in errors
                     if isinstance(e, dict)} if isinstance(errors, list) else set()
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                                 for e in (errors if isinstance(errors, list) else [errors]))[:300]
            if "THROTTLED" in codes or messages.strip() == "Throttled":
                raise ShopifyThrottledError(f"Shopify GraphQL throttled: {messages}",
                                            wait=throttle_wait(self.last_cost),
                                            cost=self.last_cost)
            if "MAX_COST_EXCEEDED" in codes:
                raise QueryCostExceededError(f"Shopify GraphQL: {messages}")
            if "INTERNAL_SERVER_ERROR" in codes or any("CONCURRENT" in code for code in codes):
                # Shopify's side failed, or a request with the same idempotency key is still
                # running: both are worth a later retry, never a permanent failure
                raise PlatformUnavailableError(f"Shopify GraphQL unavailable: {messages}")
            if "ACCESS_DENIED" in codes:
                raise PlatformAuthError(f"Shopify GraphQL access denied: {messages}")
            raise PlatformError(f"Shopify GraphQL error: {messages}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PlatformUnavailableError("Shopify GraphQL answered without data")
        return data

    def app_metafields(self, namespace: str) -> tuple[str, dict[str, str]]:
        """The app installation's id and its app-data metafields in ``namespace`` (key → value)."""
        data = self.graphql(_APP_INSTALLATION_QUERY, {"namespace": namespace})
        installation = data.get("currentAppInstallation") or {}
        owner_id = installation.get("id")
        if not isinstance(owner_id, str) or not owner_id:
            raise PlatformError("Shopify GraphQL: currentAppInstallation has no id")
        nodes = ((installation.get("metafields") or {}).get("nodes") or [])
        return owner_id, {str(n["key"]): str(n.get("value")) for n in nodes
                          if isinstance(n, dict) and "key" in n}

    def set_app_metafields(self, owner_id: str, namespace: str, values: Mapping[str, str]) -> None:
        """Write app-data metafields (``metafieldsSet`` is an upsert): what the app embed reads."""
        data = self.graphql(_METAFIELDS_SET_MUTATION, {"metafields": [
            {"ownerId": owner_id, "namespace": namespace, "key": key, "type": METAFIELD_TYPE,
             "value": value} for key, value in values.items()]})
        errors = (data.get("metafieldsSet") or {}).get("userErrors") or []
        if errors:
            text = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors
                             if isinstance(e, dict))
            raise PlatformError(f"Shopify metafieldsSet refused: {text}"[:400])


# --------------------------------------------------------------------------------------------------
# The OAuth token endpoint: POST https://{shop}/admin/oauth/access_token
# --------------------------------------------------------------------------------------------------

#: the token endpoint's path under the shop's base URL
ACCESS_TOKEN_PATH = "/admin/oauth/access_token"
#: the refresh-token grant of expiring offline tokens
REFRESH_GRANT = "refresh_token"


class ShopifyOAuthClient(AdminApiClient):
    """The token endpoint of one shop (authorization code grant and refresh-token grant).

    The client secret travels in the JSON body, so no redirect is ever followed."""

    platform = "Shopify OAuth"
    max_retries = MAX_ATTEMPTS - 1
    retry_after_cap = RETRY_AFTER_CAP
    default_retry_after = DEFAULT_RETRY_AFTER

    @property
    def sends_credentials(self) -> bool:
        return True

    def token(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The token endpoint's JSON answer (``access_token``, ``scope``, and for an expiring
        offline token ``expires_in``, ``refresh_token``, ``refresh_token_expires_in``)."""
        answer = self.call("POST", ACCESS_TOKEN_PATH, json_body=dict(body))
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) \
                or not answer["access_token"]:
            raise PlatformUnavailableError("Shopify's token endpoint answered without an access_token")
        return answer


def oauth_client(shop_domain: str, settings: Mapping[str, str], **kwargs: Any) -> ShopifyOAuthClient:
    """The token endpoint client for ``shop_domain`` (``api_base_url`` as the Admin API's)."""
    base_url = settings.get("api_base_url", DEFAULT_BASE_URL).format(domain=shop_domain)
    return ShopifyOAuthClient(base_url, timeout=TIMEOUT, **kwargs)


def token_credentials(answer: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored of a token answer: the access token, its scopes and, for an expiring offline
    token, when it expires and the refresh token (with its own expiry)."""
    credentials: dict[str, Any] = {"access_token": answer["access_token"],
                                   "scope": str(answer.get("scope") or "")}
    if answer.get("expires_in") is not None:
        credentials["expires_at"] = expires_at(float(answer["expires_in"]))
    if answer.get("refresh_token"):
        credentials["refresh_token"] = str(answer["refresh_token"])
        if answer.get("refresh_token_expires_in") is not None:
            credentials["refresh_token_expires_at"] = expires_at(
                float(answer["refresh_token_expires_in"]))
    return credentials


def refresh_access_token(shop_domain: str, credentials: Mapping[str, Any],
                         settings: Mapping[str, str]) -> dict[str, Any]:
    """Exchange the refresh token for a new expiring offline token (and a new refresh token: Shopify
    replaces it on every use). ``PlatformAuthError`` when Shopify refuses it (uninstalled, expired
    after 90 days unused): the merchant must open the app again."""
    refresh_token = credentials.get("refresh_token")
    if not refresh_token:
        raise PlatformAuthError(f"no Shopify refresh token stored for {shop_domain}")
    if not settings.get("api_key") or not settings.get("api_secret"):
        raise PlatformAuthError("CCMS_SHOPIFY_API_KEY / CCMS_SHOPIFY_API_SECRET are not set")
    with oauth_client(shop_domain, settings) as client:
        try:
            answer = client.token({"client_id": settings["api_key"],
                                   "client_secret": settings["api_secret"],
                                   "grant_type": REFRESH_GRANT, "refresh_token": refresh_token})
        except PlatformAuthError:
            raise
        except PlatformUnavailableError:
            raise
        except PlatformError as exc:  # 400 invalid_grant: the refresh token is void
            raise PlatformAuthError(f"Shopify refused the refresh token of {shop_domain}: {exc}"
                                    ) from None
    return token_credentials(answer)


def _items(body: Any, key: str, path: str) -> Iterator[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise PlatformUnavailableError(f"Shopify {path} answered without a list")
    return (item for item in items if isinstance(item, dict))


def _item(body: Any, key: str, path: str) -> dict[str, Any]:
    item = body.get(key) if isinstance(body, dict) else None
    if not isinstance(item, dict):
        raise PlatformUnavailableError(f"Shopify {path} answered without {key!r}")
    return item


def retry_after_seconds(value: str | None) -> float:
    """Seconds to wait for a 429: Shopify's ``Retry-After`` (``"2.0"``), bounded to [0, cap]."""
    return _retry_after_seconds(value, cap=RETRY_AFTER_CAP, default=DEFAULT_RETRY_AFTER)


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """``"32/40"`` → ``(32, 40)``; None for a missing or garbled header."""
    used, sep, size = (value or "").partition("/")
    if not sep or not used.strip().isdigit() or not size.strip().isdigit():
        return None
    return int(used), int(size)


def _refresh(shop: ShopContext) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    return lambda current: refresh_access_token(shop.domain, current, shop.settings)


def fresh_shop(shop: ShopContext) -> ShopContext:
    """``shop`` with its expiring token refreshed when less than the margin is left of it."""
    return fresh_context(shop, _refresh(shop))


def _reauthorizer(shop: ShopContext) -> Callable[[], str | None]:
    return core_reauthorizer(shop, _refresh(shop))
