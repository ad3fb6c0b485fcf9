"""A small HTTP client for the Cafe24 Admin API.

Cafe24 meters every mall with a leaky bucket (``X-Api-Call-Limit: used/max``, 40 calls, draining about
2 calls a second) and answers 429 when it overflows; past its usage limits it adds
``X-Cafe24-Call-Remain`` / ``X-Cafe24-Time-Remain`` (seconds until calls resume), which are waited
out too. A job may wait a little for the bucket, never long:
in-call waits are capped at :data:`RETRY_AFTER_CAP` and anything longer becomes
:class:`PlatformUnavailableError`, which the worker retries with its own backoff. The retries, timeouts
and error mapping are the shared :class:`~ccms_addon.platform_http.AdminApiClient`'s; this module adds
Cafe24's headers, its call-limit header and its error body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from ccms_addon.platform_http import AdminApiClient
from ccms_addon.platform_http import retry_after_seconds as _retry_after_seconds
from ccms_addon.platforms import (PlatformAuthError, PlatformError, PlatformUnavailableError,
                                  ShopContext, expires_at, fresh_context)
from ccms_addon.platforms import reauthorizer as core_reauthorizer

#: (connect, read) timeouts in seconds: a stalled Cafe24 must not hold a worker
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 20.0)
#: quick retries of a 429 inside one call, before giving up to the worker's backoff
MAX_RETRIES = 3
#: longest in-call wait, whatever Retry-After or the call-limit header asks for
RETRY_AFTER_CAP = 2.0
#: wait after a 429 without Retry-After: the time the bucket takes to drain one call
DEFAULT_RETRY_AFTER = 0.5
#: calls Cafe24's bucket drains per second (its documented 2 calls/s refill)
BUCKET_DRAIN_PER_SECOND = 2.0
#: when fewer free calls than this remain in the bucket, pause before the next call
CALL_LIMIT_HEADROOM = 4
CALL_LIMIT_HEADER = "X-Api-Call-Limit"
#: seconds until calls resume, sent only once the usage reached 100 % (Cafe24 API docs, "API
#: Limit": X-Cafe24-Call-Usage / -Call-Remain / -Time-Usage / -Time-Remain)
CALL_REMAIN_HEADER = "X-Cafe24-Call-Remain"
TIME_REMAIN_HEADER = "X-Cafe24-Time-Remain"

Sleep = Callable[[float], None]


def retry_after_seconds(value: str | None, cap: float = RETRY_AFTER_CAP) -> float:
    """Seconds to wait for a ``Retry-After`` value (seconds or an HTTP date), between 0 and ``cap``."""
    return _retry_after_seconds(value, cap=cap, default=min(DEFAULT_RETRY_AFTER, cap))


def call_limit_pause(value: str | None, cap: float = RETRY_AFTER_CAP) -> float:
    """Seconds to pause before the next call, given ``X-Api-Call-Limit: used/max``; 0 when roomy."""
    try:
        used_text, max_text = (value or "").split("/")
        used, limit = int(used_text), int(max_text)
    except ValueError:
        return 0.0
    free = limit - used
    if limit <= 0 or free > CALL_LIMIT_HEADROOM:
        return 0.0
    return min((CALL_LIMIT_HEADROOM - free + 1) / BUCKET_DRAIN_PER_SECOND, cap)


def remain_seconds(value: str | None, cap: float = RETRY_AFTER_CAP) -> float:
    """Seconds of an ``X-Cafe24-*-Remain`` header (absent below the limit), between 0 and ``cap``."""
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return 0.0
    return max(0.0, min(seconds, cap)) if seconds == seconds else 0.0


class Cafe24Client(AdminApiClient):
    """Requests to one mall's Admin API with one access token.

    Used as a context manager so the connection pool is closed when a job is done with the mall.
    """

    platform = "Cafe24 API"
    max_retries = MAX_RETRIES
    retry_after_cap = RETRY_AFTER_CAP
    default_retry_after = DEFAULT_RETRY_AFTER

    def __init__(self, base_url: str, access_token: str, api_version: str, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, max_retries: int = MAX_RETRIES,
                 sleep: Sleep = time.sleep, session: requests.Session | None = None) -> None:
        super().__init__(base_url, headers={
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "X-Cafe24-Api-Version": api_version,
        }, timeout=timeout, max_retries=max_retries, sleep=sleep, session=session)

    #: the pause the last answer asked for before the next call (seconds)
    next_pause: float = 0.0

    def observe_response(self, response: requests.Response) -> float:
        """Slow down before the bucket overflows (``X-Api-Call-Limit``), and wait out the time
        Cafe24 names once a usage limit is reached (``X-Cafe24-Call-Remain``,
        ``X-Cafe24-Time-Remain``)."""
        self.last_status = response.status_code
        pause = max(call_limit_pause(response.headers.get(CALL_LIMIT_HEADER), self.retry_after_cap),
                    remain_seconds(response.headers.get(CALL_REMAIN_HEADER), self.retry_after_cap),
                    remain_seconds(response.headers.get(TIME_REMAIN_HEADER), self.retry_after_cap))
        self.next_pause = pause
        # a 429 without Retry-After waits what the usage headers name (the shared client uses
        # ``default_retry_after`` only when Retry-After is absent)
        self.default_retry_after = max(DEFAULT_RETRY_AFTER, pause) \
            if response.status_code == 429 else DEFAULT_RETRY_AFTER
        return pause

    def error_detail(self, response: requests.Response) -> str:
        """Cafe24's ``{"error": {"code", "message"}}`` as one line."""
        try:
            error = response.json().get("error", {})
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        except (ValueError, AttributeError):
            return ""

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any | None:
        """The decoded JSON answer (fractions as Decimal), or None for 404.

        Raises ``PlatformAuthError`` on 401/403, ``PlatformUnavailableError`` when the API cannot be
        reached, times out, answers 5xx or keeps answering 429, ``PlatformError`` on other refusals.
        """
        return self.call("GET", path, params=params, missing_ok=True)

    def post(self, path: str, body: Mapping[str, Any]) -> Any | None:
        """POST a JSON body; errors as :meth:`get`, and a 404 is an error here."""
        return self.call("POST", path, json_body=body)

    def put(self, path: str, body: Mapping[str, Any]) -> Any | None:
        """PUT a JSON body; errors as :meth:`post`."""
        return self.call("PUT", path, json_body=body)

    def delete(self, path: str, params: Mapping[str, str] | None = None) -> None:
        """DELETE a resource; one already gone is fine."""
        self.send("DELETE", path, params=params, missing_ok=True)

    # -- a refused access token: refresh once and retry -------------------------------------------

    #: called once when Cafe24 answers 401 (an access token past its 2 hours): a fresh token or None
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
            self.headers["Authorization"] = f"Bearer {token}"
            return super().send(method, path, **kwargs)


