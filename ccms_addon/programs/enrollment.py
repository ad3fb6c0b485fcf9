"""Fulfilled orders → enrollments → follow-ups, all in SQL (the record of truth).

An order qualifies once it is fulfilled or delivered and is neither cancelled nor refunded. It is
enrolled in every active program of its shop (a guarantee only when one of its lines is covered),
under the program's current terms, at most once per program (a unique constraint: duplicate
webhooks, replays and the backfill meet there). Each step of the terms becomes a ``FollowUp`` row
with its due time in UTC, computed in the shopper's time zone; Redis sees it only near that time.

Three callers: the ``order_synced`` hook (at once), :func:`sweep_unenrolled` (a hook that failed
while the store was briefly down) and ``ccms-addon programs enroll --since`` (history).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import (BigInteger, String, and_, bindparam, exists, literal, select, true,
                        update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ccms_addon.platforms import FinancialStatus, FulfillmentStatus
from ccms_addon.programs.collections import covered_products, named_collections
from ccms_addon.programs.schedule import add_months, shopper_timezone, step_due_at
from ccms_addon.store.repository import (driver_values, load_rows, stage_columns, stage_table,
                                         staged_connection)
from ccms_addon.store.models import (Enrollment, EnrollmentStatus, FollowUp, FollowUpStatus, Order,
                                     OrderLine, Program, ProgramKind, ProgramStatus,
                                     ProgramVersion, Shop, ShopStatus, UtcDateTime, utcnow)

log = logging.getLogger(__name__)

#: fulfilment states that start the after-sale period
QUALIFYING_FULFILMENT = (FulfillmentStatus.FULFILLED, FulfillmentStatus.DELIVERED)
#: financial states that end it
STOPPING_FINANCIAL = (FinancialStatus.REFUNDED, FinancialStatus.VOIDED)
#: a step whose time had already passed this long before the order was enrolled (a backfill of old
#: orders) is recorded as skipped instead of sent late: no "did it arrive well?" after half a year
STALE_AFTER = timedelta(days=2)
#: orders per enrollment batch
BATCH = 1000


@dataclass(frozen=True)
class ActiveProgram:
    id: int
    kind: ProgramKind
    version_id: int
    terms: dict


def active_programs(session: Session, shop_id: int) -> list[ActiveProgram]:
    rows = session.execute(
        select(Program.id, Program.kind, ProgramVersion.id, ProgramVersion.terms)
        .join(ProgramVersion, ProgramVersion.id == Program.current_version_id)
        .where(Program.shop_id == shop_id, Program.status == ProgramStatus.ACTIVE)
        .order_by(Program.id)).all()
    return [ActiveProgram(*row) for row in rows]


def covers(terms: dict, lines: Iterable[tuple[str | None, str | None]],
           in_collections: frozenset[str] = frozenset()) -> bool:
    """True when a guarantee's product rules cover at least one of ``(product_id, sku)``;
    ``in_collections``: the line products found in the collections the rules name."""
    rules = terms.get("products") or {}
    return any(line_covered(rules, product_id, sku, in_collections) for product_id, sku in lines)


def line_covered(rules: dict, product_id: str | None, sku: str | None,
                 in_collections: frozenset[str] = frozenset()) -> bool:
    """Exclusions first; no inclusion rule at all covers every product; else any rule that
    matches (a product id, a SKU, a SKU prefix, a collection) covers the line."""
    if product_id and product_id in (rules.get("exclude_product_ids") or ()):
        return False
    product_ids, skus = rules.get("product_ids") or (), rules.get("skus") or ()
    prefixes = rules.get("sku_prefixes") or ()
    if not (product_ids or skus or prefixes or rules.get("collection_ids")):
        return True
    return bool((product_id and (product_id in product_ids or product_id in in_collections))
                or (sku and sku in skus)
                or (sku and any(sku.startswith(p) for p in prefixes)))


def window_end(kind: ProgramKind, terms: dict, anchor: datetime) -> datetime | None:
    if kind is ProgramKind.FREE_RETURN:
        return anchor + timedelta(days=terms["window_days"])
    if kind is ProgramKind.BUYBACK:
        return add_months(anchor, terms["window_months"])
    return None


def enroll_orders(session: Session, shop_id: int, order_ids: Sequence[int], *,
                  now: datetime | None = None, programs: list[ActiveProgram] | None = None) -> int:
    """Enroll the qualifying orders among ``order_ids`` in the shop's active programs; returns
    how many enrollments were new. Idempotent. Runs in the caller's transaction."""
    now = now or utcnow()
    shop = session.get(Shop, shop_id)
    if shop is None or shop.status is not ShopStatus.ACTIVE or not order_ids:
        return 0
    programs = active_programs(session, shop_id) if programs is None else programs
    if not programs:
        return 0
    orders = session.execute(
        select(Order.id, Order.fulfilled_at, Order.delivered_at, Order.locale, Order.country_code)
        .where(Order.shop_id == shop_id, Order.id.in_(order_ids),
               Order.fulfillment_status.in_(QUALIFYING_FULFILMENT), Order.cancelled_at.is_(None),
               Order.financial_status.not_in(STOPPING_FINANCIAL))).all()
    if not orders:
        return 0
    lines: dict[int, list[tuple[str | None, str | None]]] = {}
    if any(p.kind is not ProgramKind.FOLLOW_UP for p in programs):
        for order_id, product_id, sku in session.execute(
                select(OrderLine.order_id, OrderLine.product_id, OrderLine.sku)
                .where(OrderLine.shop_id == shop_id,
                       OrderLine.order_id.in_([o.id for o in orders]))):
            lines.setdefault(order_id, []).append((product_id, sku))
    # the line products found in the collections each program names (the members fetched last)
    in_collections = {
        program.id: covered_products(session, shop_id, named_collections(program.terms),
                                     (p for order_lines in lines.values()
                                      for p, _ in order_lines))
        for program in programs if named_collections(program.terms)}
    conn = staged_connection(session, ENROLLMENT_STAGE)
    time = driver_values(conn.dialect.name).time
    rows, plans = [], {}
    for order in orders:
        anchor = order.delivered_at or order.fulfilled_at or now
        tz = shopper_timezone(order.country_code, shop.timezone or "UTC")
        locale = order.locale or shop.locale or "en"
        for program in programs:
            if program.kind is not ProgramKind.FOLLOW_UP and not covers(
                    program.terms, lines.get(order.id, ()),
                    in_collections.get(program.id, frozenset())):
                continue
            rows.append((program.id, program.version_id, order.id, time(anchor),
                         time(window_end(program.kind, program.terms, anchor)), tz, locale))
            plans[(program.id, order.id)] = (program, anchor, tz)
    if not rows:
        return 0
    # staged and merged in one statement: a long multi-row INSERT … RETURNING spends most of its
    # time being parsed by the driver (see repository.load_rows)
    load_rows(conn, ENROLLMENT_STAGE, ENROLLMENT_FIELDS, rows)
    created = conn.execute(_enrollment_merge(conn.dialect.name),
                           {"shop_id": shop_id, "now": now}).all()
    # The enrollments are new, so their follow-ups cannot exist yet: load them straight in
    # (a binary COPY on PostgreSQL, multi-row VALUES on SQLite; see repository.load_rows).
    created_at = time(now)
    follow_ups = []
    for enrollment_id, program_id, order_id in created:
        program, anchor, tz = plans[(program_id, order_id)]
        quiet = program.terms["quiet_hours"]
        for step in program.terms.get("steps") or ():
            due = step_due_at(anchor, step["offset_days"], step["send_at"], tz, quiet)
            stale = due < now - STALE_AFTER
            follow_ups.append((
                shop_id, enrollment_id, order_id, step["key"], step["kind"], step["purpose"],
                step["channel"],
                (FollowUpStatus.SKIPPED if stale else FollowUpStatus.SCHEDULED).value,
                "already past when the order was enrolled" if stale else None,
                time(due), 0, False, created_at))
    load_rows(conn, FollowUp.__table__, FOLLOW_UP_COLUMNS, follow_ups)
    return len(created)


