"""Reads and writes of the VOC store. Every function takes the shop it works for: nothing here reads
or writes across shops.

Writes from platforms converge whatever order they arrive in: an order or customer row changes only
when the incoming record is strictly newer (by the platform's own ``updated_at``) or completes a
summary. The comparison happens inside one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement, so
two workers racing on the same order cannot both win.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from ccms_addon.crypto import SecretBox, token_digest
from ccms_addon.platforms import CustomerRecord, OrderRecord, RefundRecord
from ccms_addon.store.models import (Customer, Merchant, Order, OrderLine, Refund, Shop, ShopStatus,
                                     utcnow)

#: rows per multi-row statement; keeps SQLite under its 32,766 bound parameters
BATCH_ROWS = 500


def _insert(session: Session, model):
    """A dialect INSERT (for ON CONFLICT) on the model's table, outside the ORM's unit of work."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def _chunks(items: Sequence, size: int = BATCH_ROWS) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --------------------------------------------------------------------------------------------------
# Shops
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewShop:
    """A shop just registered, with the two secrets shown once and stored only as digest/ciphertext."""

    shop: Shop
    api_token: str


def create_shop(session: Session, box: SecretBox, *, platform: str, domain: str,
                merchant: Merchant | None = None, name: str | None = None,
                webhook_secret: str | None = None, credentials: dict | None = None,
                settings: dict | None = None) -> NewShop:
    merchant = merchant or Merchant(name=name or domain)
    api_token = "ccms_" + secrets.token_urlsafe(32)
    shop = Shop(merchant=merchant, platform=platform, domain=domain, name=name or domain,
                widget_key="wk_" + secrets.token_urlsafe(18),
                api_token_digest=token_digest(api_token),
                webhook_secret_encrypted=box.encrypt(webhook_secret) if webhook_secret else None,
                credentials_encrypted=box.encrypt_json(credentials) if credentials else None,
                settings=settings or {})
    session.add(shop)
    session.flush()
    return NewShop(shop, api_token)


def shop_for_token(session: Session, api_token: str) -> Shop | None:
    shop = session.scalar(select(Shop).where(Shop.api_token_digest == token_digest(api_token)))
    return shop if shop is not None and shop.status is ShopStatus.ACTIVE else None


# --------------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------------


def upsert_customers(session: Session, shop_id: int, records: Iterable[CustomerRecord]
                     ) -> dict[str, int]:
    """Insert or update customers; return {platform_customer_id: id} for every record given.

    A record without ``updated_at`` (a customer embedded in an order) fills gaps but never replaces
    a value we already have; a redacted customer is never filled in again.
    """
    newest: dict[str, CustomerRecord] = {}
    for rec in records:
        if rec.platform_customer_id is None:
            continue
        seen = newest.get(rec.platform_customer_id)
        if seen is None or _newer(rec.updated_at, seen.updated_at):
            newest[rec.platform_customer_id] = rec
    if not newest:
        return {}
    now = utcnow()
    rows = [dict(shop_id=shop_id, platform_customer_id=r.platform_customer_id, email=r.email,
                 name=r.name, phone=r.phone, platform_updated_at=r.updated_at, created_at=now,
                 updated_at=now) for r in newest.values()]
    table = Customer.__table__
    stmt = _insert(session, Customer)
    new = stmt.excluded
    strictly_newer = and_(new.platform_updated_at.is_not(None),
                          or_(table.c.platform_updated_at.is_(None),
                              new.platform_updated_at > table.c.platform_updated_at))
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "platform_customer_id"],
        set_=dict(
            email=_prefer(strictly_newer, new.email, table.c.email),
            name=_prefer(strictly_newer, new.name, table.c.name),
            phone=_prefer(strictly_newer, new.phone, table.c.phone),
            platform_updated_at=_prefer(strictly_newer, new.platform_updated_at,
                                        table.c.platform_updated_at),
            updated_at=new.updated_at),
        where=table.c.redacted_at.is_(None))
    # executemany of one cached statement (SQLAlchemy batches it into multi-row VALUES)
    for chunk in _chunks(rows):
        session.execute(stmt, list(chunk))
    return customer_ids(session, shop_id, list(newest))


def _prefer(condition, new_value, old_value):
    """new when the record is newer, else keep old and only fill a gap with new."""
    from sqlalchemy import case, func
    return case((condition, func.coalesce(new_value, old_value)),
                else_=func.coalesce(old_value, new_value))


