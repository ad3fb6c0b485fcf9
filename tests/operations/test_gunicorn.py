"""Under gunicorn: the delivery counters of every worker process add up (prometheus_client's
multiprocess mode), and the web process writes JSON lines."""

from __future__ import annotations

import json
import socket
import sys
import time

import pytest
import requests

from tests.operations.conftest import SHOPIFY_SHOP, headers_for, order_body
from tests.processes import Processes, process_env

DELIVERIES = "ccms_webhook_deliveries_total"
LOGGER_CLASS = "ccms_addon.observability.gunicorn_logging.Logger"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def processes(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    procs = Processes(logdir)
    yield procs
    procs.stop_all()


def figure(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.mark.slow
def test_counters_add_up_across_worker_processes(runtime, make_shop, settings, redis_url,
                                                 processes, tmp_path):
    make_shop("shopify", SHOPIFY_SHOP)
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = process_env(settings, redis_url)
    env.update(PROMETHEUS_MULTIPROC_DIR=str(multiproc), CCMS_LOG_FORMAT="json")
    port = free_port()
    # every worker is replaced after 2 requests: the figures come from many processes, most gone
    # (--preload: a replacement is a fork of the loaded app, quick even on a busy machine)
    web = processes.start("web", [sys.executable, "-m", "gunicorn", "--workers", "2", "--preload",
                                  "--max-requests", "2", "--bind", f"127.0.0.1:{port}",
                                  "--logger-class", LOGGER_CLASS, "ccms_addon.wsgi:app"], env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert web.poll() is None, processes.log_tail()
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, processes.log_tail()
        time.sleep(0.1)

    def post(body, headers):
        return requests.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=10)

    bodies = [order_body() for _ in range(6)]
    sent = [(body, headers_for(runtime, "shopify", body)) for body in bodies]
    for body, headers in sent:
        assert post(body, headers).json()["status"] == "accepted"
    assert post(*sent[0]).json()["status"] == "duplicate"
    forged = headers_for(runtime, "shopify", bodies[1], secret="not-the-secret")
    assert post(bodies[1], forged).status_code == 401

    text = requests.get(f"{base}/metrics", timeout=10).text
    labels = dict(platform="shopify", reason="")
    assert figure(text, DELIVERIES, outcome="accepted", **labels) == 6
    assert figure(text, DELIVERIES, outcome="duplicate", **labels) == 1
    assert figure(text, DELIVERIES, platform="shopify", outcome="rejected",
                  reason="invalid_signature") == 1
    assert figure(text, "ccms_inbox_backlog", platform="shopify", status="received") == 6
    assert len(list(multiproc.glob("counter_*.db"))) >= 3  # several processes counted

    processes.stop(web)
    lines = (processes.logdir / "web.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines]  # every line, the master's included
    assert any(entry["message"].startswith("Booting worker") for entry in logged), lines
    for entry in logged:
        assert {"timestamp", "level", "logger", "message"} <= set(entry)