#: what :func:`enroll_orders` stages per enrollment (shop, status and time come with the merge)
ENROLLMENT_FIELDS = ("program_id", "program_version_id", "order_id", "anchor_at", "ends_at",
                     "timezone", "locale")
ENROLLMENT_STAGE = stage_table("ccms_stage_enrollments",
                               *stage_columns(Enrollment, *ENROLLMENT_FIELDS))


@cache
def _enrollment_merge(dialect_name: str):
    s = ENROLLMENT_STAGE.c
    table = Enrollment.__table__
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    source = select(bindparam("shop_id", type_=BigInteger),
                    literal(EnrollmentStatus.ACTIVE.value, String(32)),
                    bindparam("now", type_=UtcDateTime()),
                    *(s[name] for name in ENROLLMENT_FIELDS)).where(true())  # SQLite: WHERE first
    return (insert(table).from_select(["shop_id", "status", "created_at", *ENROLLMENT_FIELDS], source)
            .on_conflict_do_nothing(index_elements=["program_id", "order_id"])
            .returning(table.c.id, table.c.program_id, table.c.order_id))


#: the columns :func:`enroll_orders` writes for each new follow-up
FOLLOW_UP_COLUMNS = ("shop_id", "enrollment_id", "order_id", "step", "kind", "purpose", "channel",
                     "status", "skip_reason", "due_at", "postponed", "complaint_opened",
                     "created_at")


#: follow-up states a stop condition cancels
OPEN_FOLLOW_UPS = (FollowUpStatus.SCHEDULED, FollowUpStatus.QUEUED)


