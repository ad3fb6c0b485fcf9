"""WooCommerce: the ``/wc-auth/v1/authorize`` key flow end to end against the loopback site — the
site POSTs the keys to the callback, the browser returns, webhooks are created through the REST API
with the shop's own secret — and the refusals: a forged or foreign ``user_id``, keys the site does
not accept, read-only keys, a declined approval."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from rq import Queue

from ccms_addon import install
from ccms_addon.queue import DELIVERIES_QUEUE
from ccms_addon.store.models import Shop, ShopStatus
from tests.install.conftest import PUBLIC_URL, Browser, stored_shop, with_platform
from tests.platform_servers.woocommerce import FakeWooCommerce, make_order, serve

WEBHOOK_URL = f"{PUBLIC_URL}/webhooks/woocommerce"
CALLBACK = "/install/woocommerce/callback"


@pytest.fixture
def site(runtime, web) -> Iterator[FakeWooCommerce]:
    fake = FakeWooCommerce()
    platform_side = web.test_client()  # the site's own requests carry no browser cookie

    def deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
        return platform_side.post(parts.path, data=body, headers=headers,
                                  base_url=PUBLIC_URL).status_code

    fake.callback_transport = deliver
    with serve(fake) as base_url:
        fake.url = base_url  # type: ignore[attr-defined]
        with_platform(runtime, "woocommerce", {"allow_http": "1"})  # the loopback site is http
        yield fake


def _start(browser: Browser, site: FakeWooCommerce):
    start = browser.get(f"/install/woocommerce?site={site.url}")
    assert start.status_code == 302, start.get_data(as_text=True)
    return start


def _grant_page(browser: Browser, start) -> str:
    page = browser.platform(start.headers["Location"])
    assert page.status_code == 200, page.text
    return page.text


def _link(page: str, name: str) -> str:
    return unescape(re.search(rf'id="{name}" href="([^"]+)"', page).group(1))


def _install(browser: Browser, site: FakeWooCommerce):
    page = _grant_page(browser, _start(browser, site))
    granted = browser.platform(site.url + _link(page, "approve"))  # the site posts the keys here
    assert granted.status_code == 302, granted.text
    return browser.get(granted.headers["Location"])


def _state(start) -> str:
    return parse_qs(urlsplit(start.headers["Location"]).query)["user_id"][0]


def test_install_end_to_end(runtime, web, browser, site, redis_conn):
    start = _start(browser, site)
    authorize = urlsplit(start.headers["Location"])
    assert authorize.path == "/wc-auth/v1/authorize"
    query = parse_qs(authorize.query)
    assert query["scope"] == ["read_write"] and query["app_name"] == ["CCMS Customer Care"]
    assert query["callback_url"] == query["return_url"] == [f"{PUBLIC_URL}{CALLBACK}"]

    page = _grant_page(browser, start)
    granted = browser.platform(site.url + _link(page, "approve"))
    (post,) = site.key_posts
    assert post["status"] == 200 and post["json"]["user_id"] == query["user_id"][0]
    shop = stored_shop(runtime, "woocommerce", site.url)
    assert shop.status is ShopStatus.ACTIVE
    credentials = runtime.box.decrypt_json(shop.credentials_encrypted)
    assert credentials["consumer_key"] == post["json"]["consumer_key"]
    assert credentials["consumer_secret"] == post["json"]["consumer_secret"]
    secret = runtime.box.decrypt(shop.webhook_secret_encrypted)
    scheduled = Queue(DELIVERIES_QUEUE, connection=redis_conn).scheduled_job_registry
    assert install.finish_job_id(shop.id) in scheduled.get_job_ids()  # should the browser not return

    landing = browser.get(granted.headers["Location"])  # the browser's return: the set-up
    assert landing.status_code == 302 and landing.headers["Location"].startswith("/admin/?installed=")
    webhooks = list(site.webhooks.values())
    assert sorted(w["topic"] for w in webhooks) == sorted(
        ["order.created", "order.updated", "order.restored", "customer.created",
         "customer.updated", "customer.deleted"])
    assert {(w["delivery_url"], w["secret"], w["status"]) for w in webhooks} == {
        (WEBHOOK_URL, secret, "active")}
    text = browser.get(landing.headers["Location"]).get_data(as_text=True)
    assert f"{site.url} is connected" in text and "WordPress" in text

    # a delivery signed with the shop's webhook secret is accepted by the ingress
    adapter = runtime.platforms["woocommerce"]
    body = json.dumps(make_order(4242)).encode()
    headers = adapter.delivery_headers(body, shop_domain=site.url, topic="order.updated",
                                       secret=secret)
    answer = web.test_client().post("/webhooks/woocommerce", data=body, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["status"] == "accepted"


def test_bad_user_id_on_the_keys_post_is_refused(runtime, web, site):
    keys = {"key_id": 1, "user_id": "forged", "consumer_key": "ck_" + "a" * 40,
            "consumer_secret": "cs_" + "b" * 40, "key_permissions": "read_write"}
    answer = web.test_client().post(CALLBACK, json=keys, base_url=PUBLIC_URL)
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "state_invalid"
    assert stored_shop(runtime, "woocommerce", site.url) is None


def test_expired_user_id_is_refused(runtime, web, browser, site, monkeypatch):
    state = _state(_start(browser, site))
    monkeypatch.setattr(install, "STATE_MAX_AGE", -1)
    keys = {"key_id": 1, "user_id": state, "consumer_key": "ck_" + "a" * 40,
            "consumer_secret": "cs_" + "b" * 40, "key_permissions": "read_write"}
    answer = web.test_client().post(CALLBACK, json=keys, base_url=PUBLIC_URL)
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "state_expired"


def test_keys_the_site_does_not_accept_are_refused(runtime, web, browser, site):
    state = _state(_start(browser, site))  # a genuine pending install of this site
    keys = {"key_id": 1, "user_id": state, "consumer_key": "ck_" + "a" * 40,
            "consumer_secret": "cs_" + "b" * 40, "key_permissions": "read_write"}
    answer = web.test_client().post(CALLBACK, json=keys, base_url=PUBLIC_URL)
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "keys_refused"
    assert stored_shop(runtime, "woocommerce", site.url) is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"user_id": 5}'])
def test_malformed_posts_are_4xx(runtime, web, site, body):
    answer = web.test_client().post(CALLBACK, data=body, base_url=PUBLIC_URL,
                                    content_type="application/json")
    assert 400 <= answer.status_code < 500


def test_malformed_keys_with_a_genuine_state_are_400(runtime, web, browser, site):
    state = _state(_start(browser, site))
    answer = web.test_client().post(CALLBACK, json={"user_id": state, "consumer_key": "x"},
                                    base_url=PUBLIC_URL)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_payload"


def test_read_only_keys_are_refused_and_the_site_deletes_them(runtime, browser, site):
    page = _grant_page(browser, _start(browser, site))
    approve = _link(page, "approve").replace("scope=read_write", "scope=read")
    refused = browser.platform(site.url + approve)
    assert refused.status_code == 401  # the site's error page: our callback did not answer 200
    assert site.key_posts[0]["status"] == 403 and site.api_keys == {}
    assert stored_shop(runtime, "woocommerce", site.url) is None


def test_declined_in_woocommerce(runtime, browser, site):
    page = _grant_page(browser, _start(browser, site))
    answer = browser.get(_link(page, "deny"))
    assert answer.status_code == 403 and "declined" in answer.get_data(as_text=True)
    assert stored_shop(runtime, "woocommerce", site.url) is None


def test_a_return_without_keys_is_409(runtime, browser, site):
    start = _start(browser, site)
    answer = browser.get(f"{CALLBACK}?success=1&user_id={_state(start)}")
    assert answer.status_code == 409


def test_the_return_must_come_from_the_browser_that_started(runtime, web, browser, site):
    page = _grant_page(browser, _start(browser, site))
    granted = browser.platform(site.url + _link(page, "approve"))
    assert Browser(web).get(granted.headers["Location"]).status_code == 403


def test_plain_http_sites_are_refused_unless_allowed(runtime, browser, site):
    with_platform(runtime, "woocommerce", {"allow_http": ""})
    answer = browser.get(f"/install/woocommerce?site={site.url}")
    assert answer.status_code == 400 and "https" in answer.get_data(as_text=True)


@pytest.mark.parametrize("value", ["", "ftp://shop.example", "https://user:pw@shop.example",
                                   "https://shop.example/?q=1"])
def test_bad_site_urls_are_400(browser, site, value):
    assert browser.get(f"/install/woocommerce?site={value}").status_code == 400


def test_a_429_storm_while_creating_webhooks(runtime, browser, site):
    page = _grant_page(browser, _start(browser, site))
    granted = browser.platform(site.url + _link(page, "approve"))
    site.fail_next(429, 3, retry_after="0")  # every attempt of the listing
    landing = browser.get(granted.headers["Location"])
    assert landing.status_code == 302
    shop = stored_shop(runtime, "woocommerce", site.url)
    assert shop.settings["install"]["complete"] is False and site.webhooks == {}
    assert install.finish_install_job(shop.id) == "complete"
    assert len(site.webhooks) == 6


def test_reconnecting_rotates_keys_and_secret_without_duplicate_webhooks(runtime, browser, site):
    assert _install(browser, site).status_code == 302
    first = stored_shop(runtime, "woocommerce", site.url)
    first_secret = runtime.box.decrypt(first.webhook_secret_encrypted)
    assert _install(browser, site).status_code == 302
    again = stored_shop(runtime, "woocommerce", site.url)
    assert (again.id, again.widget_key) == (first.id, first.widget_key)
    secret = runtime.box.decrypt(again.webhook_secret_encrypted)
    assert secret != first_secret
    assert len(site.webhooks) == 6
    assert {w["secret"] for w in site.webhooks.values()} == {secret}
    credentials = runtime.box.decrypt_json(again.credentials_encrypted)
    assert credentials["consumer_key"] == site.key_posts[-1]["json"]["consumer_key"]


def test_a_return_for_keys_delivered_before_this_install_started_is_409(runtime, web, browser,
                                                                        site):
    assert _install(browser, site).status_code == 302  # the site was connected earlier
    with runtime.db.session() as session:
        shop = session.query(Shop).filter_by(platform="woocommerce", domain=site.url).one()
        shop.installed_at = shop.installed_at - timedelta(minutes=5)
    stranger = Browser(web)  # starts an install of that site and fakes the site's "success"
    start = _start(stranger, site)
    requests_before = len(site.requests)
    answer = stranger.get(f"{CALLBACK}?success=1&user_id={_state(start)}")
    assert answer.status_code == 409
    assert len(site.requests) == requests_before  # no set-up was triggered on the site
