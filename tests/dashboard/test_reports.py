"""The reports page: the monthly report is made by a real worker and then served; the CSV exports
are the merchant's items and events only."""

from __future__ import annotations

from rq import SimpleWorker

from ccms_addon.queue import NOTIFICATIONS_QUEUE, queue
from ccms_addon.store.models import VocKind, utcnow
from tests.dashboard.conftest import new_item


def _month() -> str:
    from zoneinfo import ZoneInfo
    return utcnow().astimezone(ZoneInfo("Asia/Seoul")).strftime("%Y-%m")


def test_the_monthly_report_is_prepared_by_a_job_then_served(runtime, signed_in, team):
    new_item(runtime, team.shop_ids[0], body="late <script>x</script>")
    manager = signed_in("manager")
    path = f"/dashboard/reports/monthly?month={_month()}&format=html"
    waiting = manager.get(path)
    assert waiting.status_code == 202 and waiting.headers["Refresh"] == "5"
    assert "being prepared" in waiting.get_data(as_text=True)
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True)
    served = manager.get(path)
    assert served.status_code == 200 and served.mimetype == "text/html"
    policy = served.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'self'" in policy
    assert "<script>x" not in served.get_data(as_text=True)
    pdf = manager.get(f"/dashboard/reports/monthly?month={_month()}&format=pdf")
    assert pdf.status_code == 202
    SimpleWorker([queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)],
                 connection=runtime.redis).work(burst=True)
    pdf = manager.get(f"/dashboard/reports/monthly?month={_month()}&format=pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert "attachment" in pdf.headers["Content-Disposition"]


def test_bad_months_and_formats_are_400(signed_in, team):
    manager = signed_in("manager")
    for query in ("month=2026-13", "month=26-01", "month=1999-01", "month=2026-01&format=docx", ""):
        answer = manager.get(f"/dashboard/reports/monthly?{query}")
        assert answer.status_code == 400, query
        assert "field-error" in answer.get_data(as_text=True)
    assert manager.get("/dashboard/reports/events.csv?month=2026-00").status_code == 400
    assert manager.get("/dashboard/reports/items.csv?status=nope").status_code == 400


def test_the_exports_follow_the_inbox_filter(runtime, signed_in, team, other):
    new_item(runtime, team.shop_ids[0], body="=HYPERLINK(\"http://evil\")")
    new_item(runtime, team.shop_ids[1], body="praise", kind=VocKind.PRAISE)
    new_item(runtime, other.shop_ids[0], body="not ours")
    manager = signed_in("manager")
    everything = manager.get("/dashboard/reports/items.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in everything and "praise" in everything and "not ours" not in everything
    praise = manager.get("/dashboard/reports/items.csv?kind=praise").get_data(as_text=True)
    assert "praise" in praise and "HYPERLINK" not in praise
    events = manager.get(f"/dashboard/reports/events.csv?month={_month()}")
    rows = events.get_data(as_text=True).strip().splitlines()
    assert events.mimetype == "text/csv" and len(rows) == 3  # the header and our two items
    assert "b-shop" not in events.get_data(as_text=True)
    assert signed_in("agent").get("/dashboard/reports/items.csv").status_code == 403
