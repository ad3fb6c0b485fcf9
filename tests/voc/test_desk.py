"""What staff do to an item (VocDesk): the lifecycle's rules, the trail of events, and the
messages the customer receives through a real SMTP server."""

import pytest
from sqlalchemy import select

from ccms_addon.links import read_token
from ccms_addon.staff import add_staff, authenticate
from ccms_addon.store.models import (Merchant, StaffRole, VocChannel, VocEvent, VocIssue, VocItem,
                                     VocStatus)
from ccms_addon.voc.lifecycle import ALLOWED, InvalidTransition, move
from ccms_addon.voc.service import (SATISFACTION_PURPOSE, ItemNotFound, VocActionError, VocDesk,
                                    actor_for, staff_can)
from tests.voc.conftest import SENDER, SHOPPER, deliver_all, new_item, outbound, sync_order


@pytest.fixture
def desk(runtime):
    return VocDesk(runtime)


def events(runtime, item_id) -> list[VocEvent]:
    with runtime.db.session() as s:
        return s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                         .order_by(VocEvent.id)).all()


def row(runtime, item_id) -> VocItem:
    with runtime.db.session() as s:
        item = s.get(VocItem, item_id)
        s.expunge(item)
        return item


def test_the_whole_lifecycle_leaves_one_event_per_step(runtime, shop, staff, desk, smtp_server):
    item = new_item(runtime, shop.id, body="<script>alert(1)</script> 배송이 늦어요")
    lee = actor_for(staff["agent"])
    desk.acknowledge([shop.id], item.id, lee)
    desk.assign([shop.id], item.id, lee, staff["agent"].id)
    desk.start([shop.id], item.id, lee)
    desk.add_note([shop.id], item.id, lee, "Courier says Thursday")
    desk.assess([shop.id], item.id, lee, severity="high", issues=[("courier", "no call")])
    desk.reply([shop.id], item.id, lee, "목요일에 도착합니다. 죄송합니다.")
    desk.close([shop.id], item.id, lee, root_cause="Courier backlog",
               prevention_action="Second courier for Jeju")
    deliver_all(runtime)

    done = row(runtime, item.id)
    assert done.status is VocStatus.CLOSED and done.assignee_id == staff["agent"].id
    assert done.acknowledged_at <= done.responded_at <= done.closed_at
    assert (done.root_cause, done.prevention_action) == ("Courier backlog", "Second courier for Jeju")
    assert [(e.type, e.from_status, e.to_status) for e in events(runtime, item.id)] == [
        ("received", None, "received"), ("acknowledged", "received", "acknowledged"),
        ("assigned", None, None), ("started", "acknowledged", "in_progress"), ("note", None, None),
        ("assessed", None, None), ("reply", "in_progress", "responded"),
        ("closed", "responded", "closed")]
    assert all(e.actor == f"staff:{staff['agent'].id}:Lee" for e in events(runtime, item.id)[1:])
    with runtime.db.session() as s:
        assert all(i.handled for i in s.scalars(select(VocIssue).where(VocIssue.voc_item_id == item.id)))

    # the customer got: the acknowledgement, the reply, the satisfaction request — each once
    mails = smtp_server.parsed()
    assert [m["To"] for m in mails] == [SHOPPER] * 3
    ack, reply, satisfaction = mails
    assert item.reference in ack["Subject"] and "접수" in ack["Subject"]
    assert "<script>alert(1)</script>" in ack.get_content()  # quoted verbatim, as plain text
    assert ack.get_content_type() == "text/plain"
    assert reply.get_content().startswith("목요일에 도착합니다.")
    assert "Auto-Submitted" not in reply and ack["Auto-Submitted"] == "auto-generated"
    assert reply["Reply-To"] == "voc-k1@in.ccms.test"
    link = next(w for w in satisfaction.get_content().split() if "/s/" in w)
    assert read_token(runtime.settings, SATISFACTION_PURPOSE, link.rsplit("/", 1)[1]) == {
        "item": item.id, "shop": shop.id}
    assert smtp_server.messages[0][0].mail_from == SENDER


def test_a_reply_to_an_emailed_item_stays_in_the_customers_thread(runtime, shop, staff, desk,
                                                                   smtp_server):
    item = new_item(runtime, shop.id, channel=VocChannel.EMAIL, thread_ref="<abc@mail.example>")
    desk.reply([shop.id], item.id, "staff:1:Lee", "Answer")
    deliver_all(runtime)
    [mail] = smtp_server.parsed()
    assert mail["In-Reply-To"] == "<abc@mail.example>" and mail["References"] == "<abc@mail.example>"


