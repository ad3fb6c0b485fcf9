"""The owner's board: the figures a merchant reads first, straight from the VOC store.

:func:`board` gathers them for a set of shops at one instant, with day boundaries in one time zone
(the merchant's): today's new voices verbatim, SLA breaches, the top categories and products of the
last seven days, a 30-day daily series (volume by kind, time to acknowledge, respond and resolve,
satisfaction) and the repurchase rate of resolved complainers against customers who never
complained. The dashboard, the merchant API and the daily digest all read this one
:class:`Board`.

Every figure is an SQL aggregate over indexed ranges (``GROUP BY``, ``percentile_cont`` on
PostgreSQL; on SQLite, which has no ordered-set aggregates, the same continuous percentile from
``row_number()`` window ranks — see :func:`aggregate`). No query reads more rows than the window
it reports on, and each can be answered from an index alone (the indexes are listed in
docs/architecture.md). The repurchase figure, whose cohort ended half a year ago, is kept per shop
and cohort for an hour at most (:func:`board_repurchase`, table ``repurchase_rollups``). Local days are the zone's own (DST-correct): PostgreSQL converts with
``timezone()``; SQLite, which knows no zones, compares with UTC boundaries from ``zoneinfo``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (ColumnElement, Date, Integer, and_, case, cast, delete, exists, func,
                        literal, literal_column, select, text, type_coerce, union_all)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from ccms_addon.store.models import (Order, OrderLine, RepurchaseRollup, Shop, VocItem, VocKind,
                                     VocStatus, utcnow)
from ccms_addon.voc.lifecycle import OPEN

#: days of the daily series, today included
SERIES_DAYS = 30
#: days "this week" covers for the top categories and products, today included
WEEK_DAYS = 7
#: new voices listed verbatim, newest first
NEW_VOICES_LIMIT = 20
#: characters of a voice's body shown on the board (the item page has the whole text)
EXCERPT_CHARS = 280
#: overdue items listed, most overdue first
OVERDUE_LIMIT = 10
#: categories and products ranked
TOP_LIMIT = 5
#: a customer "came back" with an order placed within this many days (see :func:`repurchase`)
REPURCHASE_WINDOW_DAYS = 180
#: the span of anchors (complaint closed, first order) one repurchase cohort gathers: a quarter,
#: recent enough to reflect today's handling, and a quarter of the index probes a year would cost
REPURCHASE_COHORT_DAYS = 90
#: the board keeps each shop's repurchase figure this long (``repurchase_rollups``, see
#: :func:`board_repurchase`): a figure read by the board is at most this old, and never of an
#: earlier local day
REPURCHASE_ROLLUP_MAX_AGE = timedelta(hours=1)
#: percentiles of the time figures
MEDIAN, P90 = 0.5, 0.9
KINDS = tuple(k.value for k in VocKind)


# --------------------------------------------------------------------------------------------------
# What the board holds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """A new item, in the customer's own words (``excerpt`` is the body's beginning, verbatim)."""

    id: int
    reference: str
    kind: str
    channel: str
    status: str
    shop_id: int
    shop: str
    category: str | None
    subject: str | None
    excerpt: str
    truncated: bool
    contact_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class OverdueItem:
    id: int
    reference: str
    kind: str
    status: str
    shop_id: int
    shop: str
    category: str | None
    severity: str | None
    assignee_id: int | None
    due_at: datetime
    overdue_hours: float


@dataclass(frozen=True)
class Breaches:
    """Open items (received, acknowledged, in progress) whose response is overdue, and received
    items whose acknowledgement is overdue, as of ``now``."""

    respond_overdue: int
    acknowledge_overdue: int
    most_overdue: list[OverdueItem]
    acknowledge_most_overdue: list[OverdueItem]


@dataclass(frozen=True)
class Ranked:
    """A category or product with its items in the window (``complaints``: of kind complaint)."""

    key: str
    label: str
    count: int
    complaints: int


@dataclass(frozen=True)
class DayFigures:
    """One local day of items *received* that day: how many, by kind, and how fast they were
    handled (hours from receipt; items not yet acknowledged/answered/closed do not count yet)."""

    day: date
    total: int
    by_kind: dict[str, int]
    acknowledge_median_hours: float | None
    acknowledge_p90_hours: float | None
    respond_median_hours: float | None
    respond_p90_hours: float | None
    resolve_median_hours: float | None
    resolve_p90_hours: float | None
    satisfaction_average: float | None
    satisfaction_responses: int
    satisfaction_requests: int


@dataclass(frozen=True)
class RepurchaseGroup:
    customers: int
    repurchased: int

    @property
    def rate(self) -> float | None:
        return self.repurchased / self.customers if self.customers else None


@dataclass(frozen=True)
class Repurchase:
    """See :func:`repurchase`. ``cohort_from``/``cohort_to`` bound the anchors (UTC)."""

    resolved_complainers: RepurchaseGroup
    never_complained: RepurchaseGroup
    window_days: int
    cohort_from: datetime
    cohort_to: datetime


@dataclass(frozen=True)
class Board:
    shop_ids: tuple[int, ...]
    zone: str
    now: datetime
    today: date
    #: items received since local midnight
    new_today: int
    new_voices: list[Voice]
    breaches: Breaches
    #: the first instant of the seven local days the top lists cover
    week_from: datetime
    top_categories: list[Ranked]
    top_products: list[Ranked]
    series: list[DayFigures]
    repurchase: Repurchase

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (dates and datetimes as ISO 8601, rates included)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        out = {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, RepurchaseGroup):
            out["rate"] = value.rate
        return out
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Portable SQL pieces (shared with reports.py)
# --------------------------------------------------------------------------------------------------


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def hours_between(dialect: str, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in hours, NULL when either is NULL."""
    if dialect == "postgresql":
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14 (slower by a
        # third of the whole daily series on the benchmark)
        return func.date_part("epoch", end - start) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def within_days(dialect: str, later: ColumnElement, earlier: ColumnElement,
                days: int) -> ColumnElement:
    """``later <= earlier + days``."""
    if dialect == "postgresql":
        return later <= earlier + literal_column(f"interval '{int(days)} days'")
    return func.julianday(later) - func.julianday(earlier) <= float(days)


def constant(column: ColumnElement, *values: str) -> ColumnElement:
    """``column = 'value'`` (or ``IN``) with the values written into the SQL, not bound: a
    partial index whose predicate names them then serves every plan, a cached generic one too.
    Only for the fixed values of our own enums."""
    quoted = [literal_column("'" + value.replace("'", "''") + "'") for value in values]
    return column == quoted[0] if len(quoted) == 1 else column.in_(quoted)


def shop_scope(column: ColumnElement, shop_ids: Sequence[int]) -> ColumnElement:
    ids = list(shop_ids)
    return column == ids[0] if len(ids) == 1 else column.in_(ids)


def aggregate(session: Session, base, group: ColumnElement | None,
              columns: Sequence[ColumnElement], metrics: Mapping[str, ColumnElement],
              ps: Sequence[float] = (MEDIAN, P90)
              ) -> dict[Any, tuple[Mapping[str, Any], dict[str, list[float | None]]]]:
    """Aggregate ``base`` (a subquery) per ``group`` value (None: one group, keyed 0): the
    labelled aggregate ``columns``, and continuous percentiles (``percentile_cont``: linear
    interpolation between the closest ranks; NULLs left out) of each ``metrics`` column.
    Returns ``{group: (aggregates by label, {metric: [value per p, or None]})}``.

    PostgreSQL computes everything in one statement with its ordered-set aggregate. SQLite has
    none: there a second statement ranks each (group, metric)'s values with ``row_number()`` and
    interpolates between the two ranks around p·(n−1) with conditional sums."""
    key = (group if group is not None else literal(0)).label("g")
    empty = [None] * len(ps)
    if dialect_of(session) == "postgresql":
        # one sort per metric and group for all the fractions: percentile_cont(ARRAY[…])
        fractions = postgresql.array([literal(float(p)) for p in ps])
        pcts = [func.percentile_cont(fractions).within_group(column).label(f"{name}__q")
                for name, column in metrics.items()]
        query = select(key, *columns, *pcts).select_from(base)
        out = {}
        for row in session.execute(query.group_by(group) if group is not None else query):
            values = row._mapping
            out[row.g] = (values, {name: ([float(v) for v in values[f"{name}__q"]]
                                          if values[f"{name}__q"] is not None else empty)
                                   for name in metrics})
        return out
    query = select(key, *columns).select_from(base)
    rows = {row.g: row._mapping for row in session.execute(
        query.group_by(group) if group is not None else query)}
    parts = [select(key, literal(name).label("m"), column.label("v"))
             .select_from(base).where(column.is_not(None)) for name, column in metrics.items()]
    values = union_all(*parts).subquery("metric_values")
    ranked = select(
        values.c.g, values.c.m, values.c.v,
        (func.row_number().over(partition_by=(values.c.g, values.c.m), order_by=values.c.v) - 1
         ).label("rn"),
        func.count().over(partition_by=(values.c.g, values.c.m)).label("n"),
    ).subquery("ranked")
    interpolated = []
    for i, p in enumerate(ps):
        pos = literal(float(p)) * (ranked.c.n - 1)
        low = cast(pos, Integer)
        frac = pos - low
        interpolated.append((
            func.sum(case((ranked.c.rn == low, ranked.c.v * (1 - frac)), else_=0.0))
            + func.sum(case((and_(ranked.c.rn == low + 1, frac > 0), ranked.c.v * frac),
                            else_=0.0))).label(f"q{i}"))
    found: dict[Any, dict[str, list[float | None]]] = {}
    for row in session.execute(select(ranked.c.g, ranked.c.m, *interpolated)
                               .group_by(ranked.c.g, ranked.c.m)):
        found.setdefault(row.g, {})[row.m] = [float(row._mapping[f"q{i}"])
                                              for i in range(len(ps))]
    return {g: (values, {name: found.get(g, {}).get(name, empty) for name in metrics})
            for g, values in rows.items()}


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local day, in UTC."""
    return datetime.combine(day, time(0), tz).astimezone(timezone.utc)


def day_index(dialect: str, column: ColumnElement, first: date, zone: str,
              boundaries: Sequence[datetime]) -> ColumnElement:
    """The number of local days from ``first`` to the day holding ``column`` (the caller bounds
    ``column`` to ``[boundaries[0], boundaries[-1])``, the UTC instants of the local midnights).
    PostgreSQL converts to local time itself; SQLite, which knows no zones, compares with the
    boundaries (computed by ``zoneinfo``, so DST days are exact on both)."""
    if dialect == "postgresql":
        local_day = cast(func.timezone(zone, column), Date)
        return type_coerce(local_day - cast(literal(first.isoformat()), Date), Integer)
    whens = [(column >= boundaries[i], i) for i in range(len(boundaries) - 2, 0, -1)]
    return case(*whens, else_=0) if whens else literal(0)


# --------------------------------------------------------------------------------------------------
# The board
# --------------------------------------------------------------------------------------------------


def board(session: Session, shop_ids: Collection[int], *, now: datetime, zone: str) -> Board:
    """Every figure of the owner's board for ``shop_ids`` as of ``now``, days cut in ``zone``."""
    ids = tuple(sorted(set(shop_ids)))
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    midnight = local_midnight(today, tz)
    week_from = local_midnight(today - timedelta(days=WEEK_DAYS - 1), tz)
    if not ids:
        empty = RepurchaseGroup(0, 0)
        return Board((), zone, now, today, 0, [], Breaches(0, 0, [], []), week_from, [], [],
                     [_empty_day(today - timedelta(days=SERIES_DAYS - 1 - i))
                      for i in range(SERIES_DAYS)],
                     Repurchase(empty, empty, REPURCHASE_WINDOW_DAYS,
                                *repurchase_cohort(now, zone)))
    quick_statements(session)
    names = shop_names(session, ids)
    count, voices = new_voices(session, ids, since=midnight, now=now, names=names)
    return Board(
        shop_ids=ids, zone=zone, now=now, today=today, new_today=count, new_voices=voices,
        breaches=breaches(session, ids, now=now, names=names), week_from=week_from,
        top_categories=top_categories(session, ids, since=week_from, now=now),
        top_products=top_products(session, ids, since=week_from, now=now),
        series=daily_series(session, ids, now=now, zone=zone),
        repurchase=board_repurchase(session, ids, now=now, zone=zone, known=names))


def quick_statements(session: Session) -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction. The figures' statements
    read index-only ranges in milliseconds, but their estimated costs (thousands of index
    probes) pass ``jit_above_cost``, and compiling them took 17–40 ms each on the benchmark —
    more than running them."""
    if dialect_of(session) == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def shop_names(session: Session, shop_ids: Sequence[int]) -> dict[int, str]:
    return {row.id: " ".join((row.name or row.domain).split()) for row in session.execute(
        select(Shop.id, Shop.name, Shop.domain).where(shop_scope(Shop.id, shop_ids)))}


def new_voices(session: Session, shop_ids: Sequence[int], *, since: datetime, now: datetime,
               names: Mapping[int, str], limit: int = NEW_VOICES_LIMIT
               ) -> tuple[int, list[Voice]]:
    """How many items were received in ``[since, now]`` and the newest ``limit`` of them."""
    scope = and_(shop_scope(VocItem.shop_id, shop_ids), VocItem.created_at >= since,
                 VocItem.created_at <= now)
    count = session.scalar(select(func.count()).select_from(VocItem).where(scope)) or 0
    rows = session.execute(
        select(VocItem.id, VocItem.reference, VocItem.kind, VocItem.channel, VocItem.status,
               VocItem.shop_id, VocItem.category, VocItem.subject, VocItem.contact_name,
               VocItem.created_at, func.substr(VocItem.body, 1, EXCERPT_CHARS + 1).label("head"))
        .where(scope).order_by(VocItem.created_at.desc(), VocItem.id.desc()).limit(limit))
    voices = [Voice(id=r.id, reference=r.reference, kind=r.kind.value, channel=r.channel,
                    status=r.status.value, shop_id=r.shop_id, shop=names.get(r.shop_id, ""),
                    category=r.category, subject=r.subject, excerpt=r.head[:EXCERPT_CHARS],
                    truncated=len(r.head) > EXCERPT_CHARS, contact_name=r.contact_name,
                    created_at=r.created_at) for r in rows]
    return count, voices


def breaches(session: Session, shop_ids: Sequence[int], *, now: datetime,
             names: Mapping[int, str], limit: int = OVERDUE_LIMIT) -> Breaches:
    scope = and_(shop_scope(VocItem.shop_id, shop_ids),
                 constant(VocItem.status, *(s.value for s in OPEN)))
    respond = VocItem.respond_due_at < now
    acknowledge = and_(constant(VocItem.status, VocStatus.RECEIVED.value),
                       VocItem.acknowledge_due_at < now)
    counts = session.execute(select(
        func.coalesce(func.sum(case((respond, 1), else_=0)), 0),
        func.coalesce(func.sum(case((acknowledge, 1), else_=0)), 0),
    ).where(scope)).one()

    def listed(condition, due) -> list[OverdueItem]:
        rows = session.execute(
            select(VocItem.id, VocItem.reference, VocItem.kind, VocItem.status, VocItem.shop_id,
                   VocItem.category, VocItem.severity, VocItem.assignee_id, due.label("due"))
            .where(scope, condition).order_by(due, VocItem.id).limit(limit))
        return [OverdueItem(id=r.id, reference=r.reference, kind=r.kind.value,
                            status=r.status.value, shop_id=r.shop_id,
                            shop=names.get(r.shop_id, ""), category=r.category,
                            severity=r.severity, assignee_id=r.assignee_id, due_at=r.due,
                            overdue_hours=(now - r.due).total_seconds() / 3600) for r in rows]

    return Breaches(respond_overdue=int(counts[0]), acknowledge_overdue=int(counts[1]),
                    most_overdue=listed(respond, VocItem.respond_due_at) if counts[0] else [],
                    acknowledge_most_overdue=(listed(acknowledge, VocItem.acknowledge_due_at)
                                              if counts[1] else []))


def _ranked(session: Session, shop_ids: Sequence[int], column, since: datetime, now: datetime,
            limit: int) -> list[tuple[str, int, int]]:
    count = func.count().label("n")
    complaints = func.sum(case((VocItem.kind == VocKind.COMPLAINT, 1), else_=0)).label("c")
    rows = session.execute(
        select(column.label("key"), count, complaints)
        .where(shop_scope(VocItem.shop_id, shop_ids), VocItem.created_at >= since,
               VocItem.created_at <= now, column.is_not(None))
        .group_by(column).order_by(count.desc(), column).limit(limit))
    return [(r.key, int(r.n), int(r.c or 0)) for r in rows]


def top_categories(session: Session, shop_ids: Sequence[int], *, since: datetime,
                   now: datetime, limit: int = TOP_LIMIT) -> list[Ranked]:
    """Categories with the most items received in ``[since, now]`` (uncategorised left out)."""
    return [Ranked(key, key, n, c)
            for key, n, c in _ranked(session, shop_ids, VocItem.category, since, now, limit)]


def top_products(session: Session, shop_ids: Sequence[int], *, since: datetime, now: datetime,
                 limit: int = TOP_LIMIT) -> list[Ranked]:
    """Products (``VocItem.product_ref``) with the most items in ``[since, now]``; the label is
    the title of the product's line on one of those items' orders, else the product id."""
    ranked = _ranked(session, shop_ids, VocItem.product_ref, since, now, limit)
    titles = product_titles(session, shop_ids, [key for key, _, _ in ranked], since, now)
    return [Ranked(key, titles.get(key) or key, n, c) for key, n, c in ranked]


def product_titles(session: Session, shop_ids: Sequence[int], refs: Collection[str],
                   since: datetime, until: datetime) -> dict[str, str]:
    """A title for each product, from an order line of one of the items received in
    ``[since, until]`` about it (the lines of one product id name the same product). One
    statement, one ``LIMIT 1`` probe per product through the items' product index: a popular
    product's thousands of items are not all joined to their orders."""
    refs = sorted(refs)
    if not refs:
        return {}

    def first_title(ref: str):
        return (select(OrderLine.title)
                .join(VocItem, and_(OrderLine.order_id == VocItem.order_id,
                                    OrderLine.product_id == VocItem.product_ref))
                .where(shop_scope(VocItem.shop_id, shop_ids), VocItem.product_ref == ref,
                       VocItem.created_at >= since, VocItem.created_at <= until)
                .limit(1).scalar_subquery())

    row = session.execute(select(*(first_title(ref).label(f"t{i}")
                                   for i, ref in enumerate(refs)))).one()
    return {ref: row[i] for i, ref in enumerate(refs) if row[i] is not None}


def _empty_day(day: date) -> DayFigures:
    return DayFigures(day, 0, {k: 0 for k in KINDS}, None, None, None, None, None, None,
                      None, 0, 0)


def timing_columns(dialect: str) -> dict[str, ColumnElement]:
    """Hours from receipt to acknowledgement, to the first response, and to closing — the last
    only for items closed after a response (an item closed as spam or duplicate was not
    resolved)."""
    return {
        "acknowledge": hours_between(dialect, VocItem.created_at, VocItem.acknowledged_at),
        "respond": hours_between(dialect, VocItem.created_at, VocItem.responded_at),
        "resolve": case((VocItem.responded_at.is_not(None),
                         hours_between(dialect, VocItem.created_at, VocItem.closed_at))),
    }


def daily_series(session: Session, shop_ids: Sequence[int], *, now: datetime, zone: str,
                 days: int = SERIES_DAYS) -> list[DayFigures]:
    """One :class:`DayFigures` per local day, the oldest first, today last."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    bounds = [local_midnight(first + timedelta(days=i), tz) for i in range(days + 1)]
    dialect = dialect_of(session)
    timing = timing_columns(dialect)
    base = (select(day_index(dialect, VocItem.created_at, first, zone, bounds).label("day"),
                   VocItem.kind.label("kind"), VocItem.satisfaction.label("satisfaction"),
                   VocItem.satisfaction_requested_at.label("requested"),
                   *(column.label(name) for name, column in timing.items()))
            .where(shop_scope(VocItem.shop_id, shop_ids), VocItem.created_at >= bounds[0],
                   VocItem.created_at < bounds[-1], VocItem.created_at <= now)
            .subquery("series_base"))
    figures = aggregate(session, base, base.c.day, [
        func.count().label("total"),
        *(func.sum(case((base.c.kind == kind, 1), else_=0)).label(f"k_{kind}")
          for kind in KINDS),
        func.avg(base.c.satisfaction).label("avg_sat"),
        func.count(base.c.satisfaction).label("rated"),
        func.count(base.c.requested).label("asked")],
        {name: base.c[name] for name in timing})
    series = []
    for i in range(days):
        day = first + timedelta(days=i)
        if i not in figures:
            series.append(_empty_day(day))
            continue
        row, q = figures[i]
        series.append(DayFigures(
            day=day, total=int(row["total"]),
            by_kind={kind: int(row[f"k_{kind}"] or 0) for kind in KINDS},
            acknowledge_median_hours=q["acknowledge"][0], acknowledge_p90_hours=q["acknowledge"][1],
            respond_median_hours=q["respond"][0], respond_p90_hours=q["respond"][1],
            resolve_median_hours=q["resolve"][0], resolve_p90_hours=q["resolve"][1],
            satisfaction_average=float(row["avg_sat"]) if row["avg_sat"] is not None else None,
            satisfaction_responses=int(row["rated"]), satisfaction_requests=int(row["asked"])))
    return series


def repurchase_cohort(now: datetime, zone: str, window_days: int = REPURCHASE_WINDOW_DAYS,
                      cohort_days: int = REPURCHASE_COHORT_DAYS) -> tuple[datetime, datetime]:
    """The anchors' span ``[cohort_from, cohort_to)`` of :func:`repurchase` as of ``now``."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    return (local_midnight(today - timedelta(days=window_days + cohort_days), tz),
            local_midnight(today - timedelta(days=window_days), tz))


