"""The follow-up journey on real Redis, a real RQ worker and a loopback SMTP server: order
delivered → enrolled → check-in due at the right local time → sent once → a low answer opens a
complaint. And every stop condition, quiet hours, consent, and the Redis-loss rebuild."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select, update

from ccms_addon.programs.followups import FollowUpSender
from ccms_addon.programs.scheduler import HORIZON, schedule_due
from ccms_addon.programs.schedule import zone
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store.models import (Enrollment, FollowUp, FollowUpStatus, ProgramKind, utcnow,
                                     VocChannel, VocItem, VocKind, VocStatus)
from tests.programs.conftest import (CHECK_IN_TERMS, DELIVERED, FREE_RETURN_TERMS, SHOPPER,
                                     order_record, run_worker)

SEOUL = zone("Asia/Seoul")


def follow_ups(runtime) -> dict[str, FollowUp]:
    with runtime.db.session() as session:
        return {f.step: f for f in session.scalars(select(FollowUp).order_by(FollowUp.id))}


def set_follow_up(runtime, follow_up_id: int, **values) -> None:
    with runtime.db.engine.begin() as conn:
        conn.execute(update(FollowUp).where(FollowUp.id == follow_up_id).values(**values))


def test_a_delivered_order_is_enrolled_once_with_steps_at_local_send_times(runtime, program,
                                                                           sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    [order_id] = sync_order(order_record())
    sync_order(order_record(updated=DELIVERED + timedelta(hours=1)))  # a later update
    with runtime.db.session() as session:
        [enrollment] = session.scalars(select(Enrollment)).all()
    assert enrollment.order_id == order_id and enrollment.anchor_at == DELIVERED
    assert (enrollment.timezone, enrollment.locale) == ("Asia/Seoul", "ko-KR")
    steps = follow_ups(runtime)
    arrival = steps["arrival"].due_at.astimezone(SEOUL)
    # delivered at 08:30 in Seoul → three days later at 10:00 Seoul time
    assert arrival.date() == DELIVERED.astimezone(SEOUL).date() + timedelta(days=3)
    assert (arrival.hour, arrival.minute) == (10, 0)
    assert steps["promo"].purpose == "marketing"
    assert all(f.status is FollowUpStatus.SCHEDULED for f in steps.values())


def test_an_unfulfilled_order_is_not_enrolled_until_it_ships(runtime, program, sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record(fulfilled=False))
    assert follow_ups(runtime) == {}
    sync_order(order_record(updated=DELIVERED + timedelta(minutes=5)))
    assert set(follow_ups(runtime)) == {"arrival", "promo"}


def test_the_check_in_journey_ends_in_a_complaint(runtime, app, program, sync_order,
                                                  smtp_server):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    [order_id] = sync_order(order_record())
    arrival = follow_ups(runtime)["arrival"]
    # Redis holds nothing until the step comes within the horizon
    assert schedule_due(runtime, now=arrival.due_at - HORIZON - timedelta(minutes=1)) == 0
    assert schedule_due(runtime, now=arrival.due_at - timedelta(minutes=5)) == 1
    scheduled = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings).scheduled_job_registry
    queued = follow_ups(runtime)["arrival"]
    assert queued.status is FollowUpStatus.QUEUED and scheduled.get_job_ids() == [queued.job_id]

    # the job runs at its time (10:00 in Seoul) and sends once, however often it runs
    sender = FollowUpSender(runtime)
    assert sender.run(arrival.id, now=arrival.due_at) == "sent"
    assert sender.run(arrival.id, now=arrival.due_at) == "sent"
    [message] = smtp_server.parsed()
    assert message["To"] == SHOPPER and "1001" in message["Subject"]
    text = message.get_content()
    assert "K 상점" in text and "매우 불만족" in text  # Korean, the shopper's language
    links = re.findall(r"https?://\S+/f/\S+", text)
    score_1 = next(link for link in links if link.endswith("score=1"))

    # one click: the page shows the pre-selected answer; a GET records nothing
    client = app.test_client()
    path = urlsplit(score_1).path
    page = client.get(f"{path}?score=1")
    assert page.status_code == 200 and 'data-auto-submit="1"' in page.get_data(as_text=True)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert follow_ups(runtime)["arrival"].answer is None
    answered = client.post(path, data={"score": "1", "comment": "<b>깨져서</b> 왔어요"})
    body = answered.get_data(as_text=True)
    assert answered.status_code == 200 and "VOC-" in body
    assert "<b>깨져서</b>" not in body  # the shopper's words are never HTML
    client.post(path, data={"score": "2"})  # a second answer updates, never a second complaint
    with runtime.db.session() as session:
        [item] = session.scalars(select(VocItem)).all()
        assert (item.kind, item.channel, item.order_id) == (VocKind.COMPLAINT,
                                                             VocChannel.FOLLOW_UP, order_id)
        assert item.body == "<b>깨져서</b> 왔어요" and item.status is VocStatus.RECEIVED
    assert follow_ups(runtime)["arrival"].answer == 2


def test_a_high_answer_opens_nothing(runtime, app, program, sync_order):
    from ccms_addon.programs.checkins import record_answer
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record())
    arrival = follow_ups(runtime)["arrival"]
    result = record_answer(runtime, arrival.shop_id, arrival.id, 5, "좋아요")
    assert not result.opened_complaint and result.complaint_reference is None


def test_the_real_worker_sends_due_follow_ups(runtime, program, sync_order, smtp_server):
    # the worker sends at the real time of day: without quiet hours, so Seoul's night does not
    # postpone it (test_quiet_hours_postpone_to_the_morning covers them)
    program(ProgramKind.FOLLOW_UP, {**CHECK_IN_TERMS,
                                    "quiet_hours": {"start": "00:00", "end": "00:00"}})
    sync_order(order_record())
    arrival = follow_ups(runtime)["arrival"]
    set_follow_up(runtime, arrival.id, due_at=utcnow() - timedelta(minutes=1))
    assert schedule_due(runtime) >= 1
    run_worker(runtime)
    assert len(smtp_server.messages) == 1
    assert follow_ups(runtime)["arrival"].status is FollowUpStatus.DISPATCHED


def test_a_redis_flush_is_rebuilt_from_sql_and_sends_once(runtime, program, sync_order,
                                                          smtp_server, redis_conn):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record("1001"), order_record("1002"), order_record("1003"))
    steps = [f for f in _all(runtime) if f.step == "arrival"]
    due = steps[0].due_at
    assert schedule_due(runtime, now=due - timedelta(minutes=5)) == 3
    redis_conn.flushdb()  # everything RQ held is gone
    assert schedule_due(runtime, now=due) == 0  # leases still run
    later = due + timedelta(minutes=6)
    assert schedule_due(runtime, now=later) == 3  # the lease ran out and the jobs are gone
    assert schedule_due(runtime, now=later) == 0  # re-enqueued ones are not sent twice
    sender = FollowUpSender(runtime)
    for step in steps:
        assert sender.run(step.id, now=later) == "sent"
        assert sender.run(step.id, now=later) == "sent"
    assert len(smtp_server.messages) == 3


def _all(runtime) -> list[FollowUp]:
    with runtime.db.session() as session:
        return list(session.scalars(select(FollowUp).order_by(FollowUp.id)))


def test_quiet_hours_postpone_to_the_morning(runtime, program, sync_order, smtp_server):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record())
    arrival = follow_ups(runtime)["arrival"]
    late = arrival.due_at.astimezone(SEOUL).replace(hour=23, minute=30)  # a backlog ran late
    assert FollowUpSender(runtime).run(arrival.id, now=late) == "postponed"
    moved = follow_ups(runtime)["arrival"]
    assert moved.status is FollowUpStatus.SCHEDULED
    assert moved.due_at.astimezone(SEOUL).hour == 8 and smtp_server.messages == []


def test_marketing_needs_consent_and_waits_for_an_open_complaint(runtime, program, sync_order,
                                                                  smtp_server):
    from ccms_addon.voc.intake import NewVocItem, record_voc_item
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    [consented, _] = sync_order(order_record("1001"),
                                order_record("1002", accepts_marketing=None))
    promos = {f.order_id: f for f in _all(runtime) if f.step == "promo"}
    sender = FollowUpSender(runtime)
    [other] = [f for order_id, f in promos.items() if order_id != consented]
    assert sender.run(other.id, now=other.due_at) == "skipped"
    record_voc_item(runtime, other.shop_id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body="broken", actor="shopper",
        order_id=consented))
    promo = promos[consented]
    assert sender.run(promo.id, now=promo.due_at) == "postponed"
    assert smtp_server.messages == []
    postponed = next(f for f in _all(runtime) if f.id == promo.id)
    assert postponed.postponed == 1 and postponed.due_at > promo.due_at


def test_a_cancelled_or_refunded_order_stops_its_follow_ups(runtime, program, sync_order):
    from ccms_addon.platforms import FinancialStatus
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record("1001"), order_record("1002"))
    sync_order(order_record("1001", updated=DELIVERED + timedelta(days=1),
                            cancelled_at=DELIVERED + timedelta(days=1)),
               order_record("1002", updated=DELIVERED + timedelta(days=1),
                            financial=FinancialStatus.REFUNDED))
    assert {f.status for f in _all(runtime)} == {FollowUpStatus.CANCELLED}
    with runtime.db.session() as session:
        reasons = set(session.scalars(select(Enrollment.cancelled_reason)))
    assert reasons == {"order cancelled", "order refunded"}


def test_no_address_is_skipped_not_failed(runtime, program, sync_order):
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    sync_order(order_record(email=None))  # Shopify without protected customer data
    arrival = follow_ups(runtime)["arrival"]
    assert FollowUpSender(runtime).run(arrival.id, now=arrival.due_at) == "skipped"
    assert "no address" in follow_ups(runtime)["arrival"].skip_reason


def test_a_guarantee_reminder_names_the_window_end_in_the_shoppers_language(
        runtime, program, sync_order, smtp_server):
    program(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    sync_order(order_record())
    reminder = follow_ups(runtime)["reminder"]
    assert FollowUpSender(runtime).run(reminder.id, now=reminder.due_at) == "sent"
    [message] = smtp_server.parsed()
    end = (DELIVERED + timedelta(days=365)).astimezone(SEOUL).date()
    assert f"{end.year}년 {end.month}월 {end.day}일" in message["Subject"]  # in Korean


def test_a_backfill_skips_what_is_long_past_and_what_is_enrolled(runtime, program, sync_order,
                                                                 shop):
    from ccms_addon.programs.enrollment import backfill
    long_ago = DELIVERED - timedelta(days=200)
    sync_order(order_record("1001", delivered=long_ago), order_record("1002"))  # no program yet
    program(ProgramKind.FOLLOW_UP, CHECK_IN_TERMS)
    assert backfill(runtime.db, shop.id, since=None) == 2
    assert backfill(runtime.db, shop.id, since=None) == 0
    statuses = {(f.order_id, f.status) for f in _all(runtime)}
    old, new = sorted({order_id for order_id, _ in statuses})
    assert {s for o, s in statuses if o == old} == {FollowUpStatus.SKIPPED}  # long past
    assert {s for o, s in statuses if o == new} == {FollowUpStatus.SCHEDULED}


def test_a_step_on_the_webhook_channel_reaches_the_gateway_signed_with_the_phone(
        runtime, program, sync_order, receiver):
    import dataclasses
    from tests.loopback import WEBHOOK_SECRET
    runtime.settings = dataclasses.replace(runtime.settings, platforms={
        **runtime.settings.platforms, "webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET}})
    program(ProgramKind.FOLLOW_UP, {"steps": [{"key": "alimtalk", "offset_days": 3,
                                               "kind": "check_in", "channel": "webhook",
                                               "template": "arrival_check_in"}]})
    sync_order(order_record(phone="010-1234-5678"))
    step = follow_ups(runtime)["alimtalk"]
    assert FollowUpSender(runtime).run(step.id, now=step.due_at) == "sent"
    [request] = receiver.requests
    assert request.verified and request.headers["Idempotency-Key"] == f"followup:{step.id}"
    import json
    payload = json.loads(request.body)
    assert payload["recipient"] == "010-1234-5678" and payload["locale"] == "ko"
    assert len(payload["data"]["scores"]) == 5 and payload["data"]["kind"] == "check_in"
