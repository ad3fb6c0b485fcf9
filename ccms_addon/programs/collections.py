"""Guarantees that cover collections: which products a Shopify collection, a Cafe24 category or a
WooCommerce product category holds, kept in SQL.

A guarantee's terms may name collections (``products.collection_ids``). Order lines carry product
ids, not collections, and asking the platform per order would put an admin-API call on the
enrollment path; so the members of every collection an active program names are fetched through
the adapter (:meth:`~ccms_addon.platforms.PlatformAdapter.list_collection_products`) when the
program is saved, again every day, and on ``ccms-addon programs collections``. Enrollment reads
the current members; a claim reads the members as they were when its order was enrolled
(``CollectionMember.removed_at`` keeps the history), so moving a product out of a collection does
not take away a guarantee already sold.

An order enrolled before its collection's first fetch is not covered yet; the enrollment sweep
(three days back) enrolls it once the members are known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from ccms_addon.platforms import (CollectionNotFoundError, PlatformError,
                                  PlatformUnavailableError)
from ccms_addon.queue import DELIVERIES_QUEUE, jobs_in_flight, queue, shop_job_id
from ccms_addon.store.models import (CollectionMember, Program, ProductCollection, ProgramStatus,
                                     ProgramVersion, Shop, ShopStatus, utcnow)

log = logging.getLogger(__name__)

#: a collection's members are fetched again once they are this old
REFRESH_AFTER = timedelta(days=1)
#: a fetch that failed is tried again after this long (the sweep runs every minute)
RETRY_AFTER = timedelta(minutes=15)
#: RQ: the job's time limit (a collection of 50,000 products is 200 pages of 250)
JOB_TIMEOUT = 1800
RESULT_TTL = 3600
REFRESH_JOB = "ccms_addon.programs.collections.refresh_collections"


def named_collections(terms: dict) -> tuple[str, ...]:
    """The platform collection ids a program's terms name (none for most programs)."""
    return tuple((terms.get("products") or {}).get("collection_ids") or ())


def covered_products(session: Session, shop_id: int, collection_ids: Iterable[str],
                     product_ids: Iterable[str | None], *,
                     as_of: datetime | None = None) -> frozenset[str]:
    """Which of ``product_ids`` belong to any of the collections: now, or at ``as_of``."""
    collection_ids = tuple(collection_ids)
    wanted = sorted({p for p in product_ids if p})
    if not collection_ids or not wanted:
        return frozenset()
    m = CollectionMember
    if as_of is None:
        current = m.removed_at.is_(None)
    else:
        current = and_(m.added_at <= as_of, or_(m.removed_at.is_(None), m.removed_at > as_of))
    return frozenset(session.scalars(
        select(m.product_id).distinct()
        .join(ProductCollection, ProductCollection.id == m.collection_id)
        .where(m.shop_id == shop_id, m.product_id.in_(wanted), current,
               ProductCollection.shop_id == shop_id,
               ProductCollection.platform_collection_id.in_(collection_ids))))


# --------------------------------------------------------------------------------------------------
# Fetching the members
# --------------------------------------------------------------------------------------------------


@dataclass
class CollectionSync:
    """What one fetch of a collection did."""

    collection_id: str
    outcome: str              # "synced", "not_found", "unavailable", "refused"
    title: str | None = None
    products: int = 0
    added: int = 0
    removed: int = 0
    detail: str = ""


def sync_collection(runtime, shop_id: int, collection_id: str, *, now: datetime | None = None,
                    progress: Callable[[int], None] | None = None) -> CollectionSync:
    """Read every page of the collection from the platform, then record in one transaction who
    joined (``added_at``) and who left (``removed_at``). A failed read changes no member."""
    from ccms_addon.sync import SyncError, installed_shop_and_adapter
    now = now or utcnow()
    try:
        shop, adapter = installed_shop_and_adapter(runtime, shop_id)
    except SyncError as exc:
        return CollectionSync(collection_id, "refused", detail=str(exc))
    context = runtime.shop_context(shop, adapter)
    found: set[str] = set()
    title, cursor = None, None
    try:
        while True:
            page = adapter.list_collection_products(context, collection_id, cursor=cursor)
            found.update(str(p) for p in page.product_ids)
            title = page.title or title
            if progress:
                progress(len(page.product_ids))
            cursor = page.next_cursor
            if cursor is None:
                break
    except CollectionNotFoundError as exc:
        # the merchant deleted it: the rule covers nothing any more
        result = _record(runtime, shop_id, collection_id, None, set(), now,
                         error=f"not found on {shop.platform}: {exc}")
        result.outcome, result.detail = "not_found", str(exc)
        return result
    except PlatformUnavailableError as exc:
        _record_error(runtime, shop_id, collection_id, str(exc), now)
        return CollectionSync(collection_id, "unavailable", detail=str(exc))
    except PlatformError as exc:
        _record_error(runtime, shop_id, collection_id, str(exc), now)
        return CollectionSync(collection_id, "refused", detail=str(exc))
    return _record(runtime, shop_id, collection_id, title, found, now)


def _collection_row(session: Session, shop_id: int, collection_id: str,
                    now: datetime) -> ProductCollection:
    row = session.scalar(select(ProductCollection).where(
        ProductCollection.shop_id == shop_id,
        ProductCollection.platform_collection_id == collection_id).with_for_update())
    if row is None:
        row = ProductCollection(shop_id=shop_id, platform_collection_id=collection_id,
                                product_count=0, created_at=now)
        session.add(row)
        session.flush()
    return row


