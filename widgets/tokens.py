"""The form token of the widget API (minimum fill time): signed and timestamped, fetched when the
panel opens, checked when it posts, so a bot that posts at once or replays another shop's token
is refused."""

from __future__ import annotations

import time
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

#: the form token must be at least this old (people take longer to write) and at most this old
MIN_FILL_SECONDS = 3
MAX_TOKEN_AGE = 24 * 3600
TOKEN_SALT = "ccms-widget-form-token"


class _IssuedAtSigner(TimestampSigner):
    """A TimestampSigner whose clock can be set, so tests can make an old token without sleeping."""

    def __init__(self, *args: Any, issued_at: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.issued_at = issued_at

    def get_timestamp(self) -> int:
        return int(self.issued_at) if self.issued_at is not None else super().get_timestamp()


def form_token(secret_key: str, shop_id: int, *, issued_at: float | None = None) -> str:
    """A signed, timestamped token naming the shop, fetched when the panel opens."""
    return URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT, signer=_IssuedAtSigner,
                                  signer_kwargs={"issued_at": issued_at}).dumps({"shop": shop_id})


def form_token_problem(secret_key: str, shop_id: int, token: str) -> str | None:
    """Why ``token`` is not acceptable for a submission to ``shop_id`` now, or None."""
    invalid = "This form is not valid any more; reload the page and try again."
    try:
        payload, issued = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).loads(
            token, max_age=MAX_TOKEN_AGE, return_timestamp=True)
    except SignatureExpired:
        return "This form has expired; reload the page and try again."
    except (BadData, UnicodeError):
        return invalid
    if not isinstance(payload, dict) or payload.get("shop") != shop_id:
        return invalid
    if time.time() - issued.timestamp() < MIN_FILL_SECONDS:
        return "Sent too quickly; wait a moment and send again."
    return None