def repurchase(session: Session, shop_ids: Sequence[int], *, now: datetime, zone: str,
               window_days: int = REPURCHASE_WINDOW_DAYS,
               cohort_days: int = REPURCHASE_COHORT_DAYS) -> Repurchase:
    """Do customers whose complaint was resolved buy again as often as those who never complained?

    Customers are the shop's customer records (an item or order without one — a guest — is not
    followed). Orders count when placed and not cancelled. Each group gathers customers by an
    *anchor* inside the cohort span ``[cohort_from, cohort_to)``: ``cohort_to`` is local midnight
    ``window_days`` days before today and ``cohort_from`` is ``cohort_days`` earlier, so every
    customer counted has had the whole window to come back (a mature cohort: the figure does not
    sag for recent customers).

    - **resolved complainers**: customers with an item of kind ``complaint`` that is closed after
      a response (``responded_at`` set: closed as spam, duplicate or withdrawn does not count),
      anchored at the first such close within the span. Repurchased: an order placed after the
      anchor and at most ``window_days`` days after it.
    - **never complained**: customers with no item of kind ``complaint`` at all, anchored at their
      first order, which falls within the span. Repurchased: another order placed after the first
      and at most ``window_days`` days after it.

    The rate of each group is repurchased / customers (None for an empty group). Computed from
    the store now; the board reads it through :func:`board_repurchase`.
    """
    cohort_from, cohort_to = repurchase_cohort(now, zone, window_days, cohort_days)
    by_shop = repurchase_counts(session, shop_ids, cohort_from, cohort_to, window_days)
    return _summed(by_shop.values(), window_days, cohort_from, cohort_to)


