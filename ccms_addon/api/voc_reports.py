"""What the calling shop's VOC adds up to (merchant API, ``/api/v1/voc``): the owner's board
(:func:`ccms_addon.voc.metrics.board`), the monthly CCMS / ISO 10002 report as JSON, HTML or PDF
(:mod:`ccms_addon.voc.reports`), and CSV exports of items and events.

Days and months are cut in the shop's time zone. A person named in ``X-Staff-Email`` needs the
``report`` permission (managers and owners). The exports are written to a spooled temporary file
(memory up to :data:`SPOOL_BYTES`, then disk) and sent from there, so a large export never sits
whole in memory.
"""

from __future__ import annotations

import io
import re
import tempfile
from typing import Any

from flask import Response, current_app, g, send_file
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, fields, validate

from ccms_addon.api.auth import require_shop
from ccms_addon.api.schemas import UtcDateTime
from ccms_addon.api.voc import acting, inbox_filter
from ccms_addon.api.voc_schemas import InboxArgsSchema
from ccms_addon.store.models import Shop, VocKind, utcnow
from ccms_addon.voc import metrics, reports
from ccms_addon.widgets.settings import LOCALES

bp = Blueprint("voc_reports", __name__, url_prefix="/api/v1/voc",
               description="The owner's board, the monthly CCMS report and CSV exports")
bp.before_request(require_shop)

#: bytes of an export kept in memory before it spills to a temporary file
SPOOL_BYTES = 8 * 1024 * 1024
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CSV = "text/csv"
_CSV_ANSWER = "UTF-8 CSV with a BOM (Excel reads Korean and Japanese), times in the shop's zone"


def _shop() -> Shop:
    with current_app.extensions["ccms"].db.session() as session:
        return session.get(Shop, g.shop_id)


def _hours(**kwargs: Any) -> fields.Float:
    return fields.Float(allow_none=True, **kwargs)


# --------------------------------------------------------------------------------------------------
# The owner's board
# --------------------------------------------------------------------------------------------------


class VoiceSchema(Schema):
    """A new item in the customer's own words (``excerpt``: the body's beginning, verbatim)."""

    reference = fields.String()
    kind = fields.String()
    channel = fields.String()
    status = fields.String()
    shop = fields.String()
    category = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    excerpt = fields.String()
    truncated = fields.Boolean()
    contact_name = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class OverdueItemSchema(Schema):
    reference = fields.String()
    kind = fields.String()
    status = fields.String()
    shop = fields.String()
    category = fields.String(allow_none=True)
    severity = fields.String(allow_none=True)
    assignee_id = fields.Integer(allow_none=True)
    due_at = fields.AwareDateTime()
    overdue_hours = fields.Float()


class BreachesSchema(Schema):
    respond_overdue = fields.Integer(metadata={"description": "open items past their response due"})
    acknowledge_overdue = fields.Integer(metadata={
        "description": "received items past their acknowledgement due"})
    most_overdue = fields.List(fields.Nested(OverdueItemSchema))
    acknowledge_most_overdue = fields.List(fields.Nested(OverdueItemSchema))


class RankedSchema(Schema):
    key = fields.String()
    label = fields.String()
    count = fields.Integer()
    complaints = fields.Integer()


class DayFiguresSchema(Schema):
    """One local day of items received that day (hours from receipt)."""

    day = fields.Date()
    total = fields.Integer()
    by_kind = fields.Dict(keys=fields.String(), values=fields.Integer())
    acknowledge_median_hours = _hours()
    acknowledge_p90_hours = _hours()
    respond_median_hours = _hours()
    respond_p90_hours = _hours()
    resolve_median_hours = _hours()
    resolve_p90_hours = _hours()
    satisfaction_average = fields.Float(allow_none=True)
    satisfaction_responses = fields.Integer()
    satisfaction_requests = fields.Integer()


class RepurchaseGroupSchema(Schema):
    customers = fields.Integer()
    repurchased = fields.Integer()
    rate = fields.Float(allow_none=True)


