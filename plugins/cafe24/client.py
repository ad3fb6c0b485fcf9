"""A small HTTP client for the Cafe24 Admin API.

Cafe24 meters every mall with a leaky bucket (``X-Api-Call-Limit: used/max``, 40 calls, draining about
2 calls a second) and answers 429 when it overflows. A job may wait a little for the bucket, never long:
in-call waits are capped at :data:`RETRY_AFTER_CAP` and anything longer becomes
:class:`PlatformUnavailableError`, which the worker retries with its own backoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ccms_addon.platforms import PlatformAuthError, PlatformError, PlatformUnavailableError

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

Sleep = Callable[[float], None]


def retry_after_seconds(value: str | None, cap: float = RETRY_AFTER_CAP) -> float:
    """Seconds to wait for a ``Retry-After`` value (seconds or an HTTP date), between 0 and ``cap``."""
    if not value:
        return min(DEFAULT_RETRY_AFTER, cap)
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            seconds = DEFAULT_RETRY_AFTER
    if seconds != seconds:  # NaN
        seconds = DEFAULT_RETRY_AFTER
    return max(0.0, min(seconds, cap))


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


def _error_text(response: requests.Response) -> str:
    """Cafe24's ``{"error": {"code", "message"}}`` as one line, or the bare status."""
    try:
        error = response.json().get("error", {})
        return f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return str(response.status_code)


class Cafe24Client:
    """GET requests to one mall's Admin API with one access token.

    Used as a context manager so the connection pool is closed when a job is done with the mall.
    """

    def __init__(self, base_url: str, access_token: str, api_version: str, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, max_retries: int = MAX_RETRIES,
                 sleep: Sleep = time.sleep, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._pause = 0.0
        self._session = session or requests.Session()
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "X-Cafe24-Api-Version": api_version,
        }

    def __enter__(self) -> "Cafe24Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any | None:
        """The decoded JSON answer (fractions as Decimal), or None for 404.

        Raises ``PlatformAuthError`` on 401/403, ``PlatformUnavailableError`` when the API cannot be
        reached, times out, answers 5xx or keeps answering 429, ``PlatformError`` on other refusals.
        """
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            if self._pause:
                self._sleep(self._pause)
                self._pause = 0.0
            response = self._send(url, params)
            self._pause = call_limit_pause(response.headers.get("X-Api-Call-Limit"))
            if response.status_code == 429 and attempt < self.max_retries:
                self._pause = 0.0
                self._sleep(retry_after_seconds(response.headers.get("Retry-After")))
                continue
            return self._decode(path, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, url: str, params: Mapping[str, str] | None) -> requests.Response:
        try:
            return self._session.get(url, params=params, headers=self._headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise PlatformUnavailableError(f"Cafe24 API timed out: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise PlatformUnavailableError(f"Cafe24 API unreachable: {type(exc).__name__}") from exc

    def _decode(self, path: str, response: requests.Response) -> Any | None:
        status = response.status_code
        if status == 404:
            return None
        if status in (401, 403):
            raise PlatformAuthError(
                f"Cafe24 refused the access token for {path}: {_error_text(response)}")
        if status == 429:
            raise PlatformUnavailableError(
                f"Cafe24 API rate limit on {path}: still 429 after {self.max_retries} retries")
        if status >= 500:
            raise PlatformUnavailableError(f"Cafe24 API error on {path}: {_error_text(response)}")
        if not 200 <= status < 300:
            raise PlatformError(f"Cafe24 API refused {path}: {_error_text(response)}")
        try:
            return json.loads(response.content, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise PlatformUnavailableError(f"Cafe24 API answered {path} with a non-JSON body") from None