def _summed(counts, window_days: int, cohort_from: datetime, cohort_to: datetime) -> Repurchase:
    totals = [sum(column) for column in zip(*counts)] or [0, 0, 0, 0]
    return Repurchase(resolved_complainers=RepurchaseGroup(int(totals[0]), int(totals[1])),
                      never_complained=RepurchaseGroup(int(totals[2]), int(totals[3])),
                      window_days=window_days, cohort_from=cohort_from, cohort_to=cohort_to)


def repurchase_counts(session: Session, shop_ids: Sequence[int], cohort_from: datetime,
                      cohort_to: datetime, window_days: int
                      ) -> dict[int, tuple[int, int, int, int]]:
    """Per shop: (resolved complainers, of them repurchased, never complained, of them
    repurchased) — see :func:`repurchase`. Every condition pairs a customer with its own shop, so
    the figure of a set of shops is the sum of its shops' (what lets the board keep it per shop).
    Shops with no customer in either group are left out."""
    dialect = dialect_of(session)
    placed = and_(Order.placed_at.is_not(None), Order.cancelled_at.is_(None))

    anchors = (select(VocItem.shop_id, VocItem.customer_id,
                      func.min(VocItem.closed_at).label("anchor"))
               .where(shop_scope(VocItem.shop_id, shop_ids),
                      constant(VocItem.kind, VocKind.COMPLAINT.value),
                      constant(VocItem.status, VocStatus.CLOSED.value),
                      VocItem.customer_id.is_not(None),
                      VocItem.responded_at.is_not(None),
                      VocItem.closed_at >= cohort_from, VocItem.closed_at < cohort_to)
               .group_by(VocItem.shop_id, VocItem.customer_id).subquery("complained"))
    came_back = exists().where(Order.shop_id == anchors.c.shop_id,
                               Order.customer_id == anchors.c.customer_id, placed,
                               Order.placed_at > anchors.c.anchor,
                               within_days(dialect, Order.placed_at, anchors.c.anchor, window_days))
    counts: dict[int, list[int]] = {}
    for shop_id, customers, repurchased in session.execute(
            select(anchors.c.shop_id, func.count(),
                   func.coalesce(func.sum(case((came_back, 1), else_=0)), 0))
            .select_from(anchors).group_by(anchors.c.shop_id)):
        counts.setdefault(shop_id, [0, 0, 0, 0])[0:2] = [int(customers), int(repurchased)]

    firsts = (select(Order.shop_id, Order.customer_id, func.min(Order.placed_at).label("first"))
              .where(shop_scope(Order.shop_id, shop_ids), Order.customer_id.is_not(None), placed)
              .group_by(Order.shop_id, Order.customer_id)
              .having(and_(func.min(Order.placed_at) >= cohort_from,
                           func.min(Order.placed_at) < cohort_to))
              .subquery("first_orders"))
    again = Order.__table__.alias("again")
    bought_again = exists().where(
        again.c.shop_id == firsts.c.shop_id, again.c.customer_id == firsts.c.customer_id,
        again.c.placed_at.is_not(None), again.c.cancelled_at.is_(None),
        again.c.placed_at > firsts.c.first,
        within_days(dialect, again.c.placed_at, firsts.c.first, window_days))
    complained = exists().where(VocItem.shop_id == firsts.c.shop_id,
                                VocItem.customer_id == firsts.c.customer_id,
                                constant(VocItem.kind, VocKind.COMPLAINT.value))
    for shop_id, customers, repurchased in session.execute(
            select(firsts.c.shop_id, func.count(),
                   func.coalesce(func.sum(case((bought_again, 1), else_=0)), 0))
            .select_from(firsts).where(~complained).group_by(firsts.c.shop_id)):
        counts.setdefault(shop_id, [0, 0, 0, 0])[2:4] = [int(customers), int(repurchased)]
    return {shop_id: tuple(values) for shop_id, values in counts.items()}


