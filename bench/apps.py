"""The two reference endpoints ``bench/webhooks.py`` measures the real webhook ingress against.

Served by gunicorn (sync workers) exactly like ``ccms_addon.wsgi:app``:

* ``apps:bare_app`` — (a) a bare Flask endpoint: read the request body, answer 200. The framework's
  ceiling. (The body is read because a sync worker closes the connection after each answer, and a
  socket closed with unread bytes resets the connection before the client reads the answer.)
* ``apps:raw_app`` — (b) the durability limit: check the Shopify HMAC-SHA256 in constant time, then
  one durable ``INSERT`` of the body through the database driver itself (sqlite3 in WAL mode with
  ``synchronous=FULL``, as ``ccms_addon/store/db.py`` sets it; psycopg 3 for PostgreSQL), committed
  before the answer. Nothing else: no framework ORM, no JSON parsing, no shop lookup.

Both are configured from the environment that ``bench/webhooks.py`` sets:
``BENCH_RAW_DATABASE_URL`` (``sqlite:///path`` or ``postgresql://…``) and ``BENCH_SHOPIFY_SECRET``.
The raw table is created by the benchmark before gunicorn starts (see :func:`raw_schema`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import sqlite3

from flask import Flask, request

#: the one table the raw reference writes to
RAW_TABLE = "raw_deliveries"

#: SQLite waits this long (ms) for the writer lock, as the add-on's engine does
SQLITE_BUSY_TIMEOUT_MS = 10_000

ACCEPTED = b'{"status":"accepted"}\n'
JSON = {"Content-Type": "application/json"}


def raw_schema(dialect: str) -> str:
    """DDL of the raw reference's table: a delivery id kept unique (the product's dedupe key) and the
    body. The same columns any inbox needs, nothing more."""
    if dialect == "postgresql":
        return (f"CREATE TABLE {RAW_TABLE} (id BIGSERIAL PRIMARY KEY, "
                "delivery_id TEXT NOT NULL UNIQUE, body BYTEA NOT NULL)")
    return (f"CREATE TABLE {RAW_TABLE} (id INTEGER PRIMARY KEY, "
            "delivery_id TEXT NOT NULL UNIQUE, body BLOB NOT NULL)")


# --------------------------------------------------------------------------------------------- (a)

bare_app = Flask("bench_bare")


@bare_app.route("/", methods=["GET", "POST"])
@bare_app.route("/webhooks/shopify", methods=["GET", "POST"])
def bare():
    request.get_data(cache=False)
    return "", 200


# --------------------------------------------------------------------------------------------- (b)

raw_app = Flask("bench_raw")


class _RawStore:
    """One driver connection per worker process, opened on first use (after gunicorn's fork)."""

    def __init__(self, url: str):
        self.url = url
        self.conn = None
        if url.startswith("postgresql"):
            self.dialect = "postgresql"
            self.sql = f"INSERT INTO {RAW_TABLE} (delivery_id, body) VALUES (%s, %s)"
        else:
            self.dialect = "sqlite"
            self.path = url.split("///", 1)[-1]
            self.sql = f"INSERT INTO {RAW_TABLE} (delivery_id, body) VALUES (?, ?)"

    def _connect(self):
        if self.dialect == "postgresql":
            import psycopg
            return psycopg.connect(self.url)
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        return conn

    def insert(self, delivery_id: str, body: bytes) -> None:
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.execute(self.sql, (delivery_id, body))
            self.conn.commit()
        except Exception:
            conn, self.conn = self.conn, None
            try:
                conn.close()
            except Exception:  # noqa: BLE001 — the connection is being dropped anyway
                pass
            raise


_store: _RawStore | None = None
_secret = os.environ.get("BENCH_SHOPIFY_SECRET", "").encode()


@raw_app.get("/")
def raw_ready():
    return "", 200


@raw_app.post("/webhooks/shopify")
def raw():
    global _store
    body = request.get_data(cache=False)
    try:
        signature = base64.b64decode(request.headers.get("X-Shopify-Hmac-Sha256", ""), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    expected = hmac.new(_secret, body, hashlib.sha256).digest()
    if not signature or not hmac.compare_digest(expected, signature):
        return "", 401
    if _store is None:
        _store = _RawStore(os.environ["BENCH_RAW_DATABASE_URL"])
    try:
        _store.insert(request.headers.get("X-Shopify-Webhook-Id", ""), body)
    except Exception:  # noqa: BLE001 — the platform retries a 5xx
        return "", 503
    return ACCEPTED, 200, JSON
