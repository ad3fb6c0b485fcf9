"""``GET /metrics``: real deliveries, real RQ jobs on a real Redis, real rows in the store."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from rq import Worker
from sqlalchemy import bindparam, text

from ccms_addon.app import create_app
from ccms_addon.queue import DELIVERIES_QUEUE, NOTIFICATIONS_QUEUE, queue
from ccms_addon.runtime import build_runtime
from ccms_addon.store.models import UtcDateTime, utcnow
from tests.jobs.helpers import drain
from tests.operations.conftest import headers_for, order_body, scrape

DELIVERIES = "ccms_webhook_deliveries_total"


def test_deliveries_are_counted_per_platform_and_outcome(client, runtime, shops):
    before = scrape(client)
    body = order_body()
    headers = headers_for(runtime, "shopify", body)
    assert client.post("/webhooks/shopify", data=body, headers=headers).json["status"] == "accepted"
    assert client.post("/webhooks/shopify", data=body, headers=headers).json["status"] == "duplicate"
    woo = order_body()
    for _ in range(2):  # WooCommerce's retry: a new Delivery-ID, the same delivery
        client.post("/webhooks/woocommerce", data=woo, headers=headers_for(runtime, "woocommerce", woo))
    forged = headers_for(runtime, "shopify", body, secret="not-the-secret")
    assert client.post("/webhooks/shopify", data=body, headers=forged).status_code == 401
    assert client.post("/webhooks/shopify", data=b"not json",
                       headers=headers_for(runtime, "shopify", b"not json")).status_code == 400

    after = scrape(client)

    def delta(platform, outcome, reason=""):
        labels = dict(platform=platform, outcome=outcome, reason=reason)
        return after.value(DELIVERIES, **labels) - before.value(DELIVERIES, **labels)

    assert delta("shopify", "accepted") == 1
    assert delta("shopify", "duplicate") == 1
    assert delta("shopify", "rejected", "invalid_signature") == 1
    assert delta("shopify", "rejected", "invalid_payload") == 1
    assert delta("woocommerce", "accepted") == 1
    assert delta("woocommerce", "duplicate") == 1
    assert delta("cafe24", "accepted") == 0


def test_unknown_platform_names_never_become_labels(client, runtime, shops):
    client.post("/webhooks/made-up-platform", data=b"{}")
    assert not any(("platform", "made-up-platform") in labels for _, labels in scrape(client))


def test_inbox_backlog_follows_real_deliveries_through_the_pipeline(client, runtime, shops):
    empty = scrape(client)
    assert empty.value("ccms_inbox_backlog", platform="shopify", status="received") == 0
    assert empty.value("ccms_inbox_backlog_oldest_seconds", platform="shopify") == 0
    for _ in range(3):
        body = order_body()
        assert client.post("/webhooks/shopify", data=body,
                           headers=headers_for(runtime, "shopify", body)).status_code == 200

    time.sleep(0.3)
    waiting = scrape(client)
    assert waiting.value("ccms_inbox_backlog", platform="shopify", status="received") == 3
    assert waiting.value("ccms_inbox_backlog", platform="woocommerce", status="received") == 0
    assert 0.3 <= waiting.value("ccms_inbox_backlog_oldest_seconds", platform="shopify") < 60

    drain(runtime)  # the dispatcher hands the rows to RQ; a real worker processes them
    done = scrape(client)
    assert done.value("ccms_inbox_backlog", platform="shopify", status="received") == 0
    assert done.value("ccms_inbox_backlog", platform="shopify", status="retrying") == 0
    # these small payloads are not orders Shopify would send: kept as failed, for a human
    assert done.value("ccms_inbox_failed", platform="shopify") == 3
    assert done.value("ccms_metrics_source_up", source="store") == 1


def test_queue_depth_and_job_failures_are_read_from_redis(client, runtime):
    deliveries = queue(DELIVERIES_QUEUE, runtime.redis, runtime.settings)
    notifications = queue(NOTIFICATIONS_QUEUE, runtime.redis, runtime.settings)
    for n in range(3):
        deliveries.enqueue("builtins.abs", -n)
    notifications.enqueue_in(timedelta(hours=1), "builtins.abs", -1)

    queued = scrape(client)
    assert queued.value("ccms_queue_jobs", queue=DELIVERIES_QUEUE, state="queued") == 3
    assert queued.value("ccms_queue_jobs", queue=NOTIFICATIONS_QUEUE, state="queued") == 0
    assert queued.value("ccms_queue_jobs", queue=NOTIFICATIONS_QUEUE, state="scheduled") == 1
    assert queued.value("ccms_queue_jobs", queue=DELIVERIES_QUEUE, state="failed") == 0

    deliveries.enqueue("builtins.int", "not a number")  # raises ValueError in the work-horse
    Worker([deliveries], connection=runtime.redis).work(burst=True)
    worked = scrape(client)
    assert worked.value("ccms_queue_jobs", queue=DELIVERIES_QUEUE, state="queued") == 0
    assert worked.value("ccms_queue_jobs", queue=DELIVERIES_QUEUE, state="failed") == 1
    assert worked.value("ccms_metrics_source_up", source="queue") == 1


def _voc_item(runtime, shop_id: int, reference: str, status: str, *, respond_in: timedelta,
              acknowledge_in: timedelta) -> None:
    now = utcnow()
    statement = text(
        "INSERT INTO voc_items (shop_id, reference, kind, channel, status, body, "
        "acknowledge_due_at, respond_due_at, created_at, updated_at) VALUES "
        "(:shop, :ref, 'complaint', 'widget', :status, 'the parcel is late', :ack, :respond, "
        ":now, :now)").bindparams(bindparam("ack", type_=UtcDateTime()),
                                  bindparam("respond", type_=UtcDateTime()),
                                  bindparam("now", type_=UtcDateTime()))
    with runtime.db.engine.begin() as conn:
        conn.execute(statement, dict(shop=shop_id, ref=reference, status=status,
                                     ack=now + acknowledge_in, respond=now + respond_in, now=now))


def test_sla_breaches_count_open_items_past_their_deadlines(client, runtime, shops):
    shop_id = shops["shopify"].id
    assert scrape(client).value("ccms_voc_sla_breaches", sla="respond") == 0
    hour = timedelta(hours=1)
    _voc_item(runtime, shop_id, "VOC-1", "received", respond_in=-hour, acknowledge_in=-2 * hour)
    _voc_item(runtime, shop_id, "VOC-2", "in_progress", respond_in=-hour, acknowledge_in=-2 * hour)
    _voc_item(runtime, shop_id, "VOC-3", "received", respond_in=hour, acknowledge_in=-hour)
    _voc_item(runtime, shop_id, "VOC-4", "received", respond_in=hour, acknowledge_in=hour)
    _voc_item(runtime, shop_id, "VOC-5", "responded", respond_in=-hour, acknowledge_in=-hour)
    _voc_item(runtime, shop_id, "VOC-6", "closed", respond_in=-hour, acknowledge_in=-hour)

    figures = scrape(client)
    assert figures.value("ccms_voc_sla_breaches", sla="respond") == 2       # VOC-1, VOC-2
    assert figures.value("ccms_voc_sla_breaches", sla="acknowledge") == 2   # VOC-1, VOC-3


def test_every_figure_is_present_on_an_empty_deployment(client, runtime):
    names = scrape(client).names()
    assert {"ccms_inbox_backlog", "ccms_inbox_backlog_oldest_seconds", "ccms_inbox_failed",
            "ccms_queue_jobs", "ccms_queue_workers", "ccms_outbox_messages",
            "ccms_followups_sent", "ccms_followups_overdue", "ccms_voc_sla_breaches",
            "ccms_metrics_source_up"} <= names
    figures = scrape(client)
    assert figures.value("ccms_followups_sent", purpose="marketing") == 0
    assert figures.value("ccms_outbox_messages", status="failed") == 0


def test_an_unreachable_store_is_reported_not_raised(settings, redis_conn):
    from dataclasses import replace
    broken = replace(settings, database_url="postgresql://nobody@127.0.0.1:1/none")
    runtime = build_runtime(broken, redis_connection=redis_conn)
    try:
        client = create_app(runtime=runtime).test_client()
        figures = scrape(client)
    finally:
        runtime.close()
    assert figures.value("ccms_metrics_source_up", source="store") == 0
    assert figures.value("ccms_metrics_source_up", source="queue") == 1
    assert "ccms_inbox_backlog" not in figures.names()
    assert "ccms_queue_jobs" in figures.names()


# ------------------------------------------------------------------------------- who may scrape

PUBLIC = {"REMOTE_ADDR": "203.0.113.7"}
PRIVATE = {"REMOTE_ADDR": "10.1.2.3"}


def test_without_a_token_only_direct_private_requests_are_served(client):
    assert client.get("/metrics").status_code == 200                      # loopback
    assert client.get("/metrics", environ_base=PRIVATE).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "fd00::5"}).status_code == 200
    refused = client.get("/metrics", environ_base=PUBLIC)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    # through a load balancer: its private address is the peer, the client may be anyone
    proxied = client.get("/metrics", environ_base=PRIVATE,
                         headers={"X-Forwarded-For": "198.51.100.4"})
    assert proxied.status_code == 403


def test_a_token_is_required_from_everywhere_once_set(app, client):
    app.config["CCMS_METRICS_TOKEN"] = "scrape-me-7c1d"
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-7c1e"})
    assert wrong.status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-me-7c1d"}).status_code == 401
    good = {"Authorization": "Bearer scrape-me-7c1d"}
    assert client.get("/metrics", headers=good, environ_base=PUBLIC).status_code == 200
    assert client.get("/metrics", headers={**good, "X-Forwarded-For": "198.51.100.4"}
                      ).status_code == 200


def test_the_token_comes_from_the_environment(runtime, monkeypatch):
    monkeypatch.setenv("CCMS_METRICS_TOKEN", "from-the-env")
    client = create_app(runtime=runtime).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer from-the-env"}).status_code == 200


def test_openmetrics_is_served_to_a_scraper_that_asks(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_operations_endpoints_answer_get_only(client, path):
    assert client.post(path).status_code == 405
