"""The monthly CCMS / ISO 10002 report: every figure by hand over items that went through the real
lifecycle, the month cut in Seoul time, and its HTML, PDF and CSV renderings."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from ccms_addon.store.models import Shop, VocChannel, VocItem, VocKind, utcnow
from ccms_addon.voc import reports
from tests.voc_reports.conftest import ACTOR, SEOUL, order_record, percentile_cont

PREVENTION = '완충재 추가 <script>alert("x")</script>'
LONG_PROMISE, SHORT_PROMISE = 1000, 1  # business hours to acknowledge, per item


def previous_month(today: date) -> tuple[int, int]:
    first = today.replace(day=1) - timedelta(days=1)
    return first.year, first.month


@pytest.fixture
def month(runtime, shop, other_shop, voc, desk, orders):
    """Seven items received last month (Seoul), one on each side of the month, one elsewhere."""
    with runtime.db.session() as session:
        row = session.get(Shop, shop.id)
        row.settings = {**(row.settings or {}), "voc": {"sla_hours": {
            "complaint": {"low": 720, "critical": 0.25}, "inquiry": {"low": 720},
            "want_slip": {"critical": 0.25}}}}
    now = utcnow()
    year, number = previous_month(now.astimezone(SEOUL).date())
    start, end = reports.month_bounds(year, number, "Asia/Seoul")
    stored = orders(order_record("1001", "C1", start - timedelta(days=5)),
                    order_record("1002", "C2", start - timedelta(days=5)))
    s = [shop.id]
    minute = timedelta(minutes=1)

    def item(name, kind, channel, severity, promise, category, k, **kwargs):
        return voc(kind, f"{name} 본문", at=start + k * minute, channel=channel,
                   severity=severity, ack_promise_hours=promise, category=category,
                   **kwargs)

    a = item("a", VocKind.COMPLAINT, VocChannel.WIDGET, "low", LONG_PROMISE, "delivery", 0,
             order_id=stored["1001"][0], customer_id=stored["1001"][1],
             contact_email="a@example.com", more_issues=[("courier", "기사님이 불친절")])
    b = item("b", VocKind.COMPLAINT, VocChannel.EMAIL, "critical", SHORT_PROMISE, "delivery", 1,
             contact_email="b@example.com")
    c = item("c", VocKind.INQUIRY, VocChannel.WIDGET, "low", LONG_PROMISE, "shipping_info", 2)
    d = item("d", VocKind.WANT_SLIP, VocChannel.STAFF, "critical", SHORT_PROMISE, "packaging", 3)
    e = item("e", VocKind.COMPLAINT, VocChannel.PHONE, "critical", SHORT_PROMISE, None, 4)
    f = item("f", VocKind.COMPLAINT, VocChannel.WIDGET, "low", LONG_PROMISE, "delivery", 5,
             order_id=stored["1002"][0], customer_id=stored["1002"][1])
    g = item("g", VocKind.INQUIRY, VocChannel.WIDGET, "low", LONG_PROMISE, "eta", 6,
             contact_email="g@example.com")
    voc(VocKind.COMPLAINT, "지난달 직전", at=start - timedelta(microseconds=1), category="delivery")
    voc(VocKind.COMPLAINT, "이번 달 첫 순간", at=end, category="delivery")
    voc(VocKind.COMPLAINT, "다른 가게", at=start + minute, shop_id=other_shop.id)

    desk.acknowledge(s, a.id, ACTOR, notify_customer=False)
    desk.reply(s, a.id, ACTOR, "죄송합니다")
    desk.close(s, a.id, ACTOR, root_cause="포장 불량", prevention_action=PREVENTION)
    desk.record_satisfaction(a.id, 5)
    desk.reply(s, b.id, ACTOR, "늦어서 죄송합니다")
    desk.close(s, b.id, ACTOR, root_cause="택배사 지연")
    desk.record_satisfaction(b.id, 3)
    desk.close(s, e.id, ACTOR, resolution="spam")
    desk.acknowledge(s, f.id, ACTOR, notify_customer=False)
    desk.reply(s, g.id, ACTOR, "내일 도착합니다", given_outside=True)
    desk.close(s, g.id, ACTOR)
    desk.reopen(s, g.id, ACTOR, "아직 안 왔어요")
    return {"year": year, "month": number, "ids": {n: i.id for n, i in zip("abcdefg",
                                                                          (a, b, c, d, e, f, g))}}


def test_the_monthly_figures_by_hand(runtime, shop, month):
    with runtime.db.session() as session:
        r = reports.monthly_report(session, [shop.id], month["year"], month["month"],
                                   "Asia/Seoul")
        rows = {n: session.get(VocItem, i) for n, i in month["ids"].items()}
    assert r.received == 7
    assert r.by_kind == {"complaint": 4, "inquiry": 2, "want_slip": 1}
    assert r.by_channel == {"widget": 4, "email": 1, "phone": 1, "staff": 1}
    # acknowledgement: a, f, g in time; c not yet due; b, d, e late (or never)
    ack = r.acknowledge
    assert (ack.with_due, ack.met, ack.missed, ack.pending) == (7, 3, 3, 1)
    assert ack.share_met == 0.5
    # response: e was closed as spam (no answer owed); a, g answered in time; b late, d never;
    # c and f not yet due
    resp = r.respond
    assert (resp.with_due, resp.met, resp.missed, resp.pending) == (6, 2, 2, 2)
    assert resp.share_met == 0.5

    def hours(item, stamp):
        return (getattr(item, stamp) - item.created_at).total_seconds() / 3600

    acks = [hours(i, "acknowledged_at") for i in rows.values() if i.acknowledged_at]
    responds = [hours(i, "responded_at") for i in rows.values() if i.responded_at]
    resolves = [hours(rows[n], "closed_at") for n in "ab"]
    assert len(acks) == 5 and len(responds) == 3
    assert ack.median_hours == pytest.approx(percentile_cont(acks, .5), abs=1e-5)
    assert ack.p90_hours == pytest.approx(percentile_cont(acks, .9), abs=1e-5)
    assert resp.median_hours == pytest.approx(percentile_cont(responds, .5), abs=1e-5)
    assert resp.p90_hours == pytest.approx(percentile_cont(responds, .9), abs=1e-5)
    assert r.resolve_median_hours == pytest.approx(percentile_cont(resolves, .5), abs=1e-5)
    assert r.resolve_p90_hours == pytest.approx(percentile_cont(resolves, .9), abs=1e-5)

    sat = r.satisfaction
    assert (sat.average, sat.responses, sat.requests) == (4.0, 2, 3)
    assert sat.distribution == {1: 0, 2: 0, 3: 1, 4: 0, 5: 1}
    assert sat.response_rate == pytest.approx(2 / 3)
    assert r.recurrence_flags == 1
    assert [(x.category, x.product_ref, x.product, x.flags) for x in r.recurrences] == [
        ("delivery", "101", "머그컵", 1)]
    # closed in the month with a prevention action: none (they were closed this month)
    assert r.prevention_count == 0 and r.prevention_actions == []
    assert [(i.category, i.raised, i.handled) for i in r.issues] == [
        ("delivery", 3, 2), ("courier", 1, 1), ("eta", 1, 1), ("packaging", 1, 0),
        ("shipping_info", 1, 0)]
    assert (r.issues_raised, r.issues_handled) == (7, 4)
    assert (r.reopened, r.closed_at_least_once, r.reopen_rate) == (1, 4, 0.25)
    assert (r.want_slips, r.still_open) == (1, 4)
    assert r.ack_promise_hours == [24]
    assert r.period_from.astimezone(SEOUL).day == 1 and r.period_from.astimezone(SEOUL).hour == 0


def test_prevention_actions_count_in_the_month_they_were_closed(runtime, shop, month):
    today = utcnow().astimezone(SEOUL).date()
    with runtime.db.session() as session:
        r = reports.monthly_report(session, [shop.id], today.year, today.month, "Asia/Seoul")
    assert r.received == 1  # the item at the first instant of this month
    assert r.prevention_count == 1
    [p] = r.prevention_actions
    assert (p.prevention_action, p.root_cause, p.category, p.shop) == (
        PREVENTION, "포장 불량", "delivery", "K 상점")


def test_the_html_is_escaped_and_localised(runtime, shop, month):
    today = utcnow().astimezone(SEOUL).date()
    with runtime.db.session() as session:
        r = reports.monthly_report(session, [shop.id], today.year, today.month, "Asia/Seoul")
        last = reports.monthly_report(session, [shop.id], month["year"], month["month"],
                                      "Asia/Seoul")
    html = reports.render_html(r, "ko")
    assert '<html lang="ko">' in html and "월간 VOC 보고서" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "완충재 추가" in html
    english = reports.render_html(last, "en")
    assert "Monthly VOC report" in english and "Want-slip" in english
    assert "50.0%" in english  # the share on time of acknowledgements and responses
    japanese = reports.render_html(last, "ja-JP")
    assert '<html lang="ja">' in japanese and "苦情" in japanese and "ウィジェット" in japanese


@pytest.mark.parametrize("locale,title", [("ko", "월간 VOC 보고서"), ("ja", "月次VOCレポート"),
                                          ("en", "Monthly VOC report")])
def test_the_pdf_holds_the_korean_and_japanese_text(runtime, shop, month, locale, title):
    today = utcnow().astimezone(SEOUL).date()
    with runtime.db.session() as session:
        r = reports.monthly_report(session, [shop.id], today.year, today.month, "Asia/Seoul")
    data = reports.render_pdf(r, locale)
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert title in text
    assert "완충재 추가" in text and "포장 불량" in text and "K 상점" in text
    fonts = {str(font.get_object()["/BaseFont"]) for page in reader.pages
             for font in page["/Resources"]["/Font"].values()}
    assert "/HYSMyeongJo-Medium" in fonts


def test_the_report_as_csv(runtime, shop, month):
    with runtime.db.session() as session:
        r = reports.monthly_report(session, [shop.id], month["year"], month["month"],
                                   "Asia/Seoul")
    data = reports.render(r, "ko", "csv")
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["월간 VOC 보고서 (CCMS / ISO 10002)",
                       f"{month['year']}년 {month['month']}월"]
    assert ["접수 건수", "7"] in rows and ["불만", "4", "57.1%"] in rows
    assert ["재오픈율 (한 번 이상 종료된 건 기준)", "25.0%"] in rows


def test_bad_months_are_refused(runtime, shop):
    with runtime.db.session() as session, pytest.raises(ValueError):
        reports.monthly_report(session, [shop.id], 2026, 13, "Asia/Seoul")


def test_a_job_renders_the_report_into_var_and_it_is_fetched_again(runtime, shop, month):
    from rq import Worker
    from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
    args = ([shop.id], month["year"], month["month"], "Asia/Seoul", "ko", "pdf")
    assert reports.stored_report(runtime, *args) is None
    job_id = reports.enqueue_report(runtime, *args)
    assert reports.enqueue_report(runtime, *args) == job_id  # asked twice, queued once
    Worker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
           connection=runtime.redis).work(burst=True)
    path = reports.stored_report(runtime, *args)
    assert path is not None and path.parent == runtime.settings.var_dir / "reports"
    assert "월간 VOC 보고서" in PdfReader(path).pages[0].extract_text()
    # last month's file was made after the month ended: it stays served; this month's expires
    assert reports.stored_report(runtime, *args, now=utcnow() + timedelta(days=30)) == path
    today = utcnow().astimezone(SEOUL).date()
    current = ([shop.id], today.year, today.month, "Asia/Seoul", "en", "html")
    made = reports.write_report(runtime, *current)
    assert reports.stored_report(runtime, *current) == made
    assert reports.stored_report(runtime, *current, now=utcnow() + timedelta(hours=1)) is None
    assert not list(made.parent.glob(".*.part"))
