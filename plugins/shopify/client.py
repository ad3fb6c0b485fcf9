"""A small client for Shopify's REST Admin API, used by the worker to fetch orders and customers.

Shopify rate-limits the REST Admin API per app and shop with a leaky bucket (40 requests, leaking
2 per second on a standard plan); every response reports the bucket in ``X-Shopify-Shop-Api-Call-Limit``
(``"32/40"``) and a throttled request gets ``429 Too Many Requests`` with ``Retry-After`` in seconds
(``"2.0"``). The client retries a 429 a few times in the call, waiting at most ``RETRY_AFTER_CAP``
seconds, and otherwise turns every failure into the adapter errors the worker understands: it never
sleeps long, because the job queue's backoff is the place for long waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

from ccms_addon.platforms import (
    PayloadInvalidError,
    PlatformAuthError,
    PlatformUnavailableError,
    ShopContext,
    load_json,
)

log = logging.getLogger(__name__)

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


class ShopifyAdminClient:
    """REST Admin API calls for one shop. Use as a context manager: it owns a ``requests.Session``."""

    def __init__(self, base_url: str, api_version: str, access_token: str, *,
                 timeout: tuple[float, float] = TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.timeout = timeout
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({ACCESS_TOKEN_HEADER: access_token, "Accept": "application/json"})
        #: the last ``(used, size)`` of the rate-limit bucket Shopify reported, if any
        self.call_limit: tuple[int, int] | None = None

    @classmethod
    def for_shop(cls, shop: ShopContext, **kwargs: Any) -> "ShopifyAdminClient":
        """A client for ``shop``: settings ``api_base_url`` / ``api_version``, credential ``access_token``."""
        token = shop.credentials.get("access_token")
        if not token or not isinstance(token, str):
            raise PlatformAuthError(f"no Shopify access token stored for {shop.domain}")
        base_url = shop.settings.get("api_base_url", DEFAULT_BASE_URL).format(domain=shop.domain)
        version = shop.settings.get("api_version", DEFAULT_API_VERSION)
        return cls(base_url, version, token, **kwargs)

    def __enter__(self) -> "ShopifyAdminClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

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
            items = body.get(resource) if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise PlatformUnavailableError(f"Shopify {resource}.json answered without a list")
            yield from (item for item in items if isinstance(item, dict))

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        """GET ``/admin/api/{version}/{path}`` and return its JSON (fractions as ``Decimal``)."""
        url = f"{self.base_url}/admin/api/{self.api_version}/{path}"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = self._send(url, params)
            if response.status_code != 429 or attempt == MAX_ATTEMPTS:
                break
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            log.info("Shopify throttled %s (attempt %d), retrying in %.1fs", path, attempt, wait)
            self._sleep(wait)
        return self._result(path, response)

    def _send(self, url: str, params: Mapping[str, str]) -> requests.Response:
        try:
            # no redirects: the access token header would follow them to another host
            response = self.session.get(url, params=params, timeout=self.timeout,
                                        allow_redirects=False)
        except requests.Timeout as exc:
            raise PlatformUnavailableError(f"Shopify timed out: {exc}") from None
        except requests.RequestException as exc:
            raise PlatformUnavailableError(f"Shopify unreachable: {exc}") from None
        self.call_limit = parse_call_limit(response.headers.get(CALL_LIMIT_HEADER)) or self.call_limit
        return response

    def _result(self, path: str, response: requests.Response) -> Any:
        status = response.status_code
        if status == 200:
            try:
                return load_json(response.content)
            except PayloadInvalidError:
                raise PlatformUnavailableError(f"Shopify {path} answered 200 without JSON") from None
        if status in (401, 403):
            raise PlatformAuthError(f"Shopify refused the access token ({status}) for {path}")
        if status == 429 or status >= 500:
            raise PlatformUnavailableError(f"Shopify answered {status} for {path}")
        if status in (402, 423):
            # 402: the shop is frozen (unpaid bill); 423: the shop is locked. Both end on Shopify's side.
            raise PlatformUnavailableError(f"Shopify shop unavailable ({status}) for {path}")
        # 3xx/404/406/422…: not transient, but the fetch contract's only other error means "stop";
        # the worker's retries are bounded, and the status is kept in the delivery's error.
        raise PlatformUnavailableError(f"Shopify answered an unexpected {status} for {path}")


def retry_after_seconds(value: str | None) -> float:
    """Seconds to wait for a 429: Shopify's ``Retry-After`` (``"2.0"``), bounded to [0, cap]."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER
    if seconds != seconds:  # NaN
        seconds = DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """``"32/40"`` → ``(32, 40)``; None for a missing or garbled header."""
    used, sep, size = (value or "").partition("/")
    if not sep or not used.strip().isdigit() or not size.strip().isdigit():
        return None
    return int(used), int(size)