class RepurchaseSchema(Schema):
    """Customers whose complaint was resolved against customers who never complained: the share
    who ordered again within ``window_days``."""

    resolved_complainers = fields.Nested(RepurchaseGroupSchema)
    never_complained = fields.Nested(RepurchaseGroupSchema)
    window_days = fields.Integer()
    cohort_from = fields.AwareDateTime()
    cohort_to = fields.AwareDateTime()


class BoardSchema(Schema):
    zone = fields.String(metadata={"description": "the time zone days are cut in"})
    now = fields.AwareDateTime()
    today = fields.Date()
    new_today = fields.Integer()
    new_voices = fields.List(fields.Nested(VoiceSchema))
    breaches = fields.Nested(BreachesSchema)
    week_from = fields.AwareDateTime()
    top_categories = fields.List(fields.Nested(RankedSchema))
    top_products = fields.List(fields.Nested(RankedSchema))
    series = fields.List(fields.Nested(DayFiguresSchema))
    repurchase = fields.Nested(RepurchaseSchema)


@bp.get("/board")
@acting("report")
@bp.response(200, BoardSchema)
def get_board():
    """The owner's board: today's new voices verbatim, SLA breaches, this week's top categories
    and products, a 30-day daily series (volume, time to acknowledge, respond and resolve,
    satisfaction) and the repurchase rate of resolved complainers against the rest."""
    shop = _shop()
    with current_app.extensions["ccms"].db.session() as session:
        return metrics.board(session, [g.shop_id], now=utcnow(), zone=shop.timezone or "UTC")


# --------------------------------------------------------------------------------------------------
# The monthly report
# --------------------------------------------------------------------------------------------------


class ReportArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    month = fields.String(required=True, validate=validate.Regexp(_MONTH), metadata={
        "description": "YYYY-MM, a local month of the shop", "example": "2026-04"})
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "html", "pdf")))
    locale = fields.String(validate=validate.OneOf(LOCALES), metadata={
        "description": "of the HTML and PDF (default: the shop's)"})


class TimelinessSchema(Schema):
    """Items with a due time: done by it (``met``), late or still undone past it (``missed``),
    undone and not yet due (``pending``)."""

    with_due = fields.Integer()
    met = fields.Integer()
    missed = fields.Integer()
    pending = fields.Integer()
    share_met = fields.Float(allow_none=True)
    median_hours = _hours()
    p90_hours = _hours()


class SatisfactionSchema(Schema):
    average = fields.Float(allow_none=True)
    distribution = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "responses per score, 1–5"})
    responses = fields.Integer()
    requests = fields.Integer()
    response_rate = fields.Float(allow_none=True)


class RecurrenceSchema(Schema):
    category = fields.String(allow_none=True)
    product_ref = fields.String(allow_none=True)
    product = fields.String(allow_none=True)
    flags = fields.Integer()


class PreventionActionSchema(Schema):
    reference = fields.String()
    shop = fields.String()
    category = fields.String(allow_none=True)
    product_ref = fields.String(allow_none=True)
    root_cause = fields.String(allow_none=True)
    prevention_action = fields.String()
    closed_at = fields.AwareDateTime()


class IssueLineSchema(Schema):
    category = fields.String()
    raised = fields.Integer()
    handled = fields.Integer()


class MonthlyReportSchema(Schema):
    """The figures a CCMS or ISO 10002 review asks for, over the voices received in the month."""

    year = fields.Integer()
    month = fields.Integer()
    zone = fields.String()
    period_from = fields.AwareDateTime()
    period_to = fields.AwareDateTime()
    generated_at = fields.AwareDateTime()
    received = fields.Integer()
    by_kind = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": f"by kind: {', '.join(k.value for k in VocKind)}"})
    by_channel = fields.Dict(keys=fields.String(), values=fields.Integer())
    ack_promise_hours = fields.List(fields.Integer())
    acknowledge = fields.Nested(TimelinessSchema)
    respond = fields.Nested(TimelinessSchema)
    resolve_median_hours = _hours()
    resolve_p90_hours = _hours()
    satisfaction = fields.Nested(SatisfactionSchema)
    recurrence_flags = fields.Integer()
    recurrences = fields.List(fields.Nested(RecurrenceSchema))
    prevention_count = fields.Integer()
    prevention_actions = fields.List(fields.Nested(PreventionActionSchema))
    issues_raised = fields.Integer()
    issues_handled = fields.Integer()
    issues = fields.List(fields.Nested(IssueLineSchema))
    reopened = fields.Integer()
    closed_at_least_once = fields.Integer()
    reopen_rate = fields.Float(allow_none=True)
    want_slips = fields.Integer()
    still_open = fields.Integer()


