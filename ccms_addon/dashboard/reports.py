"""The reports page: the monthly CCMS report (HTML, PDF, CSV) and the CSV exports of items and
events, for managers and owners. The figures and files are :mod:`ccms_addon.voc.reports`'s; this
module only serves them to a signed-in person, over that person's shops.

A monthly report is rendered by a job (``enqueue_report``) into ``var/reports/`` and served from
there once made (``stored_report``); until then the page says it is being prepared and looks
again by itself. The exports are written to a spooled temporary file (memory up to a few MB, then
disk) and sent from it, so a large export never sits in memory whole.
"""

from __future__ import annotations

import io
import tempfile
from datetime import date
from zoneinfo import ZoneInfo

from flask import abort, g, request, send_file
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ccms_addon.store.models import utcnow
from ccms_addon.voc import reports
from ccms_addon.voc.inbox import BadCursor

from .board import board_zone
from .schemas import InboxQuerySchema, flat_errors, form_data
from .views import _inbox_filter, bp, page, requires, runtime, translator, viewer

#: months offered on the page, the current one first
MONTHS_SHOWN = 12
#: seconds before the "being prepared" page looks again
PREPARING_REFRESH = 5
#: bytes an export keeps in memory before the spooled file moves to disk
SPOOL_BYTES = 4 * 1024 * 1024
#: the report's own page carries its styles inline (it is self-contained for printing and
#: saving); no script of any kind may run in it
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
MEDIA_TYPES = {"html": "text/html", "pdf": "application/pdf", "csv": "text/csv"}


class MonthSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    month = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{4}-(0[1-9]|1[0-2])$"))
    format = fields.String(load_default="html", validate=validate.OneOf(reports.FORMATS))


def _months(today: date) -> list[tuple[int, int]]:
    year, month, shown = today.year, today.month, []
    for _ in range(MONTHS_SHOWN):
        shown.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return shown


def _reports_page(status: int = 200, errors: dict | None = None):
    zone = board_zone(viewer())
    today = utcnow().astimezone(ZoneInfo(zone)).date()
    return page("reports.html", status, months=_months(today), formats=reports.FORMATS,
                zone=zone, errors=errors or {})


@bp.get("/reports")
@requires("report")
def reports_page():
    return _reports_page()


def _month(data: dict) -> tuple[int, int]:
    year, month = data["month"].split("-")
    return int(year), int(month)


@bp.get("/reports/monthly")
@requires("report")
def monthly_report():
    schema = MonthSchema()
    try:
        data = schema.load(form_data(schema, request.args))
    except ValidationError as exc:
        return _reports_page(400, flat_errors(exc.messages))
    year, month = _month(data)
    try:
        reports.month_bounds(year, month, "UTC")
    except ValueError:
        return _reports_page(400, {"month": ["form.error.month"]})
    current, t, rt = viewer(), translator(), runtime()
    zone, fmt = board_zone(current), data["format"]
    stored = reports.stored_report(rt, current.shop_ids, year, month, zone, t.locale, fmt)
    if stored is not None:
        if fmt == "html":
            g.dash_csp_base = REPORT_CSP
        return send_file(stored, mimetype=MEDIA_TYPES[fmt], as_attachment=fmt != "html",
                         download_name=f"ccms-report-{year:04d}-{month:02d}-{t.locale}.{fmt}",
                         max_age=0)
    reports.enqueue_report(rt, current.shop_ids, year, month, zone, t.locale, fmt)
    response = page("report_preparing.html", 202, year=year, month=month, fmt=fmt)
    response.headers["Refresh"] = str(PREPARING_REFRESH)
    return response


def _spooled_csv(write) -> io.BufferedIOBase:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    write(text)
    text.flush()
    text.detach()
    spool.seek(0)
    return spool


@bp.get("/reports/items.csv")
@requires("report")
def export_items():
    """The items the inbox's filters select (the same query string as the inbox)."""
    current = viewer()
    schema = InboxQuerySchema()
    try:
        data = schema.load(form_data(schema, request.args))
    except ValidationError:
        abort(400)
    if data["shop"] is not None and current.shop(data["shop"]) is None:
        abort(400)
    query = _inbox_filter({**data, "cursor": None}, current)
    zone = board_zone(current)
    with runtime().db.session() as session:
        try:
            spool = _spooled_csv(lambda out: reports.export_items_csv(
                session, current.shop_ids, query, out, zone=zone))
        except BadCursor:
            abort(400)
    return send_file(spool, mimetype="text/csv", as_attachment=True,
                     download_name=f"voc-items-{utcnow():%Y%m%d}.csv", max_age=0)


@bp.get("/reports/events.csv")
@requires("report")
def export_events():
    """The timeline events of one month (``?month=YYYY-MM``)."""
    current = viewer()
    schema = MonthSchema()
    try:
        data = schema.load(form_data(schema, request.args))
        year, month = _month(data)
        zone = board_zone(current)
        start, end = reports.month_bounds(year, month, zone)
    except (ValidationError, ValueError):
        abort(400)
    with runtime().db.session() as session:
        spool = _spooled_csv(lambda out: reports.export_events_csv(
            session, current.shop_ids, out, created_from=start, created_to=end, zone=zone))
    return send_file(spool, mimetype="text/csv", as_attachment=True,
                     download_name=f"voc-events-{year:04d}-{month:02d}.csv", max_age=0)