def board_repurchase(session: Session, shop_ids: Sequence[int], *, now: datetime, zone: str,
                     known: Collection[int] | None = None,
                     window_days: int = REPURCHASE_WINDOW_DAYS,
                     cohort_days: int = REPURCHASE_COHORT_DAYS) -> Repurchase:
    """:func:`repurchase` as the board shows it: each shop's counts kept in
    ``repurchase_rollups`` per cohort and computed again when older than
    ``REPURCHASE_ROLLUP_MAX_AGE``, by whichever board needs them first (on the benchmark's
    biggest shop the figure costs ~60 ms of a ~100 ms board; kept, ~1 ms).

    Why keeping it is sound: the cohort ends ``window_days`` before today's local midnight, so
    every repurchase it counts was placed before today (give or take a DST hour), and its
    bounds — the row's key — move at local midnight: a board never reads another day's figure. What can still change the
    figure during the day is rare and late — an old order imported or cancelled, an old
    complaint reopened, a cohort customer's first complaint (they leave "never complained") —
    and shows at most ``REPURCHASE_ROLLUP_MAX_AGE`` later. Rows go with their shop (``ON DELETE
    CASCADE``), so a shop id a database hands out again never finds an earlier shop's figure.
    ``known``: the ids of ``shop_ids`` that are shops (only those are stored)."""
    cohort_from, cohort_to = repurchase_cohort(now, zone, window_days, cohort_days)
    ids = sorted(set(shop_ids))
    fresh_after = utcnow() - REPURCHASE_ROLLUP_MAX_AGE
    r = RepurchaseRollup
    stored = {row.shop_id: (row.resolved_customers, row.resolved_repurchased,
                            row.never_customers, row.never_repurchased)
              for row in session.execute(
                  select(r.shop_id, r.resolved_customers, r.resolved_repurchased,
                         r.never_customers, r.never_repurchased)
                  .where(shop_scope(r.shop_id, ids), r.cohort_from == cohort_from,
                         r.cohort_to == cohort_to, r.window_days == window_days,
                         r.computed_at >= fresh_after))}
    missing = [shop_id for shop_id in ids if shop_id not in stored]
    if missing:
        computed = repurchase_counts(session, missing, cohort_from, cohort_to, window_days)
        known = set(ids if known is None else known)
        rows = [{"shop_id": shop_id, "cohort_from": cohort_from, "cohort_to": cohort_to,
                 "window_days": window_days, "computed_at": utcnow(),
                 **dict(zip(("resolved_customers", "resolved_repurchased", "never_customers",
                             "never_repurchased"), computed.get(shop_id, (0, 0, 0, 0))))}
                for shop_id in missing if shop_id in known]
        if rows:
            _store_rollups(session, rows)
        stored.update(computed)
    return _summed(stored.values(), window_days, cohort_from, cohort_to)


def _store_rollups(session: Session, rows: list[dict]) -> None:
    """Insert or refresh the rows (two boards computing at once: the last one's stays); rows of
    those shops a few days old go (a shop keeps a row per zone its boards are read in)."""
    r = RepurchaseRollup
    if dialect_of(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(r)
    session.execute(statement.on_conflict_do_update(
        index_elements=[r.shop_id, r.cohort_from, r.cohort_to, r.window_days],
        set_={name: statement.excluded[name] for name in (
            "resolved_customers", "resolved_repurchased", "never_customers", "never_repurchased",
            "computed_at")}), rows)
    session.execute(delete(r).where(shop_scope(r.shop_id, [row["shop_id"] for row in rows]),
                                    r.computed_at < utcnow() - timedelta(days=2)))
