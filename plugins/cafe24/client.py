"""A small HTTP client for the Cafe24 Admin API.

Cafe24 meters every mall with a leaky bucket (``X-Api-Call-Limit: used/max``, 40 calls, draining about
2 calls a second) and answers 429 when it overflows. A job may wait a little for the bucket, never long:
in-call waits are capped at :data:`RETRY_AFTER_CAP` and anything longer becomes
:class:`PlatformUnavailableError`, which the worker retries with its own backoff. The retries, timeouts
and error mapping are the shared :class:`~ccms_addon.platform_http.AdminApiClient`'s; this module adds
Cafe24's headers, its call-limit header and its error body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from ccms_addon.platform_http import AdminApiClient
from ccms_addon.platform_http import retry_after_seconds as _retry_after_seconds

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

    def observe_response(self, response: requests.Response) -> float:
        """Slow down before the bucket overflows (``X-Api-Call-Limit``)."""
        return call_limit_pause(response.headers.get(CALL_LIMIT_HEADER), self.retry_after_cap)

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