# --------------------------------------------------------------------------------------------------
# OAuth 2.0: POST https://{mall_id}.cafe24api.com/api/v2/oauth/token
# (Cafe24 REST API, Admin "Authentication": Get Access Token, Get Access Token using refresh token)
# --------------------------------------------------------------------------------------------------

#: the token endpoint under the mall's API base URL
TOKEN_PATH = "/api/v2/oauth/token"
#: the authorization endpoint the merchant's browser is sent to
AUTHORIZE_PATH = "/api/v2/oauth/authorize"
#: what Cafe24 documents when an answer's times cannot be read: 2 hours, and 2 weeks
ACCESS_TOKEN_LIFETIME = timedelta(hours=2)
REFRESH_TOKEN_LIFETIME = timedelta(days=14)


class Cafe24OAuthClient(AdminApiClient):
    """The mall's token endpoint, authenticated with HTTP Basic ``client_id:client_secret``.

    Cafe24 takes the grant form-encoded (``grant_type``, ``code``, ``redirect_uri`` or
    ``refresh_token``) and answers ``{"access_token", "expires_at", "refresh_token",
    "refresh_token_expires_at", "client_id", "mall_id", "user_id", "scopes", "issued_at",
    "shop_no"}``; its times are the mall's local time (KST) without an offset.
    """

    platform = "Cafe24 OAuth"

    def __init__(self, base_url: str, client_id: str, client_secret: str, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, sleep: Sleep = time.sleep) -> None:
        super().__init__(base_url, auth=(client_id, client_secret), timeout=timeout, sleep=sleep,
                         max_retries=1)

    def error_detail(self, response: requests.Response) -> str:
        """The OAuth error body ``{"error", "error_description"}`` as one line."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        error = body.get("error")
        if isinstance(error, dict):  # the Admin API's shape, should the proxy answer with it
            return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")[:300]
        return " ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))[:300]

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """POST the grant; the JSON answer. Errors as :meth:`AdminApiClient.send`."""
        response = self._send_once("POST", self.url_for(TOKEN_PATH), None,
                                   urlencode(dict(form)).encode("utf-8"),
                                   {**self.headers,
                                    "Content-Type": "application/x-www-form-urlencoded"})
        if not 200 <= response.status_code < 300:
            raise self.error_for("POST", TOKEN_PATH, response)
        answer = self.decode(TOKEN_PATH, response)
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) \
                or not answer["access_token"]:
            raise PlatformUnavailableError("Cafe24's token endpoint answered without an access_token")
        return answer


def _lifetime(answer: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    """How long a token lives: its ``*_expires_at`` less ``issued_at`` (both in the mall's local
    time, so the difference needs no time zone), else what Cafe24 documents."""
    try:
        issued = datetime.fromisoformat(str(answer["issued_at"]))
        until = datetime.fromisoformat(str(answer[key]))
        if issued.tzinfo is None and until.tzinfo is None and until > issued:
            return until - issued
    except (KeyError, TypeError, ValueError):
        pass
    return default


def token_credentials(answer: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored of a token answer: both tokens, when each expires (UTC, counted from now:
    Cafe24's own times carry no offset), the granted scopes."""
    scopes = answer.get("scopes")
    return {
        "access_token": answer["access_token"],
        "refresh_token": str(answer.get("refresh_token") or ""),
        "expires_at": expires_at(_lifetime(answer, "expires_at",
                                           ACCESS_TOKEN_LIFETIME).total_seconds()),
        "refresh_token_expires_at": expires_at(_lifetime(
            answer, "refresh_token_expires_at", REFRESH_TOKEN_LIFETIME).total_seconds()),
        "scopes": [str(s) for s in scopes] if isinstance(scopes, list) else [],
    }


