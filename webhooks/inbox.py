"""The durable inbox: the one write a webhook request makes.

Kept deliberately thin, because it is the whole cost of a delivery beyond the HMAC check:

* the shop a delivery is for is looked up once and cached in the process (:meth:`Inbox.shop`);
* the row is written by **one** ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` on the store's
  direct connection of this thread (``Database.direct``: autocommit, detached from the pool, the
  statement compiled once by SQLAlchemy and prepared by the driver). A single autocommitted
  statement is its own transaction and durable when the driver returns (SQLite WAL with
  ``synchronous=FULL``; PostgreSQL with ``synchronous_commit`` as the server has it), so the
  delivery can be acknowledged at once. On PostgreSQL that is one round trip; on SQLite the write
  lock is held only while the statement runs.

The unique constraint on (platform, shop_id, delivery_id) is what makes a second copy of a
delivery a no-op; ``RETURNING`` tells a new row from a copy on every driver (psycopg's rowcount
does not). Any database error surfaces as :class:`StoreUnavailable` (the view answers 503 and the
platform retries); the connection is then dropped and the next delivery opens a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ccms_addon.platforms import DeliveryIdentity
from ccms_addon.runtime import Runtime
from ccms_addon.store.models import DeliveryStatus, Shop, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

#: seconds a shop's webhook identity (id, decrypted secret) is cached in a web process
SHOP_CACHE_TTL = 30.0
#: a cached identity whose secret failed to verify is read again at most this often (seconds):
#: a merchant who reconnected a moment ago has a new secret; a stream of forged deliveries must
#: not turn into a query each
REFETCH_INTERVAL = 1.0

#: the columns the inbox writes; the others keep their defaults (NULL)
_COLUMNS = ("shop_id", "platform", "delivery_id", "topic", "body", "occurred_at", "received_at",
            "status", "attempts")


class StoreUnavailable(Exception):
    """The delivery could not be committed (database down, locked past its timeout, refused)."""


@dataclass(frozen=True)
class ShopIdentity:
    shop_id: int
    webhook_secret: str | None


def insert_statement(dialect_name: str):
    """``INSERT … ON CONFLICT (platform, shop_id, delivery_id) DO NOTHING RETURNING id``."""
    table = WebhookDelivery.__table__
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return (insert(table)
            .values({name: bindparam(name, type_=table.c[name].type) for name in _COLUMNS})
            .on_conflict_do_nothing(index_elements=["platform", "shop_id", "delivery_id"])
            .returning(table.c.id))


class Inbox:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        #: (platform, domain) → (fetched at, identity)
        self._cache: dict[tuple[str, str], tuple[float, ShopIdentity]] = {}
        self._lock = threading.Lock()

    def shop(self, platform: str, domain: str, *, fresh: bool = False) -> ShopIdentity | None:
        """The shop a delivery is for, whatever its install state (Shopify sends shop/redact to an
        uninstalled app). Only hits are cached, so a shop added a moment ago is found at once;
        ``fresh`` reads the store again unless the cached copy is under :data:`REFETCH_INTERVAL`
        old (the caller's copy failed to verify: its secret may have just been replaced).
        Raises :class:`StoreUnavailable` when the store cannot be asked."""
        key = (platform, domain)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < (REFETCH_INTERVAL if fresh else SHOP_CACHE_TTL):
            return hit[1]
        try:
            with self.runtime.db.engine.connect() as conn:
                row = conn.execute(select(Shop.id, Shop.webhook_secret_encrypted).where(
                    Shop.platform == platform, Shop.domain == domain)).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if row is None:
            return None
        secret = self.runtime.box.decrypt(row.webhook_secret_encrypted) \
            if row.webhook_secret_encrypted else None
        identity = ShopIdentity(row.id, secret)
        with self._lock:
            self._cache[key] = (now, identity)
        return identity

    def store(self, platform: str, shop_id: int, delivery: DeliveryIdentity, body: bytes) -> bool:
        """Commit the delivery; True if new, False if this was a copy of a stored one. Raises
        :class:`StoreUnavailable` when it could not be committed."""
        values = dict(shop_id=shop_id, platform=platform, delivery_id=delivery.delivery_id[:255],
                      topic=delivery.topic[:100], body=body, occurred_at=delivery.occurred_at,
                      received_at=utcnow(), status=DeliveryStatus.RECEIVED, attempts=0)
        try:
            # a kept connection the server closed since its last use is replaced once: the
            # INSERT is idempotent (a copy that did commit answers False, "duplicate")
            return bool(self.runtime.db.run("inbox.insert", insert_statement, values))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc)) from exc
