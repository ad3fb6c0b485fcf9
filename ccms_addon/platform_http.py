"""The HTTP behaviour every platform admin-API client shares.

Each platform plugin keeps its own small client (paths, pagination, its rate-limit header), built on
:class:`AdminApiClient`, which owns what they all must do the same way:

* one ``requests.Session`` per client, closed by the context manager;
* ``(connect, read)`` timeouts on every request;
* a few quick in-call retries of ``429 Too Many Requests``, honouring ``Retry-After`` but never waiting
  longer than a couple of seconds: a long wait is the job queue's backoff's business, not a worker's;
* one error mapping, the adapter contract of :mod:`ccms_addon.platforms`: connection failures, timeouts,
  5xx and a 429 that outlasts the retries are :class:`PlatformUnavailableError` (retry later),
  401/403 are :class:`PlatformAuthError`, any other refusal is :class:`PlatformError`;
* JSON decoded with fractions as ``Decimal`` (money is never a float);
* no redirect followed while a credential travels with the request (a redirect to another host would
  carry the access token there);
* an injectable ``sleep`` so tests make every wait instant and can read it;
* a hook, :meth:`AdminApiClient.observe_response`, where a platform reads its rate-limit headers and
  asks for a pause before the next call.

This module is core: it knows no platform. Plugins import it, never the other way round.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Self

import requests

from ccms_addon.platforms import (PayloadInvalidError, PlatformAuthError, PlatformError,
                                  PlatformUnavailableError, load_json)

log = logging.getLogger(__name__)

#: (connect, read) timeouts in seconds for one request: a stalled platform must not hold a worker
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: quick retries of a 429 inside one call (so ``1 + DEFAULT_MAX_RETRIES`` attempts in all)
DEFAULT_MAX_RETRIES = 2
#: longest in-call wait, whatever ``Retry-After`` or a rate-limit header asks for
DEFAULT_RETRY_AFTER_CAP = 2.0
#: wait after a 429 without a usable ``Retry-After``
DEFAULT_RETRY_AFTER = 0.5
#: request headers that carry a credential (lower case): while one is set, redirects are not followed
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie",
                                "x-shopify-access-token", "x-api-key"})
#: longest platform error text kept in an exception message
MAX_ERROR_DETAIL = 300

Sleep = Callable[[float], None]


def retry_after_seconds(value: str | None, *, cap: float = DEFAULT_RETRY_AFTER_CAP,
                        default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds a ``Retry-After`` asks for (delta-seconds or an HTTP date), bounded to ``[0, cap]``.

    A missing or unreadable value (``"soon"``, ``"nan"``) means ``default``.
    """
    text = (value or "").strip()
    if not text:
        seconds = default
    else:
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(text) - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = default
    if seconds != seconds:  # NaN
        seconds = default
    return max(0.0, min(seconds, cap))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money goes out as a decimal string, the way platforms write it
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class AdminApiClient:
    """Requests to one shop's admin API with one set of credentials.

    Subclasses set :attr:`platform` (the name in error messages) and may override the class
    defaults, :meth:`observe_response` (rate-limit headers), :meth:`error_detail` (the platform's
    error body) and :meth:`error_for` (a platform's own reading of a status).
    """

    #: the platform's name in exception messages
    platform = "platform"
    max_retries = DEFAULT_MAX_RETRIES
    retry_after_cap = DEFAULT_RETRY_AFTER_CAP
    default_retry_after = DEFAULT_RETRY_AFTER

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None,
                 auth: tuple[str, str] | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, max_retries: int | None = None,
                 sleep: Sleep = time.sleep, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if max_retries is not None:
            self.max_retries = max_retries
        self._sleep = sleep
        self._pause = 0.0
        self.session = session or requests.Session()
        if auth is not None:
            self.session.auth = auth
        self.headers: dict[str, str] = {"Accept": "application/json", **(headers or {})}

    # -- lifetime ----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- requests ----------------------------------------------------------------------------------

    @property
    def sends_credentials(self) -> bool:
        """True when a credential travels with every request (then no redirect is followed)."""
        names = {name.lower() for name in (*self.headers, *self.session.headers)}
        return self.session.auth is not None or bool(names & CREDENTIAL_HEADERS)

    def url_for(self, path: str) -> str:
        """The absolute URL of ``path``, relative to the client's base URL."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json_body: Any = None, missing_ok: bool = False) -> Any | None:
        """The decoded JSON answer (fractions as Decimal); None for an empty body, or for a 404
        when ``missing_ok``. Errors as :meth:`send`."""
        response = self.send(method, path, params=params, json_body=json_body, missing_ok=missing_ok)
        return None if response is None else self.decode(path, response)

    def send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json_body: Any = None, missing_ok: bool = False) -> requests.Response | None:
        """The 2xx response to one request, after the quick 429 retries; None for a 404 when
        ``missing_ok``.

        Raises ``PlatformUnavailableError`` when the API cannot be reached, times out, answers 5xx
        or keeps answering 429; ``PlatformAuthError`` on 401/403; ``PlatformError`` on any other
        refusal (see :meth:`error_for`).
        """
        method = method.upper()
        data = None
        headers = dict(self.headers)
        if json_body is not None:
            data = json.dumps(json_body, default=_json_default).encode("utf-8")
            headers["Content-Type"] = "application/json"
        attempts = 1 + max(self.max_retries, 0)
        for attempt in range(1, attempts + 1):
            if self._pause:
                self._sleep(self._pause)
                self._pause = 0.0
            response = self._send_once(method, self.url_for(path), params, data, headers)
            self._pause = min(max(self.observe_response(response), 0.0), self.retry_after_cap)
            if response.status_code != 429 or attempt == attempts:
                break
            self._pause = 0.0  # Retry-After says how long; the bucket header adds nothing to it
            wait = retry_after_seconds(response.headers.get("Retry-After"), cap=self.retry_after_cap,
                                       default=self.default_retry_after)
            # no path in the log line: some paths name a customer
            log.info("%s throttled a %s (attempt %d of %d), retrying in %.2fs",
                     self.platform, method, attempt, attempts, wait)
            self._sleep(wait)
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        raise self.error_for(method, path, response)

    def _send_once(self, method: str, url: str, params: Mapping[str, Any] | None,
                   data: bytes | None, headers: Mapping[str, str]) -> requests.Response:
        try:
            return self.session.request(method, url, params=params, data=data, headers=headers,
                                        timeout=self.timeout,
                                        allow_redirects=not self.sends_credentials)
        except requests.Timeout as exc:
            # the exception text names the URL with its query: keep only its kind
            raise PlatformUnavailableError(
                f"{self.platform} timed out ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise PlatformUnavailableError(
                f"{self.platform} unreachable ({type(exc).__name__})") from None

    def decode(self, path: str, response: requests.Response) -> Any | None:
        """The JSON body (fractions as Decimal), None when empty; a 2xx that is not JSON is the
        platform (or a proxy in front of it) misbehaving: ``PlatformUnavailableError``."""
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return load_json(response.content)
        except PayloadInvalidError:
            raise PlatformUnavailableError(
                f"{self.platform} answered {path} with a non-JSON body "
                f"(HTTP {response.status_code})") from None

    # -- hooks -------------------------------------------------------------------------------------

    def observe_response(self, response: requests.Response) -> float:
        """Read the platform's rate-limit headers; return seconds to pause before the next call
        (capped at :attr:`retry_after_cap`). The default reads nothing and never pauses."""
        return 0.0

    def error_detail(self, response: requests.Response) -> str:
        """A short text of the platform's error body (``errors``, ``error``, ``code``, ``message``)."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        parts = [body[key] for key in ("code", "errors", "error", "message") if body.get(key)]
        text = " ".join(p if isinstance(p, str) else json.dumps(p, ensure_ascii=False, default=str)
                        for p in parts)
        return text[:MAX_ERROR_DETAIL]

    def error_for(self, method: str, path: str, response: requests.Response) -> PlatformError:
        """The exception for a non-2xx answer (a 429 here has outlasted the quick retries)."""
        status = response.status_code
        if status == 429:
            return PlatformUnavailableError(
                f"{self.platform} {method} {path}: still rate limited (HTTP 429) after "
                f"{1 + max(self.max_retries, 0)} attempts")
        detail = self.error_detail(response)
        text = f"{self.platform} {method} {path}: HTTP {status}" + (f" {detail}" if detail else "")
        if status in (401, 403):
            return PlatformAuthError(f"{text} (credentials refused)")
        if status >= 500:
            return PlatformUnavailableError(text)
        if 300 <= status < 400:
            return PlatformError(f"{text}: a redirect, not followed with credentials")
        return PlatformError(text)
