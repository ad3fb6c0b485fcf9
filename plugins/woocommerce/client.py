"""A small client for the WooCommerce REST API v3 (``{site}/wp-json/wc/v3/...``).

Authentication is HTTP Basic with the REST API consumer key and secret, which WooCommerce documents for
HTTPS sites (a plain-HTTP site accepts only OAuth 1.0a one-legged signatures; this client does not sign,
so such shops must be served over HTTPS). Collections are paginated: the total number of pages comes in
the ``X-WP-TotalPages`` header and ``per_page`` is at most 100.

Retries, timeouts and the error mapping are the shared
:class:`~ccms_addon.platform_http.AdminApiClient`'s: connection failures, timeouts, 5xx and a 429 that
outlasts the quick in-call retries are ``PlatformUnavailableError`` (the worker retries with backoff);
401/403 are ``PlatformAuthError``. One exception: WooCommerce reports every ``wc_create_refund``
failure (an amount above what remains, a gateway that cannot refund) as HTTP 500 with the code
``woocommerce_rest_cannot_create_order_refund``; that is a refusal, ``PlatformError`` with
WooCommerce's message, unless the message is the generic "please try again".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from ccms_addon import __version__
from ccms_addon.platform_http import AdminApiClient
from ccms_addon.platform_http import retry_after_seconds as _retry_after_seconds
from ccms_addon.platforms import PayloadInvalidError, PlatformError

#: Seconds to open a connection and to wait between bytes of the answer.
TIMEOUT = (5.0, 30.0)
#: The REST API's upper bound for ``per_page``.
MAX_PER_PAGE = 100
#: Attempts of one request when the site answers 429 Too Many Requests.
RATE_LIMIT_ATTEMPTS = 3
#: Longest in-call wait for a 429's Retry-After; a longer wait is the worker's backoff's business.
MAX_RETRY_WAIT = 2.0
#: Wait after a 429 without a usable Retry-After.
DEFAULT_RETRY_WAIT = 0.5
#: The error code of a refund WooCommerce refused (sent with HTTP 500, see the module docstring).
REFUND_REFUSED_CODE = "woocommerce_rest_cannot_create_order_refund"
#: The one message of that code that means "transient": WooCommerce's own generic failure.
REFUND_RETRY_MESSAGE = "Cannot create order refund, please try again."
#: Safety stop for a site whose X-WP-TotalPages never ends.
MAX_PAGES = 1000
API_PATH = "/wp-json/wc/v3"
USER_AGENT = f"ccms-addon/{__version__}"


def retry_after_seconds(value: str | None) -> float:
    """Seconds a Retry-After asks for (delta-seconds or an HTTP date), capped at MAX_RETRY_WAIT."""
    return _retry_after_seconds(value, cap=MAX_RETRY_WAIT, default=DEFAULT_RETRY_WAIT)


class WooCommerceClient(AdminApiClient):
    """Reads collections of one WooCommerce site; a context manager, as it owns a requests.Session."""

    platform = "WooCommerce"
    max_retries = RATE_LIMIT_ATTEMPTS - 1
    retry_after_cap = MAX_RETRY_WAIT
    default_retry_after = DEFAULT_RETRY_WAIT

    def __init__(self, base_url: str, consumer_key: str, consumer_secret: str, *,
                 timeout: tuple[float, float] = TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(base_url.rstrip("/") + API_PATH, auth=(consumer_key, consumer_secret),
                         headers={"User-Agent": USER_AGENT}, timeout=timeout, sleep=sleep)
        self.api_url = self.base_url

    def error_detail(self, response: requests.Response) -> str:
        """The ``code`` of WooCommerce's error body ``{"code", "message", "data": {"status"}}``."""
        try:
            body = response.json()
        except ValueError:
            return ""
        return str(body.get("code", "")) if isinstance(body, dict) else ""

    def error_for(self, method: str, path: str, response: requests.Response) -> PlatformError:
        """A refund WooCommerce refused (HTTP 500 ``woocommerce_rest_cannot_create_order_refund``)
        is ``PlatformError`` carrying WooCommerce's message, which is written for the merchant."""
        if response.status_code == 500:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("code") == REFUND_REFUSED_CODE:
                message = str(body.get("message") or "").strip()
                if message and message != REFUND_RETRY_MESSAGE:
                    return PlatformError(f"WooCommerce refused the refund: {message[:300]}")
        return super().error_for(method, path, response)

    def list_all(self, resource: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every item of ``GET /<resource>`` with these filters, following X-WP-TotalPages."""
        return [item for page in self._pages(resource, params) for item in page]

    def _pages(self, resource: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        page, total_pages = 1, 1
        while page <= min(total_pages, MAX_PAGES):
            response = self.send("GET", resource, params={**params, "per_page": MAX_PER_PAGE,
                                                          "page": page})
            yield self._json_list(response, resource)
            total_pages = wp_total_pages(response)
            page += 1

    def _json_list(self, response: requests.Response, resource: str) -> list[dict[str, Any]]:
        body = self.decode(resource, response)  # Decimal for fractional numbers, never float
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise PayloadInvalidError(f"WooCommerce {resource}: expected a JSON array of objects")
        return body


def wp_total_pages(response: requests.Response) -> int:
    try:
        return max(int(response.headers.get("X-WP-TotalPages", "1")), 1)
    except ValueError:
        return 1
