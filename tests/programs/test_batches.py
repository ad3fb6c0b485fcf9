"""Follow-ups due together travel in one job and are sent over one SMTP connection."""

from datetime import timedelta

from rq import Queue
from sqlalchemy import select

from ccms_addon.programs.followups import send_follow_ups
from ccms_addon.programs.scheduler import SEND_BATCH, _batches, schedule_due
from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.runtime import set_current
from ccms_addon.store.models import FollowUp, FollowUpStatus, ProgramKind, utcnow
from tests.programs.conftest import CHECK_IN_TERMS, DELIVERED, order_record, run_worker

#: delivered four days ago: the day-3 check-in fell due yesterday (not stale yet)
EARLIER = DELIVERED - timedelta(days=3)


def _rows(runtime):
    with runtime.db.session() as s:
        return s.scalars(select(FollowUp).where(FollowUp.step == "arrival").order_by(FollowUp.id)).all()


def test_thirty_due_check_ins_go_in_two_jobs_over_one_connection(runtime, program, sync_order,
                                                                   smtp_server):
    program(ProgramKind.FOLLOW_UP, {"steps": CHECK_IN_TERMS["steps"][:1]})
    sync_order(*[order_record(str(1000 + n), delivered=EARLIER) for n in range(30)])
    due = max(r.due_at for r in _rows(runtime))
    assert schedule_due(runtime, now=due) == 30
    q: Queue = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    jobs = [q.fetch_job(job_id) for job_id in q.get_job_ids()]
    assert sorted(len(job.args[0]) for job in jobs) == [30 - SEND_BATCH, SEND_BATCH]
    assert {r.job_id for r in _rows(runtime)} == {job.id for job in jobs}

    set_current(runtime)
    try:
        for job in jobs:  # the job at the check-in's time, in this process
            outcomes = send_follow_ups(job.args[0], now=due)
            assert set(outcomes.values()) == {"sent"}
    finally:
        set_current(None)
    assert len(smtp_server.messages) == 30
    assert len({session.peer for _, session in smtp_server.messages}) == 1
    assert {r.status for r in _rows(runtime)} == {FollowUpStatus.DISPATCHED}


def test_a_lost_batch_is_handed_over_again_and_a_waiting_one_is_not(runtime, program, sync_order,
                                                                    smtp_server):
    # the worker sends at the real time of day: no quiet hours, or Seoul's night postpones it
    program(ProgramKind.FOLLOW_UP, {"steps": CHECK_IN_TERMS["steps"][:1],
                                    "quiet_hours": {"start": "00:00", "end": "00:00"}})
    sync_order(order_record("1001", delivered=EARLIER), order_record("1002", delivered=EARLIER))
    due = max(r.due_at for r in _rows(runtime))
    assert schedule_due(runtime, now=due) == 2
    first_job = _rows(runtime)[0].job_id
    later = due + timedelta(minutes=6)  # past the lease: the job still waits in the queue
    assert schedule_due(runtime, now=later) == 0
    assert {r.job_id for r in _rows(runtime)} == {first_job}
    runtime.redis.flushdb()  # Redis lost it
    assert schedule_due(runtime, now=later + timedelta(minutes=6)) == 2
    assert {r.job_id for r in _rows(runtime)} != {first_job}
    run_worker(runtime)
    assert len(smtp_server.messages) == 2


class Row:
    def __init__(self, id, due_at, shop_id=1):
        self.id, self.due_at, self.shop_id = id, due_at, shop_id


def test_batches_never_run_before_their_due_minute():
    now = utcnow().replace(second=10, microsecond=0)
    rows = [Row(1, now - timedelta(minutes=3)), Row(2, now + timedelta(seconds=20)),
            Row(3, now + timedelta(seconds=40)), Row(4, now + timedelta(minutes=1, seconds=50))]
    batches = _batches(rows, now)
    assert [(run_at, [r.id for r in group]) for run_at, group in batches] == [
        (now, [1]), (now.replace(second=0) + timedelta(minutes=1), [2, 3]),
        (now.replace(second=0) + timedelta(minutes=2), [4])]
    assert all(run_at >= r.due_at for run_at, group in batches for r in group)


def test_one_batch_carries_one_shops_follow_ups():
    now = utcnow().replace(second=10, microsecond=0)
    rows = [Row(1, now + timedelta(seconds=20), shop_id=2), Row(2, now + timedelta(seconds=30)),
            Row(3, now + timedelta(seconds=40), shop_id=2)]
    minute = now.replace(second=0) + timedelta(minutes=1)
    assert [(run_at, [r.id for r in group]) for run_at, group in _batches(rows, now)] == [
        (minute, [2]), (minute, [1, 3])]
