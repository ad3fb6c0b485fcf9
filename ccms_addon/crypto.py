"""Secrets at rest: platform credentials and webhook secrets are stored Fernet-encrypted.

``CCMS_ENCRYPTION_KEYS`` lists Fernet keys, newest first (MultiFernet: the first encrypts, all decrypt,
so a key can be rotated without downtime; ``ccms-addon keys rotate`` re-encrypts what is stored).
Without it, the key is derived from ``CCMS_SECRET_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ccms_addon.config import Settings


class SecretBox:
    """Encrypts and decrypts small secrets (strings or JSON objects) with the instance's keys."""

    def __init__(self, settings: Settings):
        # the key derived from CCMS_SECRET_KEY always decrypts, last: an instance that starts
        # setting CCMS_ENCRYPTION_KEYS reads what it wrote before and `keys rotate` moves it over
        keys = [*settings.encryption_keys, _derive_key(settings.secret_key)]
        self._fernet = MultiFernet([Fernet(k) for k in dict.fromkeys(keys)])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with the configured keys") from None

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (``ccms-addon keys rotate``)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with the configured keys") from None

    def encrypt_json(self, value: dict[str, Any]) -> str:
        return self.encrypt(json.dumps(value, separators=(",", ":")))

    def decrypt_json(self, token: str | None) -> dict[str, Any]:
        return json.loads(self.decrypt(token)) if token else {}


def _derive_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"ccms-addon", info=b"secrets-at-rest")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def token_digest(token: str) -> str:
    """How API tokens are stored and looked up: their SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()