def _record(runtime, shop_id: int, collection_id: str, title: str | None, found: set[str],
            now: datetime, *, error: str | None = None) -> CollectionSync:
    with runtime.db.session() as session:
        row = _collection_row(session, shop_id, collection_id, now)
        current = set(session.scalars(select(CollectionMember.product_id).where(
            CollectionMember.collection_id == row.id, CollectionMember.removed_at.is_(None))))
        joined, left = found - current, current - found
        session.add_all(CollectionMember(shop_id=shop_id, collection_id=row.id, product_id=p,
                                         added_at=now) for p in sorted(joined))
        if left:
            session.execute(update(CollectionMember)
                            .where(CollectionMember.collection_id == row.id,
                                   CollectionMember.removed_at.is_(None),
                                   CollectionMember.product_id.in_(sorted(left)))
                            .values(removed_at=now))
        row.title = title or row.title
        row.product_count = len(found)
        row.synced_at = row.attempted_at = now
        row.last_error = error
    return CollectionSync(collection_id, "synced", title=title, products=len(found),
                          added=len(joined), removed=len(left))


def _record_error(runtime, shop_id: int, collection_id: str, error: str, now: datetime) -> None:
    with runtime.db.session() as session:
        row = _collection_row(session, shop_id, collection_id, now)
        row.last_error, row.attempted_at = error[:2000], now
    log.warning("shop %s: could not read collection %s: %s", shop_id, collection_id, error)


def collection_states(session: Session, shop_id: int, collection_ids: Iterable[str]) -> list[dict]:
    """What the merchant sees of each named collection: its title and size as last read, when,
    and why the last read failed (``synced_at`` None: not read yet)."""
    collection_ids = list(collection_ids)
    rows = {r.platform_collection_id: r for r in session.scalars(
        select(ProductCollection).where(ProductCollection.shop_id == shop_id,
                                        ProductCollection.platform_collection_id.in_(collection_ids)))
    } if collection_ids else {}
    out = []
    for collection_id in collection_ids:
        row = rows.get(collection_id)
        out.append({"id": collection_id, "title": row.title if row else None,
                    "products": row.product_count if row else None,
                    "synced_at": row.synced_at if row else None,
                    "error": row.last_error if row else None})
    return out


# --------------------------------------------------------------------------------------------------
# When: on save, daily, on demand
# --------------------------------------------------------------------------------------------------


def program_collections(session: Session, shop_id: int) -> tuple[str, ...]:
    """Every collection the shop's active programs name, in a stable order."""
    terms = session.scalars(
        select(ProgramVersion.terms)
        .join(Program, Program.current_version_id == ProgramVersion.id)
        .where(Program.shop_id == shop_id, Program.status == ProgramStatus.ACTIVE))
    return tuple(sorted({c for t in terms for c in named_collections(t or {})}))


def refresh_job_id(shop_id: int) -> str:
    return shop_job_id(shop_id, "collections")


def refresh_collections(shop_id: int, collection_ids: Sequence[str] | None = None) -> str:
    """RQ job: fetch the members of the given collections (default: every one the shop's active
    programs name)."""
    from ccms_addon.runtime import current
    runtime = current()
    if collection_ids is None:
        with runtime.db.session() as session:
            collection_ids = program_collections(session, shop_id)
    outcomes = [sync_collection(runtime, shop_id, c).outcome for c in collection_ids]
    return ", ".join(f"{c}: {o}" for c, o in zip(collection_ids, outcomes)) or "nothing to read"


def enqueue_refresh(runtime, shop_id: int) -> bool:
    """Ask a worker to read the shop's collections now (after a program was saved). False when
    Redis is down: the dispatcher's sweep reads collections never fetched."""
    try:
        if jobs_in_flight(runtime.redis, [refresh_job_id(shop_id)]):
            return True
        queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings).enqueue_call(
            REFRESH_JOB, args=(shop_id,), job_id=refresh_job_id(shop_id),
            result_ttl=RESULT_TTL, timeout=JOB_TIMEOUT)
        return True
    except Exception:  # noqa: BLE001 — the sweep covers it
        log.warning("could not enqueue the collection refresh of shop %s; the sweep will",
                    shop_id)
        return False


def due_shops(runtime, now: datetime | None = None) -> list[int]:
    """Active shops with a named collection never read, read over a day ago, or whose last read
    failed over :data:`RETRY_AFTER` ago."""
    now = now or utcnow()
    due = []
    with runtime.db.session() as session:
        shop_ids = session.scalars(
            select(Program.shop_id).distinct().join(Shop, Shop.id == Program.shop_id)
            .where(Program.status == ProgramStatus.ACTIVE, Shop.status == ShopStatus.ACTIVE,
                   Shop.credentials_encrypted.is_not(None)))
        for shop_id in shop_ids:
            named = program_collections(session, shop_id)
            if not named:
                continue
            rows = {r.platform_collection_id: r for r in session.scalars(
                select(ProductCollection).where(ProductCollection.shop_id == shop_id,
                                                ProductCollection.platform_collection_id.in_(named)))}
            if any(_is_due(rows.get(c), now) for c in named):
                due.append(shop_id)
    return due


def _is_due(row: ProductCollection | None, now: datetime) -> bool:
    if row is None:
        return True
    if row.last_error and row.attempted_at and row.attempted_at > now - RETRY_AFTER:
        return False
    return row.synced_at is None or row.last_error is not None \
        or row.synced_at <= now - REFRESH_AFTER


def refresh_due(runtime, now: datetime | None = None) -> int:
    """Dispatcher sweep: enqueue a refresh for every shop due one; returns how many."""
    shop_ids = due_shops(runtime, now)
    return sum(enqueue_refresh(runtime, shop_id) for shop_id in shop_ids)
