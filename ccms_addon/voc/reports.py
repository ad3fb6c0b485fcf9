"""The monthly CCMS / ISO 10002 report, and the CSV exports of VOC items and events.

:func:`monthly_report` computes the figures a CCMS or ISO 10002 review asks for over the voices
*received* in one local month of a set of shops (prevention actions: items *closed* in the
month): volumes by kind and channel; acknowledgement and response against the due times set on
receipt (the shop's acknowledgement promise, the SLA); resolution times; satisfaction; recurrence
flags; prevention actions; the issues raised against those handled; the reopen rate; want-slips.
Every figure is an SQL aggregate (see :mod:`ccms_addon.voc.metrics` for the portable pieces).

:mod:`report_render` draws a report as HTML (print-friendly), PDF (reportlab with its built-in
CJK CID fonts: no font files) or CSV, in ko, en or ja; its renderers are importable from here.

A report over many shops may not be served inside a request: :func:`enqueue_report` has an RQ
job render it into ``var/reports/`` (keyed by shop set, month, zone, locale and format) and
:func:`stored_report` finds it again.

The exports stream rows (keyset pages, never all rows in memory) through the csv module, UTF-8
with a BOM (Excel then reads Korean and Japanese correctly), every text cell that a spreadsheet
would take for a formula prefixed with a quote.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from ccms_addon.store.models import (Shop, VocEvent, VocIssue, VocItem, VocKind, utcnow)
from ccms_addon.voc import metrics
from ccms_addon.voc.inbox import InboxFilter, list_items
from ccms_addon.voc.lifecycle import OPEN
from ccms_addon.voc.metrics import dialect_of, shop_scope
# the renderers, here so a caller needs one module for a report
from ccms_addon.voc.report_render import (FORMATS, normal_locale, render, render_csv,
                                          render_html, render_pdf, safe_cell)  # noqa: F401

if TYPE_CHECKING:
    from ccms_addon.runtime import Runtime

#: prevention actions listed in the report (all are counted)
PREVENTION_LIMIT = 50
#: recurrences listed (category × product)
RECURRENCE_LIMIT = 20
#: a stored report made before its month was over is served this long
FRESH_FOR = timedelta(minutes=15)
#: the RQ job that renders a report into var/reports/
BUILD_REPORT = "ccms_addon.voc.reports.build_report_file"
REPORT_JOB_TIMEOUT = 600
#: rows per keyset page of the exports (the items' page is the inbox's largest)
ITEMS_PAGE = 200
EVENTS_PAGE = 1000


# --------------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeliness:
    """Items with a due time: done by it (``met``), done late or still undone past it
    (``missed``), undone and not yet due (``pending``, left out of the share)."""

    with_due: int
    met: int
    missed: int
    pending: int
    median_hours: float | None
    p90_hours: float | None

    @property
    def share_met(self) -> float | None:
        decided = self.met + self.missed
        return self.met / decided if decided else None


@dataclass(frozen=True)
class Satisfaction:
    average: float | None
    distribution: dict[int, int]
    responses: int
    requests: int

    @property
    def response_rate(self) -> float | None:
        return self.responses / self.requests if self.requests else None


@dataclass(frozen=True)
class Recurrence:
    category: str | None
    product_ref: str | None
    product: str | None
    flags: int


@dataclass(frozen=True)
class PreventionAction:
    reference: str
    shop: str
    category: str | None
    product_ref: str | None
    root_cause: str | None
    prevention_action: str
    closed_at: datetime


@dataclass(frozen=True)
class IssueLine:
    category: str
    raised: int
    handled: int


@dataclass(frozen=True)
class ShopLine:
    id: int
    name: str
    domain: str
    platform: str


@dataclass(frozen=True)
class MonthlyReport:
    shop_ids: tuple[int, ...]
    shops: list[ShopLine]
    year: int
    month: int
    zone: str
    period_from: datetime
    period_to: datetime
    generated_at: datetime
    received: int
    by_kind: dict[str, int]
    by_channel: dict[str, int]
    ack_promise_hours: list[int]
    acknowledge: Timeliness
    respond: Timeliness
    resolve_median_hours: float | None
    resolve_p90_hours: float | None
    satisfaction: Satisfaction
    recurrence_flags: int
    recurrences: list[Recurrence]
    prevention_count: int
    prevention_actions: list[PreventionAction]
    issues_raised: int
    issues_handled: int
    issues: list[IssueLine]
    reopened: int
    closed_at_least_once: int
    want_slips: int
    still_open: int

    @property
    def reopen_rate(self) -> float | None:
        return self.reopened / self.closed_at_least_once if self.closed_at_least_once else None


def month_bounds(year: int, month: int, zone: str) -> tuple[datetime, datetime]:
    """The local month ``[first instant, first instant of the next month)`` in UTC."""
    if not (1 <= month <= 12 and 2000 <= year <= 2200):
        raise ValueError("month out of range")
    tz = ZoneInfo(zone)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return metrics.local_midnight(date(year, month, 1), tz), metrics.local_midnight(following, tz)


def monthly_report(session: Session, shop_ids: Collection[int], year: int, month: int,
                   zone: str, *, now: datetime | None = None) -> MonthlyReport:
    """The month's figures for ``shop_ids`` (see the module docstring), as of ``now``."""
    ids = tuple(sorted(set(shop_ids)))
    if not ids:
        raise ValueError("no shops")
    now = now or utcnow()
    start, end = month_bounds(year, month, zone)
    dialect = dialect_of(session)
    metrics.quick_statements(session)
    in_month = and_(shop_scope(VocItem.shop_id, ids), VocItem.created_at >= start,
                    VocItem.created_at < end)
    by_kind: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    for kind, channel, n in session.execute(
            select(VocItem.kind, VocItem.channel, func.count()).where(in_month)
            .group_by(VocItem.kind, VocItem.channel)):
        by_kind[kind.value] = by_kind.get(kind.value, 0) + n
        by_channel[channel] = by_channel.get(channel, 0) + n

    timing = metrics.timing_columns(dialect)
    v = select(VocItem.kind, VocItem.status, VocItem.acknowledge_due_at, VocItem.acknowledged_at,
               VocItem.respond_due_at, VocItem.responded_at, VocItem.closed_at,
               VocItem.satisfaction, VocItem.satisfaction_requested_at, VocItem.reopened_count,
               VocItem.recurrence, *(c.label(n) for n, c in timing.items())) \
        .where(in_month).subquery("month_base")

    def total(condition) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    answered_or_open = ~and_(v.c.closed_at.is_not(None), v.c.responded_at.is_(None))
    t, q = metrics.aggregate(session, v, None, [
        func.count().label("received"),
        func.count(v.c.acknowledge_due_at).label("ack_due"),
        total(v.c.acknowledged_at <= v.c.acknowledge_due_at).label("ack_met"),
        total(and_(v.c.acknowledged_at.is_(None), v.c.acknowledge_due_at >= now)
              ).label("ack_pending"),
        total(and_(v.c.respond_due_at.is_not(None), answered_or_open)).label("resp_due"),
        total(v.c.responded_at <= v.c.respond_due_at).label("resp_met"),
        total(and_(v.c.responded_at.is_(None), v.c.respond_due_at >= now,
                   answered_or_open)).label("resp_pending"),
        func.avg(v.c.satisfaction).label("sat_avg"),
        func.count(v.c.satisfaction).label("sat_n"),
        func.count(v.c.satisfaction_requested_at).label("sat_asked"),
        *(total(v.c.satisfaction == score).label(f"sat_{score}") for score in range(1, 6)),
        total(v.c.reopened_count > 0).label("reopened"),
        total(or_(v.c.closed_at.is_not(None), v.c.reopened_count > 0)).label("closed"),
        total(v.c.kind == VocKind.WANT_SLIP).label("want_slips"),
        total(v.c.recurrence.is_(True)).label("flags"),
        total(v.c.status.in_(OPEN)).label("open"),
    ], {n: v.c[n] for n in timing})[0]

    def timeliness(due: int, met: int, pending: int, name: str) -> Timeliness:
        median, p90 = q[name]
        return Timeliness(int(due), int(met), int(due) - int(met) - int(pending), int(pending),
                          median, p90)

    flagged = session.execute(
        select(VocItem.category, VocItem.product_ref, func.count().label("n"))
        .where(in_month, VocItem.recurrence.is_(True))
        .group_by(VocItem.category, VocItem.product_ref)
        .order_by(func.count().desc(), VocItem.category, VocItem.product_ref)
        .limit(RECURRENCE_LIMIT)).all()
    titles = metrics.product_titles(session, ids, {r.product_ref for r in flagged if r.product_ref},
                                    start, end)

    closed_in_month = and_(shop_scope(VocItem.shop_id, ids), VocItem.closed_at >= start,
                           VocItem.closed_at < end, VocItem.prevention_action.is_not(None))
    prevention_count = session.scalar(select(func.count()).where(closed_in_month)) or 0
    shops = _shops(session, ids)
    names = {s.id: s.name for s in shops}
    prevention = [PreventionAction(r.reference, names.get(r.shop_id, ""), r.category,
                                   r.product_ref, r.root_cause, r.prevention_action, r.closed_at)
                  for r in session.execute(
                      select(VocItem.reference, VocItem.shop_id, VocItem.category,
                             VocItem.product_ref, VocItem.root_cause, VocItem.prevention_action,
                             VocItem.closed_at)
                      .where(closed_in_month).order_by(VocItem.closed_at, VocItem.id)
                      .limit(PREVENTION_LIMIT))]

    issues = [IssueLine(r.category, int(r.raised), int(r.handled)) for r in session.execute(
        select(VocIssue.category, func.count().label("raised"),
               func.coalesce(func.sum(case((VocIssue.handled.is_(True), 1), else_=0)), 0)
               .label("handled"))
        .where(shop_scope(VocIssue.shop_id, ids), VocIssue.created_at >= start,
               VocIssue.created_at < end)
        .group_by(VocIssue.category).order_by(func.count().desc(), VocIssue.category))]

    return MonthlyReport(
        shop_ids=ids, shops=shops, year=year, month=month, zone=zone, period_from=start,
        period_to=end, generated_at=now, received=int(t["received"]),
        by_kind={k: by_kind[k] for k in sorted(by_kind, key=_kind_order)},
        by_channel=dict(sorted(by_channel.items(), key=lambda kv: (-kv[1], kv[0]))),
        ack_promise_hours=_promises(session, ids),
        acknowledge=timeliness(t["ack_due"], t["ack_met"], t["ack_pending"], "acknowledge"),
        respond=timeliness(t["resp_due"], t["resp_met"], t["resp_pending"], "respond"),
        resolve_median_hours=q["resolve"][0], resolve_p90_hours=q["resolve"][1],
        satisfaction=Satisfaction(
            float(t["sat_avg"]) if t["sat_avg"] is not None else None,
            {score: int(t[f"sat_{score}"]) for score in range(1, 6)},
            int(t["sat_n"]), int(t["sat_asked"])),
        recurrence_flags=int(t["flags"]),
        recurrences=[Recurrence(r.category, r.product_ref,
                                titles.get(r.product_ref) if r.product_ref else None, int(r.n))
                     for r in flagged],
        prevention_count=int(prevention_count), prevention_actions=prevention,
        issues_raised=sum(i.raised for i in issues), issues_handled=sum(i.handled for i in issues),
        issues=issues, reopened=int(t["reopened"]), closed_at_least_once=int(t["closed"]),
        want_slips=int(t["want_slips"]), still_open=int(t["open"]))