def test_invalid_moves_are_refused_and_nothing_is_written(runtime, shop, desk):
    item = new_item(runtime, shop.id)
    with pytest.raises(VocActionError) as refused:
        desk.close([shop.id], item.id, "staff:1:Lee", root_cause="x")
    assert refused.value.status == 409 and refused.value.code == "not_answered"
    desk.acknowledge([shop.id], item.id, "staff:1:Lee", notify_customer=False)
    with pytest.raises(VocActionError) as again:
        desk.acknowledge([shop.id], item.id, "staff:1:Lee")
    assert again.value.code == "unchanged"
    assert [e.type for e in events(runtime, item.id)] == ["received", "acknowledged"]
    assert row(runtime, item.id).status is VocStatus.ACKNOWLEDGED


def test_the_transition_table_is_what_iso_10002_describes():
    S = VocStatus
    assert ALLOWED[S.CLOSED] == {S.IN_PROGRESS}
    assert S.RECEIVED not in set().union(*ALLOWED.values())
    for to in ALLOWED[S.RECEIVED]:
        assert to is not S.RECEIVED


def test_skipping_ahead_stamps_every_step(runtime, shop, desk):
    item = new_item(runtime, shop.id)
    desk.reply([shop.id], item.id, "staff:1:Lee", "Done", given_outside=True)
    done = row(runtime, item.id)
    assert done.status is VocStatus.RESPONDED
    assert done.acknowledged_at == done.responded_at
    assert events(runtime, item.id)[-1].data == {"given_outside": True}
    assert outbound(runtime) == []  # answered on the phone: nothing sent


def test_closing_a_complaint_needs_its_root_cause(runtime, shop, desk):
    item = new_item(runtime, shop.id)
    desk.reply([shop.id], item.id, "staff:1:Lee", "ok", given_outside=True)
    with pytest.raises(VocActionError) as refused:
        desk.close([shop.id], item.id, "staff:1:Lee")
    assert refused.value.field == "root_cause"


def test_reopen_restarts_the_clock_and_asks_satisfaction_again(runtime, shop, desk, smtp_server):
    item = new_item(runtime, shop.id)
    desk.reply([shop.id], item.id, "a", "answer")
    desk.close([shop.id], item.id, "a", root_cause="r")
    first_due = row(runtime, item.id).respond_due_at
    desk.reopen([shop.id], item.id, "a", "Customer says it is still broken")
    reopened = row(runtime, item.id)
    assert reopened.status is VocStatus.IN_PROGRESS and reopened.closed_at is None
    assert reopened.reopened_count == 1 and reopened.respond_due_at >= first_due
    desk.reply([shop.id], item.id, "a", "second answer")
    desk.close([shop.id], item.id, "a", root_cause="r2")
    deliver_all(runtime)
    keys = [m.idempotency_key for m in outbound(runtime)]
    assert keys.count(f"voc-satisfaction:{item.id}:0") == 1
    assert keys.count(f"voc-satisfaction:{item.id}:1") == 1
    assert events(runtime, item.id)[-3].type == "reopened"


def test_satisfaction_is_recorded_and_bounded(runtime, shop, desk):
    item = new_item(runtime, shop.id)
    with pytest.raises(VocActionError):
        desk.record_satisfaction(item.id, 6)
    desk.record_satisfaction(item.id, 4, "<b>fast</b>")
    saved = row(runtime, item.id)
    assert (saved.satisfaction, saved.satisfaction_comment) == (4, "<b>fast</b>")


def test_duplicates_close_as_such_and_point_at_the_original(runtime, shop, desk):
    first = new_item(runtime, shop.id, body="where is my parcel")
    second = new_item(runtime, shop.id, body="where is my parcel??")
    desk.mark_duplicate([shop.id], second.id, "a", first.id)
    dup = row(runtime, second.id)
    assert dup.status is VocStatus.CLOSED and dup.duplicate_of_id == first.id
    assert events(runtime, second.id)[-1].data == {"original_id": first.id, "resolution": "duplicate"}
    assert events(runtime, first.id)[-1].type == "duplicate_linked"
    with pytest.raises(VocActionError):
        desk.mark_duplicate([shop.id], first.id, "a", first.id)