_FORMATS = ("`format=json` (the default): the figures; `html`: a print-friendly page; `pdf`: "
            "the same as a PDF")


@bp.get("/reports/monthly")
@acting("report")
@bp.arguments(ReportArgsSchema, location="query", unknown=RAISE)
@bp.response(200, MonthlyReportSchema, description=_FORMATS)
@bp.alt_response(200, schema={"type": "string"}, content_type="text/html", success=True,
                 description=_FORMATS)
@bp.alt_response(200, schema={"type": "string", "format": "binary"},
                 content_type="application/pdf", success=True, description=_FORMATS)
def get_monthly_report(args: dict):
    """The monthly CCMS / ISO 10002 report of a local month: volumes by kind and channel,
    acknowledgement and response against the promise and the SLAs, resolution times,
    satisfaction, recurrences, prevention actions, the issues raised and handled."""
    match = _MONTH.match(args["month"])
    year, month = int(match.group(1)), int(match.group(2))
    if not 2000 <= year <= 2200:
        abort(422, message="No such month.", messages={"query": {"month": [
            "From 2000-01 to 2200-12."]}})
    shop = _shop()
    with current_app.extensions["ccms"].db.session() as session:
        report = reports.monthly_report(session, [g.shop_id], year, month,
                                        shop.timezone or "UTC")
    if args["format"] == "json":
        return report
    locale = args.get("locale") or reports.normal_locale(shop.locale)
    if args["format"] == "html":
        return Response(reports.render_html(report, locale), mimetype="text/html")
    return Response(reports.render_pdf(report, locale), mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="voc-{year:04d}-{month:02d}.pdf"'})


# --------------------------------------------------------------------------------------------------
# CSV exports
# --------------------------------------------------------------------------------------------------


class ExportItemsArgsSchema(InboxArgsSchema):
    """The inbox's filters; every matching item is exported (no page)."""

    class Meta:
        unknown = RAISE
        exclude = ("limit", "cursor")


class ExportEventsArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    created_from = UtcDateTime(metadata={"description": "events at or after"})
    created_to = UtcDateTime(metadata={"description": "events before"})


def _csv(write, name: str):
    """Run ``write(text_stream)`` into a spooled file and send it as a CSV attachment."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    with current_app.extensions["ccms"].db.session() as session:
        write(session, text)
    text.flush()
    text.detach()
    spool.seek(0)
    return send_file(spool, mimetype=_CSV, as_attachment=True, download_name=name)


@bp.get("/export/items.csv")
@acting("report")
@bp.arguments(ExportItemsArgsSchema, location="query", unknown=RAISE)
@bp.response(200, {"type": "string"}, content_type=_CSV, description=_CSV_ANSWER)
def export_items(args: dict):
    """Every item the inbox's filters select, one row each (the customer's words included)."""
    zone = _shop().timezone or "UTC"
    selection = inbox_filter(args)
    return _csv(lambda session, out: reports.export_items_csv(
        session, [g.shop_id], selection, out, zone=zone), "voc-items.csv")


@bp.get("/export/events.csv")
@acting("report")
@bp.arguments(ExportEventsArgsSchema, location="query", unknown=RAISE)
@bp.response(200, {"type": "string"}, content_type=_CSV, description=_CSV_ANSWER)
def export_events(args: dict):
    """Every timeline event (the audit trail), oldest first, optionally within a time range."""
    zone = _shop().timezone or "UTC"
    return _csv(lambda session, out: reports.export_events_csv(
        session, [g.shop_id], out, created_from=args.get("created_from"),
        created_to=args.get("created_to"), zone=zone), "voc-events.csv")