def stop_orders(session: Session, shop_id: int, order_ids: Sequence[int], reason: str) -> int:
    """Cancel the enrollments and open follow-ups of orders that were cancelled or refunded."""
    if not order_ids:
        return 0
    result = session.execute(
        update(Enrollment)
        .where(Enrollment.shop_id == shop_id, Enrollment.order_id.in_(order_ids),
               Enrollment.status == EnrollmentStatus.ACTIVE)
        .values(status=EnrollmentStatus.CANCELLED, cancelled_reason=reason))
    session.execute(
        update(FollowUp)
        .where(FollowUp.shop_id == shop_id, FollowUp.order_id.in_(order_ids),
               FollowUp.status.in_(OPEN_FOLLOW_UPS))
        .values(status=FollowUpStatus.CANCELLED, skip_reason=reason, lease_until=None))
    return result.rowcount or 0


def stop_shop(session: Session, shop_id: int, reason: str) -> None:
    """The shop left (uninstalled): no follow-up of it is sent any more."""
    session.execute(update(Enrollment)
                    .where(Enrollment.shop_id == shop_id,
                           Enrollment.status == EnrollmentStatus.ACTIVE)
                    .values(status=EnrollmentStatus.CANCELLED, cancelled_reason=reason))
    session.execute(update(FollowUp)
                    .where(FollowUp.shop_id == shop_id, FollowUp.status.in_(OPEN_FOLLOW_UPS))
                    .values(status=FollowUpStatus.CANCELLED, skip_reason=reason,
                            lease_until=None))


def order_changed(session: Session, shop_id: int, order_id: int) -> str:
    """React to one synced order: stop its follow-ups if it ended, else enroll it if it qualifies."""
    order = session.execute(select(Order.cancelled_at, Order.financial_status)
                            .where(Order.shop_id == shop_id, Order.id == order_id)).first()
    if order is None:
        return "missing"
    if order.cancelled_at is not None or order.financial_status in STOPPING_FINANCIAL:
        stop_orders(session, shop_id, [order_id],
                    "order cancelled" if order.cancelled_at else "order refunded")
        return "stopped"
    return "enrolled" if enroll_orders(session, shop_id, [order_id]) else "unchanged"


def unenrolled_orders(session: Session, shop_id: int, program_id: int, *,
                      since: datetime | None, after_id: int = 0, limit: int = BATCH) -> list[int]:
    """Ids of qualifying orders of the shop not yet enrolled in the program (keyset by id)."""
    query = (select(Order.id)
             .where(Order.shop_id == shop_id, Order.id > after_id,
                    Order.fulfillment_status.in_(QUALIFYING_FULFILMENT),
                    Order.cancelled_at.is_(None),
                    Order.financial_status.not_in(STOPPING_FINANCIAL),
                    ~exists().where(and_(Enrollment.order_id == Order.id,
                                         Enrollment.program_id == program_id)))
             .order_by(Order.id).limit(limit))
    if since is not None:
        query = query.where(Order.platform_updated_at >= since)
    return list(session.scalars(query))


def count_candidates(session: Session, shop_id: int, since: datetime | None) -> int:
    from sqlalchemy import func
    query = select(func.count()).select_from(Order).where(
        Order.shop_id == shop_id, Order.fulfillment_status.in_(QUALIFYING_FULFILMENT))
    if since is not None:
        query = query.where(Order.platform_updated_at >= since)
    return session.scalar(query) or 0


def backfill(db, shop_id: int, *, since: datetime | None, progress=None) -> int:
    """Enroll past orders (``programs enroll --since``), in batches, skipping what is enrolled.

    ``progress(n)`` is called with the number of orders looked at after each batch."""
    enrolled = 0
    with db.session() as session:
        programs = active_programs(session, shop_id)
    for program in programs:
        after = 0
        while True:
            with db.session() as session:
                ids = unenrolled_orders(session, shop_id, program.id, since=since, after_id=after)
                if not ids:
                    break
                enrolled += enroll_orders(session, shop_id, ids, programs=[program])
            after = ids[-1]
            if progress:
                progress(len(ids))
    return enrolled


#: how far back the sweep looks for orders a failed hook left unenrolled
SWEEP_LOOKBACK = timedelta(days=3)


def sweep_unenrolled(db, *, now: datetime | None = None) -> int:
    """Enroll recent qualifying orders that missed their enrollment (the hook failed)."""
    since = (now or utcnow()) - SWEEP_LOOKBACK
    enrolled = 0
    with db.session() as session:
        shop_ids = list(session.scalars(
            select(Program.shop_id).join(Shop, Shop.id == Program.shop_id)
            .where(Program.status == ProgramStatus.ACTIVE, Shop.status == ShopStatus.ACTIVE)
            .distinct()))
    for shop_id in shop_ids:
        with db.session() as session:
            for program in active_programs(session, shop_id):
                ids = unenrolled_orders(session, shop_id, program.id, since=since)
                if ids:
                    enrolled += enroll_orders(session, shop_id, ids, programs=[program])
    if enrolled:
        log.info("enrollment sweep enrolled %d order(s)", enrolled)
    return enrolled
