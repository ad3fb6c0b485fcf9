"""The owner's board, on both stores: every figure against values computed by hand from the
items the real lifecycle produced; Seoul day boundaries; one merchant never sees another's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ccms_addon.store.models import VocItem, VocKind, VocStatus, utcnow
from ccms_addon.voc import metrics
from tests.voc_reports.conftest import ACTOR, SEOUL, order_record, percentile_cont

LONG = "포장이 찢어져서 왔어요. " * 30  # over the excerpt's 280 characters
XSS = '<script>alert("x")</script> 상자가 젖었어요 & =1+1'


def local_midnight(day):
    return datetime(day.year, day.month, day.day, tzinfo=SEOUL).astimezone(timezone.utc)


@pytest.fixture
def scene(runtime, shop, other_shop, voc, desk, orders):
    """Items around the Seoul midnight that began yesterday, older open items, today's voices."""
    now = utcnow()
    today = now.astimezone(SEOUL).date()
    boundary = local_midnight(today - timedelta(days=1))  # yesterday 00:00 KST
    ids = orders(order_record("1001", "C1", boundary - timedelta(days=3)))
    order_id, customer_id = ids["1001"]
    s = [shop.id]
    items = {
        # the last microsecond of the day before yesterday, and the first of yesterday
        "late": voc(VocKind.COMPLAINT, "늦게 왔어요", at=boundary - timedelta(microseconds=1),
                    category="delivery", contact_email="a@example.com"),
        "early": voc(VocKind.INQUIRY, "언제 와요?", at=boundary, category="delivery",
                     contact_email="b@example.com"),
        "mug": voc(VocKind.COMPLAINT, "머그컵이 깨졌어요", at=boundary + timedelta(hours=1),
                   category="quality", order_id=order_id, customer_id=customer_id,
                   contact_email="c@example.com"),
        "praise": voc(VocKind.PRAISE, "친절해요", at=boundary + timedelta(hours=2)),
        "stale": voc(VocKind.COMPLAINT, "답이 없어요", at=now - timedelta(days=10),
                     category="delivery"),
        "ancient": voc(VocKind.COMPLAINT, "오래된 불만", at=now - timedelta(days=40),
                       category="quality", severity="high"),
    }
    desk.acknowledge(s, items["late"].id, ACTOR, notify_customer=False)
    desk.reply(s, items["late"].id, ACTOR, "죄송합니다")
    desk.close(s, items["late"].id, ACTOR, root_cause="택배사 지연", ask_satisfaction=True)
    desk.record_satisfaction(items["late"].id, 4)
    desk.acknowledge(s, items["early"].id, ACTOR, notify_customer=False)
    desk.reply(s, items["early"].id, ACTOR, "내일 도착합니다")
    desk.reply(s, items["mug"].id, ACTOR, "교환해 드리겠습니다")
    desk.close(s, items["mug"].id, ACTOR, root_cause="포장 불량", prevention_action="완충재 추가")
    desk.record_satisfaction(items["mug"].id, 2)
    desk.acknowledge(s, items["ancient"].id, ACTOR, notify_customer=False)
    # today's voices, newest last (a second apart, never before today's midnight)
    start = max(local_midnight(today), utcnow() - timedelta(seconds=30))
    items["today_long"] = voc(VocKind.WANT_SLIP, LONG, at=start, channel="staff",
                              category="packaging")
    items["today_xss"] = voc(VocKind.COMPLAINT, XSS, at=start + timedelta(microseconds=10),
                             contact_name="김민수", category="packaging")
    voc(VocKind.COMPLAINT, "다른 가게", shop_id=other_shop.id, category="delivery")
    return {"now": utcnow(), "today": today, "boundary": boundary, "items": items}


