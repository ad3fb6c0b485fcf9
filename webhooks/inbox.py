"""The durable inbox: the one write a webhook request makes.

Kept deliberately thin: a cached shop lookup and one ``INSERT … ON CONFLICT DO NOTHING`` through
SQLAlchemy Core in its own transaction. The unique constraint on (platform, shop_id, delivery_id)
is what makes a second copy of a delivery a no-op.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from ccms_addon.platforms import DeliveryIdentity
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import DeliveryStatus, Shop, WebhookDelivery, utcnow

#: seconds a shop's webhook identity (id, decrypted secret) is cached in a web process
SHOP_CACHE_TTL = 30.0


@dataclass(frozen=True)
class ShopIdentity:
    shop_id: int
    webhook_secret: str | None


class Inbox:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._cache: dict[tuple[str, str], tuple[float, ShopIdentity]] = {}
        self._lock = Lock()
        table = WebhookDelivery.__table__
        insert = postgresql.insert if runtime.db.dialect == "postgresql" else sqlite.insert
        # RETURNING tells a new row from a copy on every driver (psycopg's rowcount does not).
        self._insert = insert(table).on_conflict_do_nothing(
            index_elements=["platform", "shop_id", "delivery_id"]).returning(table.c.id)

    def shop(self, platform: str, domain: str) -> ShopIdentity | None:
        """The shop a delivery is for, whatever its install state (Shopify sends shop/redact to an
        uninstalled app). Only hits are cached, so a shop added a moment ago is found at once."""
        key = (platform, domain)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        with self.runtime.db.engine.connect() as conn:
            row = conn.execute(select(Shop.id, Shop.webhook_secret_encrypted).where(
                Shop.platform == platform, Shop.domain == domain)).first()
        if row is None:
            return None
        secret = self.runtime.box.decrypt(row.webhook_secret_encrypted) \
            if row.webhook_secret_encrypted else None
        identity = ShopIdentity(row.id, secret)
        with self._lock:
            self._cache[key] = (now + SHOP_CACHE_TTL, identity)
        return identity

    def store(self, platform: str, shop_id: int, delivery: DeliveryIdentity, body: bytes) -> bool:
        """Commit the delivery; True if new, False if this was a copy of a stored one."""
        row = dict(shop_id=shop_id, platform=platform, delivery_id=delivery.delivery_id[:255],
                   topic=delivery.topic[:100], body=body, occurred_at=delivery.occurred_at,
                   received_at=utcnow(), status=DeliveryStatus.RECEIVED, attempts=0)
        with self.runtime.db.engine.begin() as conn:
            return conn.execute(self._insert, row).first() is not None