def _kind_order(kind: str) -> int:
    return metrics.KINDS.index(kind) if kind in metrics.KINDS else len(metrics.KINDS)


def _shops(session: Session, ids: Sequence[int]) -> list[ShopLine]:
    return [ShopLine(r.id, " ".join((r.name or r.domain).split()), r.domain, r.platform)
            for r in session.execute(select(Shop.id, Shop.name, Shop.domain, Shop.platform)
                                     .where(shop_scope(Shop.id, ids)).order_by(Shop.id))]


def _promises(session: Session, ids: Sequence[int]) -> list[int]:
    from ccms_addon.voc.settings import ack_promise_hours
    return sorted({ack_promise_hours(shop) for shop in session.scalars(
        select(Shop).where(shop_scope(Shop.id, ids)))})


# --------------------------------------------------------------------------------------------------
# Reports rendered by a job and kept under var/reports/
# --------------------------------------------------------------------------------------------------


def report_name(shop_ids: Collection[int], year: int, month: int, zone: str, locale: str,
                fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")
    shops = ",".join(str(i) for i in sorted(set(shop_ids)))
    digest = hashlib.sha256(f"{shops}|{zone}".encode()).hexdigest()[:20]
    return f"{year:04d}-{month:02d}-{digest}-{normal_locale(locale)}.{fmt}"


def report_path(runtime: "Runtime", shop_ids: Collection[int], year: int, month: int, zone: str,
                locale: str, fmt: str) -> Path:
    return runtime.settings.var_dir / "reports" / report_name(shop_ids, year, month, zone,
                                                              locale, fmt)


def stored_report(runtime: "Runtime", shop_ids: Collection[int], year: int, month: int,
                  zone: str, locale: str, fmt: str, *, now: datetime | None = None
                  ) -> Path | None:
    """The stored file, if it can be served: made after its month was over (final), or made
    within :data:`FRESH_FOR`."""
    path = report_path(runtime, shop_ids, year, month, zone, locale, fmt)
    try:
        made = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except FileNotFoundError:
        return None
    _, end = month_bounds(year, month, zone)
    return path if made >= end or made >= (now or utcnow()) - FRESH_FOR else None


def write_report(runtime: "Runtime", shop_ids: Collection[int], year: int, month: int,
                 zone: str, locale: str, fmt: str) -> Path:
    """Compute, render and store the report (atomically: a reader never sees half a file)."""
    with runtime.db.session() as session:
        report = monthly_report(session, shop_ids, year, month, zone)
    data = render(report, locale, fmt)
    path = report_path(runtime, shop_ids, year, month, zone, locale, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def build_report_file(shop_ids: list[int], year: int, month: int, zone: str, locale: str,
                      fmt: str) -> str:
    """RQ job: render one report into var/reports/; returns its path."""
    from ccms_addon.runtime import current
    return str(write_report(current(), shop_ids, year, month, zone, locale, fmt))


def report_job_id(shop_ids: Collection[int], year: int, month: int, zone: str, locale: str,
                  fmt: str) -> str:
    """Namespaced by the sorted shop list (``shop-<id>-report-…`` for one shop,
    ``shops-<id>_<id>…-report-…`` for several): the job goes when any of its shops leaves."""
    from ccms_addon.queue import shops_job_id
    return shops_job_id(shop_ids, "report-" + report_name(shop_ids, year, month, zone, locale,
                                                          fmt).replace(".", "-"))


def enqueue_report(runtime: "Runtime", shop_ids: Collection[int], year: int, month: int,
                   zone: str, locale: str, fmt: str) -> str:
    """Queue the job (a deterministic id: asking twice while it waits queues it once); its id."""
    from rq import Queue
    from rq.job import Job
    from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
    job_id = report_job_id(shop_ids, year, month, zone, locale, fmt)
    existing = Job.fetch_many([job_id], connection=runtime.redis)[0]
    if existing is not None and existing.get_status(refresh=False) in ("queued", "started",
                                                                        "scheduled", "deferred"):
        return job_id
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    q.enqueue_call(BUILD_REPORT, args=(sorted(set(shop_ids)), year, month, zone,
                                       normal_locale(locale), fmt),
                   job_id=job_id, timeout=REPORT_JOB_TIMEOUT, result_ttl=3600)
    return job_id


# --------------------------------------------------------------------------------------------------
# CSV exports
# --------------------------------------------------------------------------------------------------


ITEM_COLUMNS = (
    "reference", "shop", "platform", "created_at", "kind", "channel", "status", "category",
    "severity", "subject", "body", "contact_name", "contact_email", "contact_phone",
    "order_number", "product_ref", "assignee_id", "recurrence", "duplicate_of_id",
    "escalation_level", "reopened_count", "acknowledge_due_at", "acknowledged_at",
    "respond_due_at", "responded_at", "closed_at", "root_cause", "prevention_action",
    "satisfaction", "satisfaction_comment")
EVENT_COLUMNS = ("event_id", "reference", "shop", "created_at", "type", "from_status",
                 "to_status", "actor", "note", "data")


def _stamp(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else ""


def export_items_csv(session: Session, shop_ids: Collection[int], inbox_filter: InboxFilter,
                     out: TextIO, *, zone: str = "UTC",
                     progress: Callable[[int], None] | None = None) -> int:
    """Write the items the inbox filter selects to ``out`` (a text stream opened with
    ``newline=""``) as CSV, page by page through the inbox's keyset query; the rows written.
    Times are ISO 8601 in ``zone``."""
    tz = ZoneInfo(zone)
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(ITEM_COLUMNS)
    written, cursor = 0, None
    while True:
        page, cursor = list_items(session, shop_ids, inbox_filter, limit=ITEMS_PAGE,
                                  cursor=cursor)
        for row in page:
            i = row.item
            writer.writerow([safe_cell(v) for v in (
                i.reference, row.shop_domain, row.shop_platform, _stamp(i.created_at, tz),
                i.kind.value, i.channel, i.status.value, i.category, i.severity, i.subject,
                i.body, i.contact_name, i.contact_email, i.contact_phone, row.order_number,
                i.product_ref, i.assignee_id, i.recurrence, i.duplicate_of_id,
                i.escalation_level, i.reopened_count, _stamp(i.acknowledge_due_at, tz),
                _stamp(i.acknowledged_at, tz), _stamp(i.respond_due_at, tz),
                _stamp(i.responded_at, tz), _stamp(i.closed_at, tz), i.root_cause,
                i.prevention_action, i.satisfaction, i.satisfaction_comment)])
            session.expunge(i)  # keep the session's identity map as small as one page
        written += len(page)
        if progress and page:
            progress(len(page))
        if cursor is None:
            return written


def export_events_csv(session: Session, shop_ids: Collection[int], out: TextIO, *,
                      created_from: datetime | None = None, created_to: datetime | None = None,
                      zone: str = "UTC", progress: Callable[[int], None] | None = None) -> int:
    """Write the timeline events of ``shop_ids`` in ``[created_from, created_to)``, oldest first,
    keyset-paged on ``(created_at, id)``; the rows written."""
    tz = ZoneInfo(zone)
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(EVENT_COLUMNS)
    if not shop_ids:
        return 0
    ids = sorted(set(shop_ids))
    names = dict(session.execute(select(Shop.id, Shop.domain).where(shop_scope(Shop.id, ids))).all())
    query = (select(VocEvent.id, VocEvent.created_at, VocEvent.shop_id, VocEvent.type,
                    VocEvent.from_status, VocEvent.to_status, VocEvent.actor, VocEvent.note,
                    VocEvent.data, VocItem.reference)
             .join(VocItem, VocItem.id == VocEvent.voc_item_id)
             .where(shop_scope(VocEvent.shop_id, ids))
             .order_by(VocEvent.created_at, VocEvent.id).limit(EVENTS_PAGE))
    if created_from is not None:
        query = query.where(VocEvent.created_at >= created_from)
    if created_to is not None:
        query = query.where(VocEvent.created_at < created_to)
    written, last = 0, None
    while True:
        page_query = query if last is None else query.where(or_(
            VocEvent.created_at > last[0], and_(VocEvent.created_at == last[0],
                                                VocEvent.id > last[1])))
        rows = session.execute(page_query).all()
        for r in rows:
            writer.writerow([safe_cell(v) for v in (
                r.id, r.reference, names.get(r.shop_id, ""), _stamp(r.created_at, tz), r.type,
                r.from_status, r.to_status, r.actor, r.note,
                json.dumps(r.data, ensure_ascii=False, sort_keys=True) if r.data else "")])
        written += len(rows)
        if progress and rows:
            progress(len(rows))
        if len(rows) < EVENTS_PAGE:
            return written
        last = (rows[-1].created_at, rows[-1].id)
