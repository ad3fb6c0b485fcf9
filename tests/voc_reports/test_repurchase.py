"""The repurchase rate of customers whose complaint was resolved against those who never
complained: the cohorts, the window and the exclusions, by hand."""

from __future__ import annotations

from datetime import timedelta

from ccms_addon.store.models import VocKind, utcnow
from ccms_addon.voc import metrics
from tests.voc_reports.conftest import ACTOR, SEOUL, order_record


def test_repurchase_rates_by_hand(runtime, shop, other_shop, voc, desk, orders):
    now = utcnow()
    day = timedelta(days=1)
    stored = orders(
        order_record("1", "C1", now - 10 * day), order_record("1b", "C1", now + 30 * day),
        order_record("2", "C2", now - 10 * day),
        order_record("3", "C3", now - 10 * day), order_record("3b", "C3", now + 185 * day),
        order_record("4", "C4", now - 10 * day), order_record("4b", "C4", now + 5 * day),
        order_record("5", "C5", now - 10 * day), order_record("5b", "C5", now + 5 * day),
        order_record("6", "C6", now - 60 * day), order_record("6b", "C6", now - 30 * day),
        order_record("7", "C7", now - 10 * day),
        order_record("8", "C8", now - 80 * day), order_record("8b", "C8", now - 40 * day),
        order_record("9", "C9", now - 20 * day),
        order_record("9b", "C9", now - 5 * day, cancelled=True),
        order_record("10", "C10", now - 30 * day), order_record("10b", "C10", now - 1 * day),
        order_record("11", None, now - 30 * day), order_record("11b", None, now - 20 * day))
    s = [shop.id]

    def complaint(number, **kwargs):
        order_id, customer_id = stored[number]
        return voc(VocKind.COMPLAINT, f"주문 {number} 불만", order_id=order_id,
                   customer_id=customer_id, category=f"c{number}", **kwargs)

    for number in ("1", "2", "3"):  # resolved: answered, then closed
        item = complaint(number)
        desk.reply(s, item.id, ACTOR, "해결했습니다", given_outside=True)
        desk.close(s, item.id, ACTOR, root_cause="원인")
    spam = complaint("4")  # closed without an answer: not a resolution
    desk.close(s, spam.id, ACTOR, resolution="spam")
    complaint("5")  # still open: neither group
    order_id, customer_id = stored["10"]  # an inquiry is not a complaint
    voc(VocKind.INQUIRY, "배송 문의", order_id=order_id, customer_id=customer_id)

    later = now + 200 * day  # every close above now lies in a mature cohort
    with runtime.db.session() as session:
        r = metrics.repurchase(session, s, now=later, zone="Asia/Seoul")
        b = metrics.board(session, s, now=later, zone="Asia/Seoul")
        other = metrics.repurchase(session, [other_shop.id], now=later, zone="Asia/Seoul")
        too_early = metrics.repurchase(session, s, now=now, zone="Asia/Seoul")
    # C1 came back within 180 days; C2 never; C3 after 185 days
    assert (r.resolved_complainers.customers, r.resolved_complainers.repurchased) == (3, 1)
    # C6 (first order 60 days ago, again 30 days later), C7 (never again), C9 (again, but
    # cancelled), C10 (an inquiry only; again 29 days later); C8's first order is before the
    # cohort (its second is inside); the guest is not followed
    assert (r.never_complained.customers, r.never_complained.repurchased) == (4, 2)
    assert r.resolved_complainers.rate == 1 / 3 and r.never_complained.rate == 0.5
    assert b.repurchase == r
    later_day = later.astimezone(SEOUL).date()
    assert r.cohort_to.astimezone(SEOUL).date() == later_day - timedelta(days=180)
    assert r.cohort_to.astimezone(SEOUL).time().hour == 0
    assert (r.cohort_to - r.cohort_from).days == metrics.REPURCHASE_COHORT_DAYS == 90
    assert (other.resolved_complainers.customers, other.never_complained.customers) == (0, 0)
    # today the closes are too recent to be judged
    assert too_early.resolved_complainers.customers == 0
