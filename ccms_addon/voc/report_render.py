"""The monthly report, rendered: one neutral document (sections of facts and tables, in ko, en or
ja) that the HTML (Jinja, print-friendly, no script), PDF (:mod:`report_pdf`) and CSV renderers all
draw, so the three always say the same. Also the report's and the digest's texts
(``report_templates/strings/<locale>.json``) and the CSV cell guard every export uses.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ccms_addon.voc.reports import MonthlyReport

LOCALES = ("ko", "en", "ja")
FORMATS = ("html", "pdf", "csv")
TEMPLATES = Path(__file__).parent / "report_templates"
#: the first character of a cell a spreadsheet would run as a formula
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    #: columns holding numbers (right-aligned)
    numeric: tuple[int, ...] = ()
    #: columns never wrapped (references, dates)
    nowrap: tuple[int, ...] = ()


@dataclass(frozen=True)
class Section:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    locale: str
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    footer: str


def normal_locale(locale: str | None) -> str:
    short = (locale or "en").replace("_", "-").split("-")[0].lower()
    return short if short in LOCALES else "en"


@lru_cache(maxsize=None)
def strings(locale: str) -> dict[str, Any]:
    """The report's and the digest's texts in ``locale`` (ko, en, ja; others get English)."""
    return json.loads((TEMPLATES / "strings" / f"{normal_locale(locale)}.json")
                      .read_text(encoding="utf-8"))


def channel_label(channel: str, locale: str) -> str:
    from ccms_addon.voc.channels import BUILT_IN
    for known in BUILT_IN:
        if known.name == channel:
            return known.label(normal_locale(locale))
    return channel


def kind_label(kind: str, locale: str) -> str:
    return strings(normal_locale(locale))["kinds"].get(kind, kind)


class Formats:
    """Numbers, shares, hours and times in one locale and zone."""

    def __init__(self, locale: str, zone: str):
        self.locale, self.zone = normal_locale(locale), ZoneInfo(zone)
        self.none = strings(self.locale)["none"]

    def n(self, value: int | None) -> str:
        from babel.numbers import format_decimal
        return self.none if value is None else format_decimal(value, locale=self.locale)

    def share(self, value: float | None) -> str:
        from babel.numbers import format_percent
        return self.none if value is None else format_percent(value, "#,##0.0%",
                                                              locale=self.locale)

    def hours(self, value: float | None) -> str:
        from babel.numbers import format_decimal
        return self.none if value is None else format_decimal(value, "#,##0.0",
                                                              locale=self.locale)

    def when(self, value: datetime | None) -> str:
        return self.none if value is None else value.astimezone(self.zone).strftime(
            "%Y-%m-%d %H:%M")

    def day(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%Y-%m-%d")

    def month(self, year: int, month: int) -> str:
        from babel.dates import format_skeleton
        return format_skeleton("yMMMM", date(year, month, 1), locale=self.locale)


def document(report: MonthlyReport, locale: str) -> Document:
    """The report as sections of facts and tables in ``locale``, ready for any renderer."""
    locale = normal_locale(locale)
    s, f = strings(locale), Formats(locale, report.zone)
    share = (lambda n: f.share(n / report.received) if report.received else s["none"])
    last_day = report.period_to - timedelta(seconds=1)
    volume = Section(s["section_volume"], facts=[(s["received_total"], f.n(report.received))],
                     tables=[
        Table([s["kind"], s["count"], s["share"]],
              [[kind_label(k, locale), f.n(n), share(n)] for k, n in report.by_kind.items()],
              (1, 2)),
        Table([s["channel"], s["count"], s["share"]],
              [[channel_label(c, locale), f.n(n), share(n)]
               for c, n in report.by_channel.items()], (1, 2))])
    stages = [(s["stage_acknowledge"], report.acknowledge), (s["stage_respond"], report.respond)]
    timeliness = Section(s["section_timeliness"], tables=[Table(
        [s["stage"], s["with_due"], s["met"], s["missed"], s["pending"], s["share_met"],
         s["median"], s["p90"]],
        [[name, f.n(t.with_due), f.n(t.met), f.n(t.missed), f.n(t.pending), f.share(t.share_met),
          f.hours(t.median_hours), f.hours(t.p90_hours)] for name, t in stages]
        + [[s["stage_resolve"], s["none"], s["none"], s["none"], s["none"], s["none"],
            f.hours(report.resolve_median_hours), f.hours(report.resolve_p90_hours)]],
        tuple(range(1, 8)))],
        notes=[s["ack_promise"].format(hours=", ".join(f.n(h) for h in report.ack_promise_hours))])
    sat = report.satisfaction
    satisfaction = Section(s["section_satisfaction"], facts=[
        (s["average"], f.hours(sat.average)), (s["responses"], f.n(sat.responses)),
        (s["requests"], f.n(sat.requests)), (s["response_rate"], f.share(sat.response_rate))],
        tables=[Table([s["score"], s["count"]],
                      [[str(score), f.n(sat.distribution.get(score, 0))]
                       for score in range(5, 0, -1)], (1,))])
    recurrence = Section(s["section_recurrence"],
                         facts=[(s["recurrence_flags"], f.n(report.recurrence_flags))],
                         tables=[Table([s["category"], s["product"], s["flags"]],
                                       [[r.category or s["uncategorised"],
                                         r.product or r.product_ref or s["none"], f.n(r.flags)]
                                        for r in report.recurrences], (2,))]
                         if report.recurrences else [])
    listed = report.prevention_actions
    prevention = Section(s["section_prevention"],
                         facts=[(s["prevention_count"], f.n(report.prevention_count))],
                         tables=[Table([s["reference"], s["category"], s["root_cause"],
                                        s["prevention_action"], s["closed_at"]],
                                       [[p.reference, p.category or s["uncategorised"],
                                         p.root_cause or s["none"], p.prevention_action,
                                         f.day(p.closed_at)] for p in listed],
                                       nowrap=(0, 4))] if listed else [],
                         notes=[s["more_not_listed"].format(count=report.prevention_count
                                                            - len(listed))]
                         if report.prevention_count > len(listed) else [])
    issues = Section(s["section_issues"], facts=[(s["raised"], f.n(report.issues_raised)),
                                                 (s["handled"], f.n(report.issues_handled))],
                     tables=[Table([s["category"], s["raised"], s["handled"]],
                                   [[i.category, f.n(i.raised), f.n(i.handled)]
                                    for i in report.issues], (1, 2))] if report.issues else [])
    quality = Section(s["section_quality"], facts=[
        (s["reopened"], f.n(report.reopened)), (s["reopen_rate"], f.share(report.reopen_rate)),
        (s["want_slips"], f.n(report.want_slips)), (s["still_open"], f.n(report.still_open))])
    return Document(
        locale=locale, title=s["title"],
        subtitle=f.month(report.year, report.month),
        facts=[(s["period"], f"{f.day(report.period_from)} – {f.day(last_day)}"),
               (s["shops"], ", ".join(f"{shop.name} ({shop.domain})" for shop in report.shops)),
               (s["zone"], report.zone), (s["generated"], f.when(report.generated_at))],
        sections=[volume, timeliness, satisfaction, recurrence, prevention, issues, quality],
        footer=s["footer"])


@lru_cache(maxsize=1)
def _jinja():
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def render_html(report: MonthlyReport, locale: str) -> str:
    """A self-contained, print-friendly HTML page (no script, no outside resource)."""
    return _jinja().get_template("monthly.html").render(doc=document(report, locale))


def render_pdf(report: MonthlyReport, locale: str) -> bytes:
    from ccms_addon.voc.report_pdf import pdf_bytes
    return pdf_bytes(document(report, locale))


def render_csv(report: MonthlyReport, locale: str, out: TextIO) -> None:
    """The document's facts and tables as CSV (section title rows, then its rows)."""
    doc = document(report, locale)
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([safe_cell(doc.title), safe_cell(doc.subtitle)])
    for label, value in doc.facts:
        writer.writerow([safe_cell(label), safe_cell(value)])
    for section in doc.sections:
        writer.writerow([])
        writer.writerow([safe_cell(section.title)])
        for label, value in section.facts:
            writer.writerow([safe_cell(label), safe_cell(value)])
        for table in section.tables:
            writer.writerow([safe_cell(h) for h in table.header])
            writer.writerows([safe_cell(c) for c in row] for row in table.rows)
        for note in section.notes:
            writer.writerow([safe_cell(note)])


def render(report: MonthlyReport, locale: str, fmt: str) -> bytes:
    if fmt == "html":
        return render_html(report, locale).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(report, locale)
    if fmt == "csv":
        buffer = io.StringIO(newline="")
        render_csv(report, locale, buffer)
        return buffer.getvalue().encode("utf-8")
    raise ValueError(f"unknown report format {fmt!r}")


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a string starting with ``= + - @`` (or a tab or
    carriage return) gets a leading quote, so it is never run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text