def test_another_shops_item_is_not_found(runtime, shop, other_shop, desk):
    theirs = new_item(runtime, other_shop.id)
    for action in (lambda: desk.start([shop.id], theirs.id, "a"),
                   lambda: desk.add_note([shop.id], theirs.id, "a", "peek"),
                   lambda: desk.reply([shop.id], theirs.id, "a", "hi")):
        with pytest.raises(ItemNotFound):
            action()
    assert [e.type for e in events(runtime, theirs.id)] == ["received"]


def test_assignment_only_to_the_merchants_own_active_staff(runtime, shop, other_shop, staff, desk):
    item = new_item(runtime, shop.id)
    with runtime.db.session() as s:
        stranger = add_staff(s, other_shop.merchant_id, "x@other.test", "X")
        s.expunge(stranger)
    with pytest.raises(VocActionError) as refused:
        desk.assign([shop.id], item.id, "a", stranger.id)
    assert refused.value.field == "assignee_id"
    desk.assign([shop.id], item.id, "a", staff["agent"].id)
    desk.assign([shop.id], item.id, "a", None)
    assert row(runtime, item.id).assignee_id is None


def test_no_address_no_message(runtime, shop, desk):
    item = new_item(runtime, shop.id, channel=VocChannel.PHONE, contact_email=None,
                    contact_phone="010-1111-2222")
    with pytest.raises(VocActionError) as refused:
        desk.reply([shop.id], item.id, "a", "hello")
    assert refused.value.code == "no_contact"
    assert desk.auto_acknowledge(item.id) is False
    assert row(runtime, item.id).status is VocStatus.RECEIVED


def test_auto_acknowledge_once(runtime, shop, desk, smtp_server):
    item = new_item(runtime, shop.id)
    assert desk.auto_acknowledge(item.id) is True
    assert desk.auto_acknowledge(item.id) is False
    deliver_all(runtime)
    assert len(smtp_server.messages) == 1
    assert events(runtime, item.id)[-1].actor == "system"


def test_bulk_reports_each_item(runtime, shop, other_shop, desk):
    mine = [new_item(runtime, shop.id) for _ in range(2)]
    theirs = new_item(runtime, other_shop.id)
    desk.start([shop.id], mine[1].id, "a")
    results = desk.bulk([shop.id], [mine[0].id, mine[1].id, theirs.id, mine[0].id], "start", "a")
    assert [(r.item_id, r.ok, r.code) for r in results] == [
        (mine[0].id, True, None), (mine[1].id, False, "unchanged"), (theirs.id, False, "not_found")]
    with pytest.raises(VocActionError):
        desk.bulk([shop.id], [mine[0].id], "delete", "a")


def test_move_directly_refuses_what_the_table_refuses(runtime, shop):
    item = new_item(runtime, shop.id)
    with runtime.db.session() as s:
        loaded = s.get(VocItem, item.id)
        with pytest.raises(InvalidTransition):
            move(s, loaded, VocStatus.RECEIVED, "a")


def test_staff_sign_in_and_roles(runtime, shop, staff):
    with runtime.db.session() as s:
        assert authenticate(s, "OWNER@kshop.test ", "correct horse battery").id == staff["owner"].id
        assert authenticate(s, "owner@kshop.test", "wrong password!") is None
        assert authenticate(s, "nobody@kshop.test", "correct horse battery") is None
        assert authenticate(s, "lee@kshop.test", "") is None  # no password set
    assert staff_can(staff["owner"], "admin") and not staff_can(staff["agent"], "report")
    viewer = add_staff_row(runtime, shop, StaffRole.VIEWER)
    assert staff_can(viewer, "report") and not staff_can(viewer, "work")


def test_an_order_linked_item_lists_under_its_order_number(runtime, shop):
    from ccms_addon.voc.inbox import InboxFilter, list_items
    order_id = sync_order(runtime, shop.id, "2002")
    item = new_item(runtime, shop.id, order_id=order_id)
    with runtime.db.session() as s:
        rows, _ = list_items(s, [shop.id], InboxFilter(q="#2002"))
    assert [(r.item.id, r.order_number) for r in rows] == [(item.id, "2002")]


def add_staff_row(runtime, shop, role):
    with runtime.db.session() as s:
        person = add_staff(s, shop.merchant_id, f"{role.value}@kshop.test", role.value, role)
        s.expunge(person)
        return person
