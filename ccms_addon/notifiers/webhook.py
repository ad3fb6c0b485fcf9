"""The ``webhook`` channel: a signed JSON POST to an HTTP endpoint.

It is the road to KakaoTalk Alimtalk and SMS providers: a small relay (or the provider, when it
speaks this shape) receives one JSON document per message and passes it on.

Configuration comes from ``CCMS_WEBHOOK_*`` (``settings_name = "webhook"``), overlaid with the
shop's own channel settings, which may name their own ``url`` and ``secret``:

``url``
    ``https://…``; plain ``http://`` only to a loopback host (a relay on the same machine).
``secret``
    the HMAC key, at least :data:`MIN_SECRET_LENGTH` characters, shared with the receiver.

The request
-----------
``POST <url>`` with the body (UTF-8 JSON)::

    {"id": "<idempotency key>", "channel": "...", "shop_id": 1, "recipient": "...",
     "subject": "..." | null, "body": "...", "locale": "ko" | null, "data": {...},
     "sent_at": "2024-05-01T09:30:00Z"}

and the headers ``Content-Type: application/json``, ``Idempotency-Key: <id>``,
``X-CCMS-Timestamp: <unix seconds>`` and ``X-CCMS-Signature: v1=<hex>``, where ``<hex>`` is the
HMAC-SHA256, keyed with the secret, of ``<timestamp>.<raw body>`` (the timestamp's ASCII digits, a
dot, then the body's bytes exactly as received).

Verifying it (receivers)
------------------------
Read the raw body before any JSON parsing, then call :func:`verify_signature` (or do the same in
another language):

1. refuse a request whose timestamp is more than 5 minutes (``tolerance``) from your clock: a
   captured request cannot be replayed later;
2. compute ``HMAC-SHA256(secret, timestamp + "." + raw_body)`` in hex and compare it with each
   ``v1=`` value of the header **in constant time** (``hmac.compare_digest``), never with ``==``;
3. de-duplicate on ``Idempotency-Key``: the same message may arrive twice (see below), and must be
   acted on once. Answer 2xx once you have stored it.

Outcomes
--------
2xx: accepted. 408, 425, 429 and 5xx: :class:`DeliveryDeferredError` (its message carries the
``Retry-After`` the receiver asked for, and the exception a ``retry_after`` attribute in seconds, or
``None``). Any other 4xx: :class:`DeliveryRejectedError`. A redirect (3xx; redirects are never
followed, the body would go where nobody configured): :class:`NotifierConfigError` naming the new
location. A failure to connect: :class:`DeliveryDeferredError`. A read timeout, or a connection that
drops after the request went out, leaves the outcome unknown — but the receiver holds the
Idempotency-Key and by this contract de-duplicates on it, so a second attempt is safe: these are
:class:`DeliveryDeferredError` as well, never :class:`DeliveryOutcomeUnknownError`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import requests

from ccms_addon import __version__, hookimpl
from ccms_addon.outbox import (DeliveryDeferredError, DeliveryRejectedError, NotifierConfigError,
                               OutgoingMessage)

__all__ = ["CONNECT_TIMEOUT", "MIN_SECRET_LENGTH", "READ_TIMEOUT", "RETRYABLE_STATUSES",
           "SIGNATURE_HEADER", "SIGNATURE_TOLERANCE", "SIGNATURE_VERSION", "TIMESTAMP_HEADER",
           "WebhookNotifier", "WebhookSettings", "build_payload", "register_notifiers", "sign",
           "verify_signature"]

#: seconds to open the connection (DNS, TCP, TLS) and to wait for each read of the answer
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
#: statuses that say "not now": the receiver did not act on the request
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: the headers that carry the signature and the moment it was made
SIGNATURE_HEADER = "X-CCMS-Signature"
TIMESTAMP_HEADER = "X-CCMS-Timestamp"
#: the scheme of the signature (``v1=<hex HMAC-SHA256>``); a new scheme gets a new prefix
SIGNATURE_VERSION = "v1"
#: the largest clock difference, in seconds, :func:`verify_signature` accepts by default
SIGNATURE_TOLERANCE = 300
#: the shortest secret accepted: an HMAC key is only as strong as it is long
MIN_SECRET_LENGTH = 16
#: bytes of a refusal's body kept in the error message
MAX_ERROR_DETAIL = 300
USER_AGENT = f"ccms-addon/{__version__} (+webhook notifier)"


# --------------------------------------------------------------------------------------------------
# Signing and verifying
# --------------------------------------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-CCMS-Signature`` value for ``body`` sent at ``timestamp``: ``v1=<hex>``."""
    digest = hmac.new(_bytes(secret), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(secret: str | bytes, timestamp: str | int | None, body: str | bytes,
                     signature: str | None, now: float | None = None,
                     tolerance: float = SIGNATURE_TOLERANCE) -> bool:
    """True when ``signature`` (the ``X-CCMS-Signature`` header) signs ``body`` at ``timestamp``
    (the ``X-CCMS-Timestamp`` header) with ``secret``, and ``timestamp`` is within ``tolerance``
    seconds of ``now`` (the current time when ``None``).

    ``body`` is the raw request body, as received. The header may carry several comma-separated
    ``v1=`` values (a sender in the middle of a key rotation); one match is enough. Comparisons
    are constant-time.
    """
    if not secret or timestamp is None or not signature:
        return False
    stamp = str(timestamp).strip()
    if not stamp.isascii() or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    expected = sign(secret, stamp, _bytes(body)).encode("ascii")
    matched = False
    for candidate in signature.split(","):
        candidate = candidate.strip()
        if not candidate.isascii():
            continue
        # no early exit: every candidate is compared, so timing says nothing about which matched
        matched |= hmac.compare_digest(candidate.encode("ascii"), expected)
    return matched


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebhookSettings:
    """Where to POST and what to sign with."""

    url: str
    secret: str = field(repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> "WebhookSettings":
        """Parse ``url`` and ``secret``; raises :class:`NotifierConfigError` when either is
        missing or unusable (not http(s), plain http to a host other than loopback, credentials
        in the URL, a short secret)."""
        url = (config.get("url") or "").strip()
        if not url:
            raise NotifierConfigError("the webhook channel is not configured: set CCMS_WEBHOOK_URL")
        parts = urlsplit(url)
        try:
            parts.port
        except ValueError:
            raise NotifierConfigError("CCMS_WEBHOOK_URL has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifierConfigError("CCMS_WEBHOOK_URL must be an https:// URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise NotifierConfigError("CCMS_WEBHOOK_URL must use https:// (plain http:// is only "
                                      "allowed to a loopback host)")
        if parts.username or parts.password:
            raise NotifierConfigError("CCMS_WEBHOOK_URL must not carry credentials: the request "
                                      "is authenticated by its signature")
        if any(c.isspace() for c in url):
            raise NotifierConfigError("CCMS_WEBHOOK_URL must not contain spaces")
        secret = config.get("secret") or ""
        if len(secret) < MIN_SECRET_LENGTH:
            raise NotifierConfigError(f"CCMS_WEBHOOK_SECRET must be set, at least "
                                      f"{MIN_SECRET_LENGTH} characters long")
        return cls(url=url, secret=secret)


# --------------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the store keeps naive UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # money as a decimal string: KRW and JPY stay exact
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def build_payload(message: OutgoingMessage, sent_at: datetime | None = None) -> bytes:
    """The request body for ``message``: compact UTF-8 JSON (Korean and Japanese text unescaped).

    Raises :class:`DeliveryRejectedError` when ``message.data`` holds something JSON cannot carry:
    no later attempt would do better.
    """
    moment = (sent_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    document = {
        "id": message.key,
        "channel": message.channel,
        "shop_id": message.shop_id,
        "recipient": message.recipient,
        "subject": message.subject,
        "body": message.body,
        "locale": message.locale,
        "data": dict(message.data),
        "sent_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"),
                          default=_json_default, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DeliveryRejectedError(f"message {message.key} cannot be sent as JSON: {exc}"
                                    ) from None


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or ``None``."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(text) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _detail(response: requests.Response) -> str:
    """A short, one-line excerpt of the answer's body (read with a bound: it is not ours)."""
    try:
        raw = response.raw.read(MAX_ERROR_DETAIL, decode_content=True) or b""
    except Exception:  # noqa: BLE001 — the status is what matters; the excerpt is a courtesy
        return ""
    return " ".join(raw.decode("utf-8", errors="replace").split())[:MAX_ERROR_DETAIL]


class WebhookNotifier:
    """POSTs :class:`OutgoingMessage` s of the ``webhook`` channel, signed, to ``CCMS_WEBHOOK_URL``
    (or the shop's own ``url``). See the module docstring for the request and the outcomes."""

    #: the channel messages are addressed to
    channel = "webhook"
    #: configuration comes from the ``CCMS_WEBHOOK_*`` variables
    settings_name = "webhook"

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT):
        self.timeout = (connect_timeout, read_timeout)

    def send(self, message: OutgoingMessage, config: Mapping[str, str],
             handover: Callable[[], None] = lambda: None) -> None:
        """POST ``message`` once; return when the receiver answered 2xx. ``handover`` runs just
        before the request leaves (the outbox's point of no return)."""
        settings = WebhookSettings.from_config(config)
        if not message.key or not message.key.isascii() or not message.key.isprintable():
            raise DeliveryRejectedError(f"idempotency key {message.key!r} cannot be a header")
        body = build_payload(message)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": message.key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(settings.secret, timestamp, body),
        }
        handover()
        try:
            response = requests.post(settings.url, data=body, headers=headers,
                                     timeout=self.timeout, allow_redirects=False, stream=True)
        except requests.exceptions.ConnectTimeout as exc:
            raise DeliveryDeferredError(f"webhook: no connection within {self.timeout[0]} s: "
                                        f"{exc}") from None
        except requests.exceptions.ReadTimeout:
            # the request went out and no answer came: it may have been acted on, but the receiver
            # de-duplicates on Idempotency-Key (the contract), so trying again is safe
            raise DeliveryDeferredError(f"webhook: no answer within {self.timeout[1]} s "
                                        "(safe to retry: the receiver de-duplicates on "
                                        "Idempotency-Key)") from None
        except requests.exceptions.ConnectionError as exc:
            # refused, unresolvable, TLS failure — or dropped after the request went out, which
            # Idempotency-Key makes as safe to retry as the rest
            raise DeliveryDeferredError(f"webhook: connection failed: {exc}") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise NotifierConfigError(f"CCMS_WEBHOOK_URL cannot be used: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise DeliveryDeferredError(f"webhook: {type(exc).__name__}: {exc}") from None
        with response:
            self._check(response)

    @staticmethod
    def _check(response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise NotifierConfigError(
                f"the webhook URL answered {status} (redirects are not followed): "
                f"configure {response.headers.get('Location') or 'the new address'} instead")
        detail = _detail(response)
        text = f"webhook answered {status} {response.reason or ''}".rstrip()
        if status in RETRYABLE_STATUSES or status >= 500:
            raw_retry_after = response.headers.get("Retry-After")
            retry_after = _retry_after(raw_retry_after)
            if raw_retry_after:
                text += f" (Retry-After: {' '.join(raw_retry_after.split())[:64]})"
            error = DeliveryDeferredError(f"{text}: {detail}" if detail else text)
            error.retry_after = retry_after  # type: ignore[attr-defined]
            raise error
        raise DeliveryRejectedError(f"{text}: {detail}" if detail else text)


@hookimpl
def register_notifiers() -> list[WebhookNotifier]:
    return [WebhookNotifier()]
