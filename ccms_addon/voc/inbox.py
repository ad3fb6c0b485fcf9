"""The inbox: VOC items of a set of shops, filtered, searched and paged — one query for the
dashboard, the merchant API and the CSV export.

Pages are keyset pages (``created_at, id`` descending, or due time ascending), never OFFSET: page
50 of a shop with a million items costs what page 1 does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (BigInteger, Select, Text, and_, any_, func, literal, literal_column, or_,
                        select, text)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ccms_addon.store.models import Order, Shop, VocItem, VocStatus, utcnow
from ccms_addon.voc.lifecycle import OPEN

SORTS = ("newest", "oldest", "due")
MAX_LIMIT = 200
#: the inbox counts this many items at most (``count_items(..., limit=COUNT_LIMIT)``); beyond,
#: "1,000+": an exact total costs a read of every matching item (see bench/dashboard.py)
COUNT_LIMIT = 1000
#: a two-character search tests the items holding its pair (found through the bigram index)
#: when they are at most this many; more, and its newest page fills by time order at once, and
#: the first ``COUNT_LIMIT + 1`` holders settle a capped count
PAIR_CANDIDATES = COUNT_LIMIT


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class InboxFilter:
    statuses: Sequence[str] = ()
    kinds: Sequence[str] = ()
    channels: Sequence[str] = ()
    categories: Sequence[str] = ()
    severities: Sequence[str] = ()
    #: a staff id, or ``"none"`` for unassigned items
    assignee: int | str | None = None
    #: only items whose response is overdue (still open past ``respond_due_at``)
    breached: bool = False
    recurrence: bool = False
    #: a reference number, an email or phone, an order number, or words of the text
    q: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    shop_id: int | None = None
    sort: str = "newest"
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InboxRow:
    item: VocItem
    shop_domain: str
    shop_platform: str
    order_number: str | None


def encode_cursor(item: VocItem, sort: str) -> str:
    stamp = item.respond_due_at if sort == "due" else item.created_at
    text = f"{stamp.isoformat() if stamp else ''}|{item.id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime | None, int]:
    try:
        stamp, _, item_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return (datetime.fromisoformat(stamp) if stamp else None), int(item_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("Invalid cursor.") from None


def _filtered(session: Session, shop_ids: Collection[int], f: InboxFilter, now: datetime, *,
              some_holders: bool = False) -> tuple[Select, bool]:
    """The filter's query, and whether it selects every matching item. ``some_holders``: for a
    two-character term whose pair more than ``PAIR_CANDIDATES`` items hold, test the first
    ``PAIR_CANDIDATES + 1`` of them only (the query then selects some of the items: False)."""
    ids = [f.shop_id] if f.shop_id is not None and f.shop_id in shop_ids else list(shop_ids)
    query = select(VocItem).where(VocItem.shop_id.in_(ids) if len(ids) != 1
                                  else VocItem.shop_id == ids[0])
    if f.statuses:
        query = query.where(VocItem.status.in_([VocStatus(s) for s in f.statuses]))
    if f.kinds:
        query = query.where(VocItem.kind.in_(list(f.kinds)))
    if f.channels:
        query = query.where(VocItem.channel.in_(list(f.channels)))
    if f.categories:
        query = query.where(VocItem.category.in_(list(f.categories)))
    if f.severities:
        query = query.where(VocItem.severity.in_(list(f.severities)))
    if f.assignee == "none":
        query = query.where(VocItem.assignee_id.is_(None))
    elif f.assignee is not None:
        query = query.where(VocItem.assignee_id == int(f.assignee))
    if f.breached:
        query = query.where(VocItem.status.in_(OPEN), VocItem.respond_due_at < now)
    if f.recurrence:
        query = query.where(VocItem.recurrence.is_(True))
    if f.created_from:
        query = query.where(VocItem.created_at >= f.created_from)
    if f.created_to:
        query = query.where(VocItem.created_at < f.created_to)
    complete = True
    if f.q and f.q.strip():
        term = f.q.strip()
        like = f"%{_escape_like(term)}%"
        # The orders with that number are looked up first: with their ids as a list, every
        # branch of the OR can use its own index (PostgreSQL ORs the bitmaps; see migration
        # 0005), where an IN (subquery) branch made the planner test every item of the shops.
        order_ids = session.scalars(select(Order.id).where(
            Order.shop_id.in_(ids), Order.number == term.lstrip("#"))).all()
        words = or_(VocItem.subject.ilike(like, escape="\\"),
                    VocItem.body.ilike(like, escape="\\"),
                    VocItem.contact_name.ilike(like, escape="\\"))
        holders = _pair_holders(session, ids, term)
        if holders is not None and (holders.complete or some_holders):
            words = and_(VocItem.id == any_(literal(holders.ids, ARRAY(BigInteger))), words)
            complete = holders.complete
        query = query.where(or_(
            VocItem.reference == term.upper(),
            func.lower(VocItem.contact_email) == term.lower(),
            VocItem.contact_phone == term,
            *([VocItem.order_id.in_(order_ids)] if order_ids else []),
            words))
    return query, complete


class _Holders(NamedTuple):
    ids: list[int]
    #: every item holding the pair (else the first ``PAIR_CANDIDATES + 1`` found)
    complete: bool


def _pair_holders(session: Session, shop_ids: list[int], term: str) -> _Holders | None:
    """For a search of two characters, one not ASCII, on PostgreSQL: the shops' items whose
    texts hold the term's pair — all of them when they are at most ``PAIR_CANDIDATES``. None
    for another term (or database).

    Such a term is too short for the trigram indexes (and Korean and Japanese words are often
    two characters long): without help, its ``ILIKE``s read every item of the shops unless the
    newest fill the page at once. The bigram index of migration 0007 (``ccms_bigrams``:
    ``<shop>:<pair>`` for each pair of an item's lower-cased texts) finds the items holding the
    pair; the search then tests only those with its ``ILIKE``s, so the result stays exact —
    whatever an ``ILIKE`` accepts holds the pairs of the lower-cased term. (A term whose
    lower-cased pairs are all ASCII has no key: the lookup returns the shops' first items,
    not complete, and the search reads as before.)

    The ids go into the search, not the index's condition: PostgreSQL would compute the
    function again for each row it reads (~0.1 ms), and it cannot know that the key implies the
    shop and the ``ILIKE`` (it multiplies their selectivities, then prefers the index even for
    a common word, whose newest page fills by time order at once). Looked up once per
    transaction (a page lists, then counts).

    Not under row-level security (migration 0008, for a role held to its policies): ``&&`` is
    not leak-proof, so PostgreSQL would compute the function for every row of the shops
    instead of reading the index — the search reads them as before, with its ``ILIKE``s only."""
    if len(term) != 2 or term.isascii() or session.get_bind().dialect.name != "postgresql":
        return None
    transaction, found_before = session.info.get("inbox.pair_holders", (None, {}))
    if transaction is not session.get_transaction():
        policed = session.scalar(select(func.row_security_active("voc_items")))
        found_before = None if policed else {}
        session.info["inbox.pair_holders"] = (session.get_transaction(), found_before)
    if found_before is None:
        return None
    memo = (tuple(shop_ids), term)
    if memo not in found_before:
        keys = None
        for shop_id in shop_ids:
            mine = func.ccms_bigrams(literal(shop_id, BigInteger), literal(term, Text),
                                     type_=ARRAY(Text))
            keys = mine if keys is None else keys.concat(mine)
        indexed = func.ccms_bigrams(VocItem.shop_id, VocItem.subject, VocItem.body,
                                    VocItem.contact_name, type_=ARRAY(Text))
        # the keys name the shops; the scope joins in only when there is no key (an OR the
        # planner folds away when there is one: an index on shop_id would otherwise be ANDed
        # in, reading all of a big shop's entries)
        scope = VocItem.shop_id.in_(shop_ids) if len(shop_ids) != 1 else \
            VocItem.shop_id == shop_ids[0]
        found = session.scalars(select(VocItem.id).where(or_(
            indexed.overlap(keys), and_(func.cardinality(keys) == 0, scope)))
            .limit(PAIR_CANDIDATES + 1)).all()
        found_before[memo] = _Holders(found, len(found) <= PAIR_CANDIDATES)
    return found_before[memo]


def _plan_for_values(session: Session) -> None:
    """PostgreSQL: plan this transaction's statements for their values, never from the plan
    cache. The driver prepares a statement it has run five times and the server may then keep
    one generic plan for every value; the inbox's best plan depends on the values (a reference
    number found through its index, a common word found by reading the newest items until a
    page is full, a shop of 50 items or of 200,000), and a generic plan chosen after costly
    searches made reference lookups take a second (bench/dashboard.py)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_items(session: Session, shop_ids: Collection[int], f: InboxFilter, *,
               limit: int = 50, cursor: str | None = None,
               now: datetime | None = None) -> tuple[list[InboxRow], str | None]:
    """A page of the inbox and the cursor of the next page (None on the last)."""
    if not shop_ids:
        return [], None
    now = now or utcnow()
    limit = max(1, min(limit, MAX_LIMIT))
    _plan_for_values(session)
    query, _ = _filtered(session, shop_ids, f, now)
    after = decode_cursor(cursor) if cursor else None
    # Each keyset condition repeats its bound on the time alone (``>=``/``<=``): the OR form
    # gives an index no range to start from, so a page would be found by skipping every row of
    # the pages before it.
    if f.sort == "due":
        query = query.where(VocItem.respond_due_at.is_not(None))
        if after:
            query = query.where(VocItem.respond_due_at >= after[0], or_(
                VocItem.respond_due_at > after[0], and_(
                    VocItem.respond_due_at == after[0], VocItem.id > after[1])))
        query = query.order_by(VocItem.respond_due_at, VocItem.id)
    elif f.sort == "oldest":
        if after:
            query = query.where(VocItem.created_at >= after[0], or_(
                VocItem.created_at > after[0], and_(
                    VocItem.created_at == after[0], VocItem.id > after[1])))
        query = query.order_by(VocItem.created_at, VocItem.id)
    else:
        if after:
            query = query.where(VocItem.created_at <= after[0], or_(
                VocItem.created_at < after[0], and_(
                    VocItem.created_at == after[0], VocItem.id < after[1])))
        query = query.order_by(VocItem.created_at.desc(), VocItem.id.desc())
    items = session.scalars(query.limit(limit + 1)).all()
    page, more = items[:limit], len(items) > limit
    shops = {row.id: row for row in session.execute(
        select(Shop.id, Shop.domain, Shop.platform).where(
            Shop.id.in_({i.shop_id for i in page})))} if page else {}
    order_ids = {i.order_id for i in page if i.order_id}
    numbers = dict(session.execute(select(Order.id, Order.number).where(
        Order.id.in_(order_ids))).all()) if order_ids else {}
    rows = [InboxRow(item=i, shop_domain=shops[i.shop_id].domain,
                     shop_platform=shops[i.shop_id].platform,
                     order_number=numbers.get(i.order_id)) for i in page]
    return rows, (encode_cursor(page[-1], f.sort) if more else None)


