"""CSV exports of VOC items and events: streamed page by page, UTF-8 with a BOM, every cell a
spreadsheet would run as a formula neutralised; and the ``ccms-addon reports`` commands."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import select

from ccms_addon.cli import main
from ccms_addon.store.models import VocEvent, VocKind, utcnow
from ccms_addon.voc import reports
from ccms_addon.voc.inbox import InboxFilter
from tests.voc_reports.conftest import ACTOR, SEOUL

FORMULA = '=HYPERLINK("http://evil.test","클릭")'


@pytest.fixture
def items(runtime, shop, other_shop, voc, desk):
    start = utcnow() - timedelta(days=2)
    made = [
        voc(VocKind.COMPLAINT, FORMULA, at=start, contact_name="+82 10 1234", subject="@SUM(A1)",
            category="delivery"),
        voc(VocKind.INQUIRY, "여러 줄\n두 번째 줄, \"따옴표\"", at=start + timedelta(hours=1),
            contact_name="-김민수"),
        voc(VocKind.PRAISE, "\t탭으로 시작", at=start + timedelta(hours=2)),
        voc(VocKind.COMPLAINT, "평범한 불만 -1", at=start + timedelta(hours=3)),
        voc(VocKind.SUGGESTION, "제안합니다", at=start + timedelta(hours=4)),
    ]
    voc(VocKind.COMPLAINT, "다른 가게", shop_id=other_shop.id)
    desk.add_note([shop.id], made[0].id, ACTOR, "=cmd|' /C calc'!A0")
    desk.reply([shop.id], made[0].id, ACTOR, "답변", given_outside=True)
    return made


def read(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_items_export_is_safe_and_complete(runtime, shop, items, monkeypatch):
    monkeypatch.setattr(reports, "ITEMS_PAGE", 2)  # three pages for five items
    out, pages = io.StringIO(newline=""), []
    with runtime.db.session() as session:
        written = reports.export_items_csv(session, [shop.id], InboxFilter(sort="oldest"), out,
                                           zone="Asia/Seoul", progress=pages.append)
    assert written == 5 and pages == [2, 2, 1]
    header, *rows = read(out.getvalue())
    assert tuple(header) == reports.ITEM_COLUMNS
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["reference"]] for r in rows] == [i.reference for i in items]
    first, second, third, fourth, _ = rows
    assert first[col["body"]] == "'" + FORMULA
    assert first[col["subject"]] == "'@SUM(A1)" and first[col["contact_name"]] == "'+82 10 1234"
    assert second[col["contact_name"]] == "'-김민수"
    assert second[col["body"]] == "여러 줄\n두 번째 줄, \"따옴표\""
    assert third[col["body"]] == "'\t탭으로 시작"
    assert fourth[col["body"]] == "평범한 불만 -1"
    assert first[col["status"]] == "responded" and first[col["shop"]] == "kshop"
    assert first[col["created_at"]] == items[0].created_at.astimezone(SEOUL).isoformat(
        timespec="seconds") and first[col["created_at"]].endswith("+09:00")
    assert first[col["recurrence"]] == "false" and first[col["reopened_count"]] == "0"
    # a filter narrows it; another shop's items never appear
    out = io.StringIO(newline="")
    with runtime.db.session() as session:
        assert reports.export_items_csv(session, [shop.id], InboxFilter(kinds=["complaint"]),
                                        out) == 2
    assert "다른 가게" not in out.getvalue()


def test_events_export_pages_on_time_and_id(runtime, shop, items, monkeypatch):
    monkeypatch.setattr(reports, "EVENTS_PAGE", 3)
    with runtime.db.session() as session:
        expected = session.execute(select(VocEvent.id, VocEvent.type).where(
            VocEvent.shop_id == shop.id).order_by(VocEvent.created_at, VocEvent.id)).all()
        out = io.StringIO(newline="")
        written = reports.export_events_csv(session, [shop.id], out)
    header, *rows = read(out.getvalue())
    assert tuple(header) == reports.EVENT_COLUMNS and written == len(expected) == len(rows)
    assert [int(r[0]) for r in rows] == [e.id for e in expected]
    note = next(r for r in rows if r[4] == "note")
    assert note[8] == "'=cmd|' /C calc'!A0" and note[1] == items[0].reference
    received = next(r for r in rows if r[4] == "received")
    assert '"channel": "widget"' in received[9]
    # a period: only the events of the item received two days ago, first hour
    since = items[0].created_at
    out = io.StringIO(newline="")
    with runtime.db.session() as session:
        n = reports.export_events_csv(session, [shop.id], out, created_from=since,
                                      created_to=since + timedelta(minutes=30))
    assert n == 1 and read(out.getvalue())[1][4] == "received"


@pytest.fixture
def cli_env(settings, runtime):
    return {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
            "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}


def run(cli_env, *args):
    return CliRunner().invoke(main, ["reports", *args], env=cli_env, catch_exceptions=False)


def test_the_commands(cli_env, shop, items, tmp_path):
    month = (utcnow() - timedelta(days=2)).astimezone(SEOUL).strftime("%Y-%m")
    pdf = tmp_path / "report.pdf"
    result = run(cli_env, "monthly", "--shop", "kshop", "--month", month, "--format", "pdf",
                 "-o", str(pdf))
    assert result.exit_code == 0, result.output
    text = PdfReader(pdf).pages[0].extract_text()
    assert "월간 VOC 보고서" in text  # the shop's language
    html = tmp_path / "report.html"
    assert run(cli_env, "monthly", "--shop", "kshop", "--month", month, "--format", "html",
               "--locale", "ja", "-o", str(html)).exit_code == 0
    assert "月次VOCレポート" in html.read_text(encoding="utf-8")

    items_csv = tmp_path / "items.csv"
    result = run(cli_env, "export-items", "--shop", "kshop", "--kind", "complaint", "-o",
                 str(items_csv))
    assert result.exit_code == 0, result.output
    assert "2 item(s) written" in result.output
    assert items_csv.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(read(items_csv.read_text(encoding="utf-8"))) == 3
    events_csv = tmp_path / "events.csv"
    today = utcnow().astimezone(SEOUL).date()
    result = run(cli_env, "export-events", "--shop", "kshop", "--from",
                 (today - timedelta(days=3)).isoformat(), "-o", str(events_csv))
    assert result.exit_code == 0, result.output
    assert "event(s) written" in result.output


def test_the_commands_refuse_bad_input(cli_env, shop, tmp_path):
    out = str(tmp_path / "x")
    bad_month = run(cli_env, "monthly", "--shop", "kshop", "--month", "2026-13", "-o", out)
    assert bad_month.exit_code == 2 and "YYYY-MM" in bad_month.output
    no_shop = run(cli_env, "monthly", "--shop", "nope", "--month", "2026-11", "-o", out)
    assert no_shop.exit_code == 2 and "no shop 'nope'" in no_shop.output
    bad_zone = run(cli_env, "export-items", "--shop", "kshop", "--zone", "Mars/Base", "-o", out)
    assert bad_zone.exit_code == 2 and "unknown time zone" in bad_zone.output
