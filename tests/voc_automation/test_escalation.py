"""Escalation on business hours: warnings to the assignee (or the managers and owners) before the
response is due, the owners when it broke, the unacknowledged phone call; each step once, however
many sweeps run, and again after a reopening. Mail goes to a real SMTP server on loopback."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from ccms_addon.jobs.dispatcher import Dispatcher
from ccms_addon.outbox import OutboundStatus
from ccms_addon.runtime import build_runtime
from ccms_addon.store.models import VocChannel, VocItem, VocKind, VocStatus, utcnow
from ccms_addon.voc.escalation import (BACKLOG_HORIZON, DUE_SOON, OVERDUE, UNACKNOWLEDGED,
                                       escalate, escalation_key, sweep_escalations, target_for)
from ccms_addon.voc.settings import business_hours_of
from ccms_addon.voc.service import VocDesk, actor_for
from tests.voc_automation.conftest import (MERCHANT_EMAIL, PUBLIC_URL, SEOUL, WORDS, events,
                                           friday_evening, new_item, outbound, run_worker, seoul,
                                           set_voc_settings)

OWNER_ACTOR = "staff:0:test"


def load(runtime, item_id) -> VocItem:
    with runtime.db.session() as session:
        return session.get(VocItem, item_id)


def assigned_item(runtime, shop, staff, **overrides) -> VocItem:
    """A high-severity complaint written on Friday at 19:00 (after hours), acknowledged and given
    to ``staff``: 4 business hours to answer, so due on Monday at 13:00."""
    item = new_item(runtime, shop.id, occurred_at=friday_evening(), **overrides)
    desk = VocDesk(runtime)
    desk.acknowledge([shop.id], item.id, OWNER_ACTOR, notify_customer=False)
    if staff is not None:
        desk.assign([shop.id], item.id, OWNER_ACTOR, staff.id)
    return load(runtime, item.id)


def escalation_rows(runtime):
    return outbound(runtime, "voc-escalation:")


def test_a_friday_evening_item_warns_nobody_over_the_weekend(runtime, shop, team):
    friday = friday_evening()
    item = assigned_item(runtime, shop, team["agent"])
    assert item.respond_due_at == seoul(friday, 3, "13:00")
    quiet = [seoul(friday, 0, "19:05"), seoul(friday, 1, "12:00"), seoul(friday, 2, "23:59"),
             seoul(friday, 3, "09:00"), seoul(friday, 3, "11:59")]
    for moment in quiet:
        assert sweep_escalations(runtime, now=moment) == 0, moment
    assert load(runtime, item.id).escalation_level == 0

    # Monday, one business hour before the answer is due: the assignee is warned, once
    warned_at = seoul(friday, 3, "12:00:30")
    assert sweep_escalations(runtime, now=warned_at) == 1
    assert sweep_escalations(runtime, now=seoul(friday, 3, "12:30")) == 0
    assert load(runtime, item.id).escalation_level == 1
    [warning] = escalation_rows(runtime)
    assert warning.recipient == "agent@kshop.test" and warning.locale == "en"
    assert warning.idempotency_key == escalation_key(item.id, 1, 0, f"staff-{team['agent'].id}")
    assert warning.subject == f"[K 상점] Due soon: {item.reference} (complaint)"
    assert "59 business minutes from now" in warning.body
    assert "Assigned to: Agent" in warning.body

    # the answer did not come: the owner hears it, once
    assert sweep_escalations(runtime, now=seoul(friday, 3, "13:00:30")) == 1
    assert sweep_escalations(runtime, now=seoul(friday, 4, "09:00")) == 0
    assert load(runtime, item.id).escalation_level == 2
    _, breach = escalation_rows(runtime)
    assert breach.recipient == "owner@kshop.test" and breach.locale == "ko"
    assert breach.subject == f"[K 상점] 답변 기한 초과: {item.reference} (불만)"
    steps = events(runtime, item.id, "escalated")
    assert [(e.actor, e.data["level"], e.data["reason"], e.data["to"]) for e in steps] == [
        ("system", 1, DUE_SOON, [actor_for(team["agent"])]),
        ("system", 2, OVERDUE, [actor_for(team["owner"])])]


def test_the_staff_email_is_plain_text_in_their_language_with_the_link_and_the_words(
        runtime, shop, team, smtp_server):
    item = assigned_item(runtime, shop, team["manager"], subject="배송 지연\r\nBcc: x@y.test")
    assert sweep_escalations(runtime, now=item.respond_due_at + timedelta(minutes=1)) == 2
    run_worker(runtime)
    messages = {m["To"]: m for m in smtp_server.parsed()}
    assert set(messages) == {"manager@kshop.test", "owner@kshop.test"}
    for message in messages.values():
        assert message.get_content_type() == "text/plain" and not message.is_multipart()
        body = message.get_content()
        assert f"{PUBLIC_URL}/dashboard/items/{item.id}" in body
        assert all(f"> {line}" in body for line in WORDS.splitlines())  # verbatim, as text
        assert "Bcc" not in message and "\n" not in message["Subject"]
    japanese = messages["manager@kshop.test"]
    assert japanese["Subject"] == f"[K 상점] 回答期限超過：{item.reference}（苦情）"
    assert "担当者：Manager" in japanese.get_content() and "件名：배송 지연 Bcc: x@y.test" in \
        japanese.get_content()
    korean = messages["owner@kshop.test"].get_content()
    assert "답변 기한" in korean and "월" in korean and "고객이 남긴 내용:" in korean
    assert {row.status for row in escalation_rows(runtime)} == {OutboundStatus.SENT}


def test_an_unassigned_item_warns_the_managers_and_owners(runtime, shop, team):
    item = assigned_item(runtime, shop, None)
    assert sweep_escalations(runtime, now=item.respond_due_at - timedelta(minutes=30)) == 1
    recipients = sorted(row.recipient for row in escalation_rows(runtime))
    assert recipients == ["manager@kshop.test", "owner@kshop.test"]  # not agents, not viewers
    [event] = events(runtime, item.id, "escalated")
    assert sorted(event.data["to"]) == sorted([actor_for(team["manager"]),
                                               actor_for(team["owner"])])


def test_without_a_team_the_merchant_address_is_told(runtime, shop):
    item = assigned_item(runtime, shop, None)
    assert sweep_escalations(runtime, now=item.respond_due_at + timedelta(minutes=1)) == 2
    rows = escalation_rows(runtime)
    assert [row.recipient for row in rows] == [MERCHANT_EMAIL]  # one message for both steps
    assert [row.idempotency_key for row in rows] == [escalation_key(item.id, 1, 0, "merchant")]
    assert [e.data["to"] for e in events(runtime, item.id, "escalated")] == [["merchant"]] * 2


def test_an_item_past_due_unwarned_tells_the_assignee_and_the_owner_at_once(runtime, shop, team):
    item = assigned_item(runtime, shop, team["agent2"])
    assert sweep_escalations(runtime, now=item.respond_due_at + timedelta(hours=2)) == 2
    rows = escalation_rows(runtime)
    assert [(row.recipient, row.subject.split(":")[0]) for row in rows] == [
        ("agent2@kshop.test", "[K 상점] 답변 기한 초과"),
        ("owner@kshop.test", "[K 상점] 답변 기한 초과")]
    assert [e.data["reason"] for e in events(runtime, item.id, "escalated")] == [OVERDUE, OVERDUE]


def test_a_phone_call_nobody_acknowledged_escalates(runtime, shop, team):
    """No address to acknowledge automatically: when the promised acknowledgement falls due
    (Monday 10:00, one business hour after the Friday-evening call) the managers hear of it."""
    friday = friday_evening()
    call = new_item(runtime, shop.id, channel=VocChannel.PHONE, kind=VocKind.INQUIRY,
                    severity="normal", contact_email=None, contact_phone="010-1234-5678",
                    occurred_at=friday, actor=actor_for(team["agent"]))
    call = load(runtime, call.id)
    assert call.acknowledge_due_at == seoul(friday, 3, "10:00")
    assert call.respond_due_at == seoul(friday, 3, "17:00")
    assert sweep_escalations(runtime, now=seoul(friday, 2, "12:00")) == 0
    assert sweep_escalations(runtime, now=seoul(friday, 3, "09:59")) == 0
    assert sweep_escalations(runtime, now=seoul(friday, 3, "10:01")) == 1
    [event] = events(runtime, call.id, "escalated")
    assert event.data["level"] == 1 and event.data["reason"] == UNACKNOWLEDGED
    assert sorted(row.recipient for row in escalation_rows(runtime)) == [
        "manager@kshop.test", "owner@kshop.test"]
    owner_mail = next(r for r in escalation_rows(runtime) if r.recipient == "owner@kshop.test")
    assert owner_mail.subject == f"[K 상점] 접수 확인 지연: {call.reference} (문의)"
    assert "고객에게 약속한 접수 확인 기한은" in owner_mail.body
    assert "전화" in owner_mail.body  # the channel, in the reader's language
    # the answer is still owed: the owner hears again when it breaks
    assert sweep_escalations(runtime, now=seoul(friday, 3, "17:01")) == 1
    assert load(runtime, call.id).escalation_level == 2


def test_an_answered_item_does_not_escalate(runtime, shop, team):
    item = assigned_item(runtime, shop, team["agent"])
    VocDesk(runtime).reply([shop.id], item.id, actor_for(team["agent"]), "곧 보내드립니다.")
    assert sweep_escalations(runtime, now=item.respond_due_at + timedelta(days=1)) == 0
    assert escalation_rows(runtime) == [] and events(runtime, item.id, "escalated") == []


def test_a_new_assignee_is_warned_and_the_old_one_not_twice(runtime, shop, team):
    item = assigned_item(runtime, shop, team["agent"])
    warn = item.respond_due_at - timedelta(minutes=10)
    assert sweep_escalations(runtime, now=warn) == 1
    VocDesk(runtime).assign([shop.id], item.id, OWNER_ACTOR, team["agent2"].id)
    assert sweep_escalations(runtime, now=warn) == 1
    VocDesk(runtime).assign([shop.id], item.id, OWNER_ACTOR, team["agent"].id)
    assert sweep_escalations(runtime, now=warn) == 1  # a step on the timeline…
    # …but the first assignee's warning was already sent: nothing new for them
    assert [row.recipient for row in escalation_rows(runtime)] == ["agent@kshop.test",
                                                                   "agent2@kshop.test"]


def test_a_reopened_item_escalates_again(runtime, shop, team, smtp_server):
    item = assigned_item(runtime, shop, team["agent"])
    desk = VocDesk(runtime)
    assert sweep_escalations(runtime, now=item.respond_due_at + timedelta(minutes=1)) == 2
    actor = actor_for(team["agent"])
    desk.reply([shop.id], item.id, actor, "교환해 드렸습니다.")
    desk.close([shop.id], item.id, actor, root_cause="courier delay", ask_satisfaction=False)
    desk.reopen([shop.id], item.id, actor, "the customer says it is still missing")
    reopened = load(runtime, item.id)
    assert (reopened.escalation_level, reopened.reopened_count) == (0, 1)
    assert sweep_escalations(runtime, now=reopened.respond_due_at - timedelta(minutes=5)) == 1
    assert sweep_escalations(runtime, now=reopened.respond_due_at + timedelta(minutes=5)) == 1
    keys = [row.idempotency_key for row in escalation_rows(runtime)]
    assert keys == [escalation_key(item.id, 1, 0, f"staff-{team['agent'].id}"),
                    escalation_key(item.id, 2, 0, f"staff-{team['owner'].id}"),
                    escalation_key(item.id, 1, 1, f"staff-{team['agent'].id}"),
                    escalation_key(item.id, 2, 1, f"staff-{team['owner'].id}")]
    assert len(events(runtime, item.id, "escalated")) == 4


@pytest.mark.parametrize("round_", range(2))
def test_two_dispatchers_sweeping_at_once_send_each_step_once(runtime, settings, redis_conn,
                                                              shop, team, round_):
    """Two processes' worth of sweeps (separate engines and connection pools) race over the same
    overdue items: each step is claimed by one of them."""
    items = [assigned_item(runtime, shop, team["agent"]) for _ in range(8)]
    now = max(i.respond_due_at for i in items) + timedelta(minutes=1)
    other = build_runtime(settings, redis_connection=redis_conn)
    barrier = threading.Barrier(2)
    taken: list[int] = []
    errors: list[BaseException] = []

    def sweep(rt):
        try:
            barrier.wait(5)
            taken.append(sweep_escalations(rt, now=now))
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(rt,)) for rt in (runtime, other)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        other.close()
    assert errors == []
    assert sum(taken) == 2 * len(items)  # level 1 and level 2 of each, by one sweep or the other
    rows = escalation_rows(runtime)
    assert len(rows) == len({row.idempotency_key for row in rows}) == 2 * len(items)
    for item in items:
        assert len(events(runtime, item.id, "escalated")) == 2
        assert load(runtime, item.id).escalation_level == 2


def test_a_sweep_that_read_the_item_before_another_claimed_it_sends_nothing(runtime, shop, team):
    """The claim itself: the conditional UPDATE of a sweep holding a stale read matches no row."""
    item = assigned_item(runtime, shop, team["agent"])
    now = item.respond_due_at + timedelta(minutes=1)
    with runtime.db.engine.connect() as conn:
        stale = conn.execute(select(VocItem.id, VocItem.shop_id, VocItem.status,
                                    VocItem.escalation_level, VocItem.reopened_count,
                                    VocItem.respond_due_at, VocItem.acknowledge_due_at)
                             .where(VocItem.id == item.id)).one()
    assert sweep_escalations(runtime, now=now) == 2
    clock = business_hours_of(shop)
    assert escalate(runtime, stale, target_for(stale, clock, 60, now), clock, now) == 0
    assert len(escalation_rows(runtime)) == 2 and len(events(runtime, item.id, "escalated")) == 2


def test_the_dispatcher_runs_the_escalation_and_digest_sweeps(runtime, shop, team, caplog):
    item = new_item(runtime, shop.id, occurred_at=utcnow() - timedelta(days=4))
    set_voc_settings(runtime, shop.id, digest={"hour": utcnow().astimezone(SEOUL).hour})
    Dispatcher(runtime).run_once()
    assert "sweep failed" not in caplog.text
    [digest] = outbound(runtime, "voc-digest:")  # helper B's owner digest, from the same loop
    assert digest.recipient == "owner@kshop.test"
    escalated = load(runtime, item.id)
    assert escalated.escalation_level == 2
    assert escalated.status is VocStatus.RECEIVED  # escalation changes no status
    assert {row.recipient for row in escalation_rows(runtime)} == {"manager@kshop.test",
                                                                   "owner@kshop.test"}


def test_a_promise_broken_long_ago_is_not_mailed_again(runtime, shop, team):
    """A backlog found by the first sweep (after an install, an outage) floods nobody."""
    item = new_item(runtime, shop.id, occurred_at=utcnow() - BACKLOG_HORIZON - timedelta(days=3))
    assert sweep_escalations(runtime) == 0
    assert load(runtime, item.id).escalation_level == 0 and escalation_rows(runtime) == []