def count_items(session: Session, shop_ids: Collection[int], f: InboxFilter,
                now: datetime | None = None, *, limit: int | None = None) -> int:
    """How many items the filter selects. With ``limit``, counting stops after ``limit + 1``
    items: a result above ``limit`` means "more than ``limit``" (show ``COUNT_LIMIT+``). An
    exact count reads every matching item (all 186,000 of the benchmark's biggest shop, or every
    item a common word is in); a capped one stops once it has found ``limit + 1``.

    A capped count of a two-character term held by many items tests the first holders of its
    pair first (``_pair_holders``): more than ``limit`` matches among them settle it; else the
    other items decide."""
    if not shop_ids:
        return 0
    _plan_for_values(session)
    now = now or utcnow()
    query, complete = _filtered(session, shop_ids, f, now, some_holders=limit is not None)
    if limit is None:
        # count(*), not count(id): a count over an index's rows then needs no table row at all
        return session.scalar(query.order_by(None).with_only_columns(func.count()))
    found = _count_upto(session, query, limit)
    if found <= limit and not complete:
        found = _count_upto(session, _filtered(session, shop_ids, f, now)[0], limit)
    return found


def _count_upto(session: Session, query: Select, limit: int) -> int:
    capped = (query.order_by(None).with_only_columns(literal_column("1")).limit(limit + 1)
              .subquery())
    return session.scalar(select(func.count()).select_from(capped))