def test_the_board_figures_by_hand(runtime, shop, scene):
    now, today, items = scene["now"], scene["today"], scene["items"]
    with runtime.db.session() as session:
        b = metrics.board(session, [shop.id], now=now, zone="Asia/Seoul")
        rows = {name: session.get(VocItem, item.id) for name, item in items.items()}

    assert b.today == today and b.shop_ids == (shop.id,)
    # today's voices: verbatim, newest first, the long one cut at 280 characters
    assert b.new_today == 2
    assert [v.reference for v in b.new_voices] == [items["today_xss"].reference,
                                                   items["today_long"].reference]
    xss, long = b.new_voices
    assert xss.excerpt == XSS and not xss.truncated and xss.contact_name == "김민수"
    assert xss.kind == "complaint" and xss.channel == "widget" and xss.shop == "K 상점"
    assert long.excerpt == LONG[:280] and long.truncated and long.kind == "want_slip"

    # breaches: the two old open complaints; the one never acknowledged is also ack-overdue
    assert b.breaches.respond_overdue == 2
    assert [o.reference for o in b.breaches.most_overdue] == [items["ancient"].reference,
                                                              items["stale"].reference]
    ancient = b.breaches.most_overdue[0]
    assert ancient.due_at == rows["ancient"].respond_due_at
    assert ancient.overdue_hours == pytest.approx(
        (now - rows["ancient"].respond_due_at).total_seconds() / 3600)
    expected_ack = [r for r in rows.values() if r.status is VocStatus.RECEIVED
                    and r.acknowledge_due_at and r.acknowledge_due_at < now]
    assert items["stale"].reference in {r.reference for r in expected_ack}
    assert b.breaches.acknowledge_overdue == len(expected_ack)
    assert [o.reference for o in b.breaches.acknowledge_most_overdue] == [
        r.reference for r in sorted(expected_ack, key=lambda r: (r.acknowledge_due_at, r.id))]

    # this week (7 local days): delivery 2 (late, early), quality 1, packaging 2 — the item of
    # 10 days ago and the other merchant's item are outside
    assert [(r.key, r.count, r.complaints) for r in b.top_categories] == [
        ("delivery", 2, 1), ("packaging", 2, 1), ("quality", 1, 1)]
    assert [(r.key, r.label, r.count) for r in b.top_products] == [("101", "머그컵", 1)]

    # the series: 30 local days, today last; the midnight splits "late" and "early"
    assert len(b.series) == 30 and b.series[-1].day == today
    by_day = {d.day: d for d in b.series}
    before, yesterday = by_day[today - timedelta(days=2)], by_day[today - timedelta(days=1)]
    assert before.total == 1 and before.by_kind["complaint"] == 1
    assert yesterday.total == 3
    assert (yesterday.by_kind["inquiry"], yesterday.by_kind["complaint"],
            yesterday.by_kind["praise"]) == (1, 1, 1)
    assert by_day[today].total == 2 and by_day[today].by_kind["want_slip"] == 1
    assert by_day[(now - timedelta(days=10)).astimezone(SEOUL).date()].total == 1
    assert sum(d.total for d in b.series) == 7  # "ancient" is 40 days old

    def hours(a, b_):
        return (b_ - a).total_seconds() / 3600

    y = [rows[n] for n in ("early", "mug", "praise")]
    acks = [hours(r.created_at, r.acknowledged_at) for r in y if r.acknowledged_at]
    responds = [hours(r.created_at, r.responded_at) for r in y if r.responded_at]
    resolves = [hours(r.created_at, r.closed_at) for r in y if r.closed_at and r.responded_at]
    assert len(acks) == 2 and len(responds) == 2 and len(resolves) == 1
    assert yesterday.acknowledge_median_hours == pytest.approx(percentile_cont(acks, .5), abs=1e-5)
    assert yesterday.acknowledge_p90_hours == pytest.approx(percentile_cont(acks, .9), abs=1e-5)
    assert yesterday.respond_median_hours == pytest.approx(percentile_cont(responds, .5), abs=1e-5)
    assert yesterday.respond_p90_hours == pytest.approx(percentile_cont(responds, .9), abs=1e-5)
    assert yesterday.resolve_median_hours == pytest.approx(resolves[0], abs=1e-5)
    # by hand: "early" was received at midnight and "mug" an hour later, both answered just now
    since_midnight = hours(scene["boundary"], now)
    assert yesterday.acknowledge_p90_hours == pytest.approx(
        since_midnight - 0.1 * 1, abs=0.01)
    assert yesterday.satisfaction_average == 2 and yesterday.satisfaction_responses == 1
    assert yesterday.satisfaction_requests == 1
    assert before.satisfaction_average == 4 and before.resolve_median_hours == pytest.approx(
        hours(rows["late"].created_at, rows["late"].closed_at), abs=1e-5)
    empty = by_day[today - timedelta(days=20)]
    assert empty.total == 0 and empty.acknowledge_median_hours is None


def test_the_day_boundary_follows_the_zone(runtime, shop, scene):
    """In UTC the two items around Seoul's midnight (15:00 UTC) fall on the same day."""
    with runtime.db.session() as session:
        utc = metrics.daily_series(session, [shop.id], now=scene["now"], zone="UTC")
        seoul = metrics.daily_series(session, [shop.id], now=scene["now"], zone="Asia/Seoul")
    boundary_utc_day = scene["boundary"].date()
    assert {d.day: d.total for d in utc}[boundary_utc_day] >= 2
    assert {d.day: d.total for d in seoul}[scene["today"] - timedelta(days=2)] == 1


def test_tenants_are_isolated_and_an_empty_set_is_empty(runtime, shop, other_shop, scene):
    with runtime.db.session() as session:
        other = metrics.board(session, [other_shop.id], now=scene["now"], zone="Asia/Seoul")
        nothing = metrics.board(session, [], now=scene["now"], zone="Asia/Seoul")
    assert other.new_today == 1 and [v.excerpt for v in other.new_voices] == ["다른 가게"]
    assert other.breaches.respond_overdue == 0 and other.top_products == []
    assert nothing.new_today == 0 and len(nothing.series) == 30
    assert nothing.as_dict()["repurchase"]["resolved_complainers"]["rate"] is None


def test_as_dict_is_json_ready(runtime, shop, scene):
    import json
    with runtime.db.session() as session:
        b = metrics.board(session, [shop.id], now=scene["now"], zone="Asia/Seoul")
    data = json.loads(json.dumps(b.as_dict()))
    assert data["new_voices"][0]["excerpt"] == XSS
    assert data["series"][-1]["day"] == scene["today"].isoformat()


def test_a_25_hour_day_is_one_day(runtime, shop, voc):
    """New York left summer time on 2026-11-01 (01:00–02:00 happened twice): both stores put an
    item at 23:30 that day on that day, and one at 00:10 the next on the next."""
    from zoneinfo import ZoneInfo
    ny = ZoneInfo("America/New_York")

    def local(day, hour, minute):
        return datetime(2026, 11, day, hour, minute, tzinfo=ny).astimezone(timezone.utc)

    for at in (local(1, 0, 30), local(1, 23, 30), local(2, 0, 10), local(1, 1, 30)):
        voc(VocKind.INQUIRY, "언제 와요?", at=at)
    with runtime.db.session() as session:
        series = metrics.daily_series(session, [shop.id], now=local(2, 12, 0),
                                      zone="America/New_York")
    totals = {d.day.isoformat(): d.total for d in series if d.total}
    assert totals == {"2026-11-01": 3, "2026-11-02": 1}
    assert series[-1].day.isoformat() == "2026-11-02"