def customer_ids(session: Session, shop_id: int, platform_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(list(platform_ids)):
        found.update(session.execute(
            select(Customer.platform_customer_id, Customer.id)
            .where(Customer.shop_id == shop_id, Customer.platform_customer_id.in_(chunk))).all())
    return found


def _newer(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


# --------------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderChange:
    """One order row the upsert inserted or changed (losers of an out-of-order race are absent)."""

    order_id: int
    platform_order_id: str
    created: bool


def _rank(rec: OrderRecord) -> tuple:
    return (rec.complete, rec.updated_at)


def upsert_orders(session: Session, shop_id: int, records: Iterable[OrderRecord]
                  ) -> list[OrderChange]:
    """Store a batch of orders; the newest record per order wins, in the batch and in the store.

    A complete record replaces the order's lines and records its refunds; a summary
    (``complete=False``) creates the order if absent and never overwrites a complete one.
    """
    newest: dict[str, OrderRecord] = {}
    for rec in records:
        seen = newest.get(rec.platform_order_id)
        if seen is None or (rec.updated_at, rec.complete) > (seen.updated_at, seen.complete):
            newest[rec.platform_order_id] = rec
    if not newest:
        return []
    customers = upsert_customers(session, shop_id, (r.customer for r in newest.values() if r.customer))
    existing = _existing_order_ids(session, shop_id, list(newest))
    now = utcnow()
    changes: list[OrderChange] = []
    table = Order.__table__
    rows = [_order_row(shop_id, rec, customers, now) for rec in newest.values()]
    stmt = _insert(session, Order)
    new = stmt.excluded
    wins = or_(
        and_(new.platform_updated_at > table.c.platform_updated_at,
             or_(new.is_complete, table.c.is_complete.is_(False))),
        and_(new.is_complete, table.c.is_complete.is_(False)))
    updatable = {c: getattr(new, c) for c in rows[0]
                 if c not in ("shop_id", "platform_order_id", "created_at")}
    stmt = (stmt.on_conflict_do_update(index_elements=["shop_id", "platform_order_id"],
                                       set_=updatable, where=wins)
            .returning(table.c.id, table.c.platform_order_id))
    for chunk in _chunks(rows):
        for order_id, platform_order_id in session.execute(stmt, list(chunk)):
            changes.append(OrderChange(order_id, platform_order_id, platform_order_id not in existing))
    complete = {c.order_id: newest[c.platform_order_id] for c in changes
                if newest[c.platform_order_id].complete}
    _replace_lines(session, shop_id, complete)
    record_refunds(session, shop_id, [rf for rec in complete.values() for rf in rec.refunds])
    return changes


def _existing_order_ids(session: Session, shop_id: int, platform_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(platform_ids):
        found.update(session.scalars(select(Order.platform_order_id).where(
            Order.shop_id == shop_id, Order.platform_order_id.in_(chunk))))
    return found


def _order_row(shop_id: int, rec: OrderRecord, customers: dict[str, int], now: datetime) -> dict:
    customer = rec.customer
    return dict(
        shop_id=shop_id, platform_order_id=rec.platform_order_id, number=rec.number,
        currency=rec.currency.upper(), total=rec.total,
        financial_status=rec.financial_status, fulfillment_status=rec.fulfillment_status,
        customer_id=customers.get(customer.platform_customer_id) if customer and
        customer.platform_customer_id else None,
        email=rec.email, phone=rec.phone, customer_name=rec.customer_name,
        placed_at=rec.placed_at, cancelled_at=rec.cancelled_at,
        platform_updated_at=rec.updated_at, is_complete=rec.complete,
        created_at=now, updated_at=now)


def _replace_lines(session: Session, shop_id: int, orders: dict[int, OrderRecord]) -> None:
    if not orders:
        return
    ids = list(orders)
    for chunk in _chunks(ids):
        session.execute(delete(OrderLine).where(OrderLine.shop_id == shop_id,
                                                OrderLine.order_id.in_(chunk)))
    rows = [dict(shop_id=shop_id, order_id=order_id, platform_line_id=line.platform_line_id,
                 title=line.title[:500], sku=line.sku, product_id=line.product_id,
                 variant_id=line.variant_id, quantity=line.quantity, unit_price=line.unit_price)
            for order_id, rec in orders.items() for line in _unique_lines(rec)]
    for chunk in _chunks(rows):
        session.execute(OrderLine.__table__.insert(), list(chunk))


def _unique_lines(rec: OrderRecord):
    seen: set[str] = set()
    for line in rec.lines:
        if line.platform_line_id not in seen:
            seen.add(line.platform_line_id)
            yield line


def record_refunds(session: Session, shop_id: int, refunds: Sequence[RefundRecord]) -> int:
    """Record refunds once each (a refund is immutable on every platform); returns rows added."""
    unique = {r.platform_refund_id: r for r in refunds}
    if not unique:
        return 0
    now = utcnow()
    rows = [dict(shop_id=shop_id, platform_refund_id=r.platform_refund_id,
                 platform_order_id=r.platform_order_id,
                 amount=r.amount, currency=r.currency.upper(), note=r.note,
                 refunded_at=r.created_at, created_at=now) for r in unique.values()]
    added = 0
    stmt = _insert(session, Refund).on_conflict_do_nothing(
        index_elements=["shop_id", "platform_refund_id"]).returning(Refund.__table__.c.id)
    for chunk in _chunks(rows):
        added += len(session.execute(stmt, list(chunk)).all())
    return added


# --------------------------------------------------------------------------------------------------
# Order reads (the merchant API)
# --------------------------------------------------------------------------------------------------


def get_order(session: Session, shop_id: int, platform_order_id: str) -> Order | None:
    return session.scalar(
        select(Order).where(Order.shop_id == shop_id, Order.platform_order_id == platform_order_id)
        .options(selectinload(Order.lines), selectinload(Order.customer),
                 selectinload(Order.refunds)))


def list_orders(session: Session, shop_id: int, *, updated_since: datetime | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 50) -> list[Order]:
    """Orders by (platform updated_at, id) ascending: a keyset page that never skips or repeats."""
    query = select(Order).where(Order.shop_id == shop_id)
    if updated_since is not None:
        query = query.where(Order.platform_updated_at >= updated_since)
    if after is not None:
        query = query.where(tuple_(Order.platform_updated_at, Order.id) > tuple_(*after))
    query = (query.order_by(Order.platform_updated_at, Order.id).limit(limit)
             .options(selectinload(Order.lines), selectinload(Order.customer),
                      selectinload(Order.refunds)))
    return list(session.scalars(query))
