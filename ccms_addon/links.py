"""Signed, expiring links a shopper follows from a message back to us (itsdangerous).

A link carries what it is for (``purpose``, also the salt: a check-in link cannot be replayed as a
claim link) and the ids it acts on, signed with ``CCMS_SECRET_KEY``; it expires after ``max_age``.
The token is the only credential of the hosted pages: it names the shop, so the tenant never comes
from a parameter.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ccms_addon.config import Settings

#: how long a follow-up's link works: past the longest guarantee window a message can mention
DEFAULT_MAX_AGE = 400 * 24 * 3600


class LinkInvalidError(ValueError):
    """Tampered with, made for another purpose, or never ours."""


class LinkExpiredError(LinkInvalidError):
    """Authentic but older than its ``max_age``."""


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=f"ccms-link:{purpose}")


def make_token(settings: Settings, purpose: str, payload: dict[str, Any]) -> str:
    return _serializer(settings, purpose).dumps(payload)


def read_token(settings: Settings, purpose: str, token: str,
               max_age: int = DEFAULT_MAX_AGE) -> dict[str, Any]:
    try:
        payload = _serializer(settings, purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkExpiredError("This link has expired.") from None
    except BadSignature:
        raise LinkInvalidError("This link is not valid.") from None
    if not isinstance(payload, dict):
        raise LinkInvalidError("This link is not valid.")
    return payload


def make_link(settings: Settings, path: str, purpose: str, payload: dict[str, Any],
              query: str = "") -> str:
    """``{CCMS_PUBLIC_URL}{path}/{token}`` (+ ``?query``)."""
    url = f"{settings.public_url}{path}/{make_token(settings, purpose, payload)}"
    return f"{url}?{query}" if query else url
