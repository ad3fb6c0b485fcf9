"""The widget API's rate limits where the lookups defer their verdict (``ratelimit.DEFERRED``): the
script is sent before the query and read after it, and every answer still obeys it."""

from __future__ import annotations

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from ccms_addon.app import create_app
from ccms_addon.runtime import build_runtime
from ccms_addon.widgets import ratelimit
from tests.loopback import free_port
from tests.widgets import test_api
from tests.widgets.test_api import ORIGIN, Widget, error

#: test_api's fixtures: the shop of its storefront and its orders
shop, orders = test_api.shop, test_api.orders

MISS = {"order_number": "9999", "contact": "buyer@example.com"}
MATCH = {"order_number": "#1001", "contact": "buyer@example.com"}


def limited(runtime, shop, rules) -> tuple[Widget, object]:
    app = create_app(runtime=runtime, widget_limits={"widgets.lookup_order": rules})
    return Widget(app.test_client(), shop, app.config["SECRET_KEY"]), app


def queries(runtime, monkeypatch) -> list[str]:
    """The names of the statements the lookups run from now on."""
    ran: list[str] = []
    real_run = runtime.db.run

    def run(name, build, values):
        ran.append(name)
        return real_run(name, build, values)
    monkeypatch.setattr(runtime.db, "run", run)
    return ran


def test_lookups_are_deferred_and_writes_are_not():
    assert {"widgets.lookup_order", "widgets.lookup_requests"} == ratelimit.DEFERRED
    assert not {"widgets.submit_voc", "widgets.submit_claim"} & ratelimit.DEFERRED


def test_a_deferred_refusal_wins_over_every_other_answer(runtime, shop, redis_conn):
    """Once the limit is reached the answer is the 429 — readable by the storefront, with
    Retry-After — whatever the request would have got otherwise (404, 422, 400, unknown key)."""
    widget, _ = limited(runtime, shop, [("2/minute", ratelimit.PER_IP)])
    ip = "192.0.2.50"
    assert [widget.post("orders/lookup", MISS, ip=ip).status_code for _ in range(2)] == [404, 404]
    refused = [widget.post("orders/lookup", MISS, ip=ip),
               widget.post("orders/lookup", {"order_number": ""}, ip=ip),
               widget.post("orders/lookup", MISS, ip=ip, widget_header=False),
               widget.client.post("/widget/v1/no-such-key/orders/lookup", json=MISS,
                                  headers={"Origin": ORIGIN, "X-CCMS-Widget": "1"},
                                  environ_base={"REMOTE_ADDR": ip})]
    for response in refused:
        assert response.status_code == 429
        assert error(response)["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert refused[0].headers["Access-Control-Allow-Origin"] == ORIGIN
    assert refused[0].headers["X-Content-Type-Options"] == "nosniff"
    assert widget.post("orders/lookup", MISS, ip="192.0.2.51").status_code == 404  # another IP


def test_a_refused_match_reads_no_lines(runtime, shop, orders, redis_conn,
                                        monkeypatch):
    widget, _ = limited(runtime, shop, [("1/minute", ratelimit.PER_IP)])
    ip = "192.0.2.52"
    assert widget.post("orders/lookup", MATCH, ip=ip).status_code == 200
    ran = queries(runtime, monkeypatch)
    response = widget.post("orders/lookup", MATCH, ip=ip)
    assert response.status_code == 429 and b"Green tea" not in response.data
    assert ran == ["widget.lookup_candidates"]  # the query overlapped the verdict; no more


def test_once_refused_a_client_costs_no_query(runtime, shop, redis_conn,
                                              monkeypatch):
    """The process remembers a refused key until its window frees up: its next requests are
    checked before anything else, as a write's are (no parsing, no query)."""
    widget, app = limited(runtime, shop, [("2/minute", ratelimit.PER_IP),
                                          ("100/minute", ratelimit.PER_SHOP)])
    ip = "192.0.2.53"
    for _ in range(3):
        widget.post("orders/lookup", MISS, ip=ip)
    ran = queries(runtime, monkeypatch)
    assert [widget.post("orders/lookup", MISS, ip=ip).status_code for _ in range(5)] == [429] * 5
    assert ran == []
    # only the IP's key is remembered (it is what blocks): the shop's other shoppers still overlap
    assert widget.post("orders/lookup", MISS, ip="192.0.2.54").status_code == 404
    assert ran == ["widget.lookup_candidates"]
    limiter = app.extensions[ratelimit.EXTENSION]
    assert list(limiter._refused) == [f"{limiter.prefix}widgets.lookup_order:ip:{ip}"]


def test_the_limiter_recovers_from_a_script_flush_and_a_closed_connection(
        runtime, shop, redis_conn):
    widget, app = limited(runtime, shop, [("100/minute", ratelimit.PER_IP)])
    limiter = app.extensions[ratelimit.EXTENSION]
    ip = "192.0.2.55"
    key = f"{limiter.prefix}widgets.lookup_order:ip:{ip}"
    assert widget.post("orders/lookup", MISS, ip=ip).status_code == 404
    redis_conn.script_flush()  # a restarted server forgets its scripts
    assert widget.post("orders/lookup", MISS, ip=ip).status_code == 404
    [link] = limiter._idle
    link.conn.send_command("CLIENT", "ID")
    redis_conn.client_kill_filter(_id=link.conn.read_response())  # an idle timeout, a restart
    assert widget.post("orders/lookup", MISS, ip=ip).status_code == 404
    assert widget.post("requests/lookup", {"reference": "X-1", "contact": "a@b.co"},
                       ip=ip).status_code == 404
    assert redis_conn.llen(key) == 3  # every lookup counted in Redis, none in memory
    assert limiter._redis_down_until == 0.0


@pytest.mark.parametrize("endpoint, path, body", [
    ("widgets.lookup_order", "orders/lookup", MISS),
    ("widgets.lookup_requests", "requests/lookup", {"reference": "X-1", "contact": "a@b.co"}),
])
def test_deferred_lookups_count_in_memory_when_redis_is_down(settings, runtime, shop,
                                                             endpoint, path, body):
    dead = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2,
                           retry=Retry(NoBackoff(), 0))
    rt = build_runtime(settings, redis_connection=dead)
    try:
        app = create_app(runtime=rt, widget_limits={endpoint: [("2/minute", ratelimit.PER_IP)]})
        widget = Widget(app.test_client(), shop, app.config["SECRET_KEY"])
        statuses = [widget.post(path, body, ip="192.0.2.56").status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
    finally:
        rt.close()