def oauth_client(mall_id: str, settings: Mapping[str, str]) -> Cafe24OAuthClient:
    """The token endpoint client of ``mall_id`` (``api_base_url`` as the Admin API's)."""
    client_id, secret = settings.get("client_id"), settings.get("client_secret")
    if not client_id or not secret:
        raise PlatformAuthError("CCMS_CAFE24_CLIENT_ID / CCMS_CAFE24_CLIENT_SECRET are not set")
    base = settings.get("api_base_url", "https://{domain}.cafe24api.com").replace("{domain}",
                                                                                   mall_id)
    return Cafe24OAuthClient(base, client_id, secret)


def refresh_access_token(mall_id: str, credentials: Mapping[str, Any],
                         settings: Mapping[str, str]) -> dict[str, Any]:
    """``grant_type=refresh_token``: a new access token *and* a new refresh token (Cafe24 voids the
    old one). ``PlatformAuthError`` when Cafe24 refuses it (expired after 2 weeks unused, app
    deleted): the merchant must authorise the app again."""
    refresh_token = credentials.get("refresh_token")
    if not refresh_token:
        raise PlatformAuthError(f"no Cafe24 refresh token stored for {mall_id}")
    with oauth_client(mall_id, settings) as client:
        try:
            answer = client.token({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except (PlatformAuthError, PlatformUnavailableError):
            raise
        except PlatformError as exc:  # 400 invalid_grant: the refresh token is void
            raise PlatformAuthError(f"Cafe24 refused the refresh token of {mall_id}: {exc}") from None
    return token_credentials(answer)


def _refresh(shop: ShopContext) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    return lambda current: refresh_access_token(shop.domain, current, shop.settings)


def fresh_shop(shop: ShopContext) -> ShopContext:
    """``shop`` with its access token refreshed when less than the margin is left of it."""
    return fresh_context(shop, _refresh(shop))


def reauthorizer(shop: ShopContext) -> Callable[[], str | None]:
    """What a client calls on a 401: refresh (or take a token another worker refreshed)."""
    return core_reauthorizer(shop, _refresh(shop))
