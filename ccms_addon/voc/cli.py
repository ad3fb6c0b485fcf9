"""``ccms-addon reports``: the monthly CCMS report and the CSV exports, from the command line.

    ccms-addon reports monthly --shop kshop --month 2026-11 --format pdf -o 2026-11.pdf
    ccms-addon reports export-items --shop kshop --status received --from 2026-11-01 -o items.csv
    ccms-addon reports export-events --shop kshop --from 2026-11-01 --to 2026-12-01 -o events.csv

Shops are named by domain (``--platform`` when two platforms share one); dates are local days in
``--zone`` (the first shop's time zone when unset). Exports show a progress bar on stderr.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@click.group("reports")
def reports() -> None:
    """The monthly CCMS / ISO 10002 report and CSV exports of VOC items and events."""


@contextmanager
def _runtime():
    from ccms_addon.config import Settings
    from ccms_addon.runtime import build_runtime
    runtime = build_runtime(Settings.from_env())
    try:
        yield runtime
    finally:
        runtime.close()


def _shops(session, domains: tuple[str, ...], platform: str | None):
    """The shops named (each exactly one), in the order given."""
    from sqlalchemy import select
    from ccms_addon.store.models import Shop
    found = []
    for domain in domains:
        query = select(Shop).where(Shop.domain == domain)
        if platform:
            query = query.where(Shop.platform == platform)
        matches = session.scalars(query).all()
        if not matches:
            raise click.BadParameter(f"no shop {domain!r}", param_hint="--shop")
        if len(matches) > 1:
            raise click.BadParameter(f"{domain!r} is a shop on several platforms: add --platform",
                                     param_hint="--shop")
        found.append(matches[0])
    return found


def _zone(value: str | None, shops) -> str:
    name = value or shops[0].timezone or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--zone") from None
    return name


def _local_start(day: date | None, zone: str) -> datetime | None:
    from ccms_addon.voc.metrics import local_midnight
    return local_midnight(day, ZoneInfo(zone)) if day else None


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


SHOP_OPTION = click.option("--shop", "domains", multiple=True, required=True, metavar="DOMAIN",
                           help="A shop's domain (repeat for several shops of one merchant).")
PLATFORM_OPTION = click.option("--platform", help="The platform, when a domain is ambiguous.")
ZONE_OPTION = click.option("--zone", help="IANA time zone of the day boundaries [the first "
                                          "shop's].")
DAY = click.DateTime(formats=["%Y-%m-%d"])


@reports.command("monthly")
@SHOP_OPTION
@PLATFORM_OPTION
@click.option("--month", required=True, metavar="YYYY-MM", help="The local month, e.g. 2026-11.")
@click.option("--format", "fmt", type=click.Choice(["html", "pdf", "csv"]), default="pdf",
              show_default=True)
@click.option("--locale", type=click.Choice(["ko", "en", "ja"]),
              help="The report's language [the first shop's].")
@ZONE_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              required=True)
def monthly(domains, platform, month, fmt, locale, zone, output: Path) -> None:
    """Write the monthly CCMS / ISO 10002 report of one or more shops."""
    from ccms_addon.voc.reports import monthly_report, normal_locale, render
    matched = MONTH.match(month)
    if not matched or not 1 <= int(matched.group(2)) <= 12:
        raise click.BadParameter("give the month as YYYY-MM, e.g. 2026-11", param_hint="--month")
    year, number = int(matched.group(1)), int(matched.group(2))
    with _runtime() as runtime, runtime.db.session() as session:
        shops = _shops(session, domains, platform)
        zone = _zone(zone, shops)
        locale = locale or normal_locale(shops[0].locale)
        with console.status(f"computing {month} for {len(shops)} shop(s)…"):
            report = monthly_report(session, [s.id for s in shops], year, number, zone)
    output.write_bytes(render(report, locale, fmt))
    console.print(f"[green]{report.received} voice(s) received in {month}; report written to "
                  f"{output}[/green]")


@reports.command("export-items")
@SHOP_OPTION
@PLATFORM_OPTION
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["received", "acknowledged", "in_progress", "responded",
                                 "closed"]))
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["complaint", "inquiry", "suggestion", "praise", "claim",
                                 "want_slip"]))
@click.option("--channel", "channels", multiple=True)
@click.option("--category", "categories", multiple=True)
@click.option("--breached", is_flag=True, help="Only open items past their response due time.")
@click.option("--search", "q", help="A reference, email, phone, order number or words.")
@click.option("--from", "date_from", type=DAY, help="Received on or after this local day.")
@click.option("--to", "date_to", type=DAY, help="Received before this local day.")
@ZONE_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              required=True)
def export_items(domains, platform, statuses, kinds, channels, categories, breached, q,
                 date_from, date_to, zone, output: Path) -> None:
    """Export VOC items as CSV (UTF-8 with BOM, opens in Excel), oldest first."""
    from ccms_addon.voc.inbox import InboxFilter, count_items
    from ccms_addon.voc.reports import export_items_csv
    with _runtime() as runtime, runtime.db.session() as session:
        shops = _shops(session, domains, platform)
        zone = _zone(zone, shops)
        ids = [s.id for s in shops]
        f = InboxFilter(statuses=statuses, kinds=kinds, channels=channels,
                        categories=categories, breached=breached, q=q,
                        created_from=_local_start(date_from and date_from.date(), zone),
                        created_to=_local_start(date_to and date_to.date(), zone), sort="oldest")
        total = count_items(session, ids, f)
        with output.open("w", encoding="utf-8", newline="") as out, _progress() as bar:
            task = bar.add_task("items", total=total)
            written = export_items_csv(session, ids, f, out, zone=zone,
                                       progress=lambda n: bar.advance(task, n))
    console.print(f"[green]{written} item(s) written to {output}[/green]")


@reports.command("export-events")
@SHOP_OPTION
@PLATFORM_OPTION
@click.option("--from", "date_from", type=DAY, help="Events on or after this local day.")
@click.option("--to", "date_to", type=DAY, help="Events before this local day.")
@ZONE_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              required=True)
def export_events(domains, platform, date_from, date_to, zone, output: Path) -> None:
    """Export the VOC timeline events as CSV (UTF-8 with BOM), oldest first."""
    from sqlalchemy import func, select
    from ccms_addon.store.models import VocEvent
    from ccms_addon.voc.metrics import shop_scope
    from ccms_addon.voc.reports import export_events_csv
    with _runtime() as runtime, runtime.db.session() as session:
        shops = _shops(session, domains, platform)
        zone = _zone(zone, shops)
        ids = [s.id for s in shops]
        start = _local_start(date_from and date_from.date(), zone)
        end = _local_start(date_to and date_to.date(), zone)
        count = select(func.count()).select_from(VocEvent).where(shop_scope(VocEvent.shop_id, ids))
        if start:
            count = count.where(VocEvent.created_at >= start)
        if end:
            count = count.where(VocEvent.created_at < end)
        total = session.scalar(count)
        with output.open("w", encoding="utf-8", newline="") as out, _progress() as bar:
            task = bar.add_task("events", total=total)
            written = export_events_csv(session, ids, out, created_from=start, created_to=end,
                                        zone=zone, progress=lambda n: bar.advance(task, n))
    console.print(f"[green]{written} event(s) written to {output}[/green]")
