"""Shopify: the authorization code grant end to end against the loopback shop, and every way it must
refuse — a bad or stale hmac, a foreign shop, a forged, expired or unbound state, a refused code,
missing scopes — plus a 429 storm while subscribing webhooks, expiring-token refresh, and
uninstall then reinstall."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from rq import Queue

from ccms_addon import install
from ccms_addon.jobs.pipeline import process_delivery
from ccms_addon.platforms import OrderRecord
from ccms_addon.queue import DELIVERIES_QUEUE
from ccms_addon.store import repository
from ccms_addon.store.models import Order, ShopStatus, WebhookDelivery
from tests.conftest import SHOPIFY_SECRET, SHOPIFY_SECRET_PREVIOUS
from tests.install.conftest import (PUBLIC_URL, SHOP, SHOPIFY_API_KEY, Browser, install_shopify,
                                    session_token, shopify_install_request, stored_shop,
                                    with_platform)
from tests.platform_servers.shopify import signed_query_hmac

EXPECTED_TOPICS = {"ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_PAID", "ORDERS_CANCELLED",
                   "ORDERS_FULFILLED", "REFUNDS_CREATE", "CUSTOMERS_CREATE", "CUSTOMERS_UPDATE",
                   "APP_UNINSTALLED"}
WEBHOOK_URL = f"{PUBLIC_URL}/webhooks/shopify"


def _resign(url: str, secret: str = SHOPIFY_SECRET, **changes: str) -> str:
    """Shopify's callback URL with some parameters changed and signed again (so only the change is
    under test, not the hmac)."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()]
    values = {k: v[0] for k, v in pairs if k != "hmac"}
    values.update(changes)
    signed = sorted(values.items())
    return (f"{parts.scheme}://{parts.netloc}{parts.path}?"
            + urlencode(signed + [("hmac", signed_query_hmac(signed, secret))]))


def _callback_url(browser: Browser) -> str:
    start = browser.get(shopify_install_request())
    assert start.status_code == 302
    approved = browser.platform(start.headers["Location"])
    assert approved.status_code == 302
    return approved.headers["Location"]


# --------------------------------------------------------------------------------------------------
# The happy path
# --------------------------------------------------------------------------------------------------


def test_install_end_to_end(runtime, browser, shopify):
    start = browser.get(shopify_install_request())
    assert start.status_code == 302
    authorize = urlsplit(start.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == shopify.base_url
    assert authorize.path == "/admin/oauth/authorize"
    query = parse_qs(authorize.query, keep_blank_values=True)
    assert query["client_id"] == [SHOPIFY_API_KEY]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/install/shopify/callback"]
    assert query["grant_options[]"] == [""]
    assert "read_orders" in query["scope"][0] and "write_script_tags" in query["scope"][0]
    cookie = browser.cookie("ccms_install_shopify")
    assert cookie is not None and cookie.http_only and cookie.secure
    assert cookie.same_site == "Lax"
    assert query["state"][0] not in cookie.value  # the state and the cookie are different tokens

    approved = browser.platform(start.headers["Location"])
    landing = browser.get(approved.headers["Location"])
    assert landing.status_code == 302
    assert landing.headers["Location"] == f"https://{SHOP}/admin/apps/{SHOPIFY_API_KEY}"
    assert browser.cookie("ccms_install_shopify") is None  # the pending install is over

    exchange = [r for r in shopify.state.oauth_requests if r["method"] == "POST"]
    assert len(exchange) == 1
    assert exchange[0]["form"]["client_secret"] == SHOPIFY_SECRET
    assert exchange[0]["form"]["expiring"] == "1"

    shop = stored_shop(runtime, "shopify", SHOP)
    assert shop.status is ShopStatus.ACTIVE
    credentials = runtime.box.decrypt_json(shop.credentials_encrypted)
    assert shopify.state.token_valid(credentials["access_token"])
    assert credentials["refresh_token"] and credentials["expires_at"]
    assert shop.webhook_secret_encrypted is None  # Shopify signs with the app secret
    subscriptions = shopify.state.webhook_subscriptions.values()
    assert {s["topic"] for s in subscriptions} == EXPECTED_TOPICS
    assert {s["uri"] for s in subscriptions} == {WEBHOOK_URL}
    (tag,) = shopify.state.script_tags.values()
    assert tag["src"].endswith(f"shop_key={shop.widget_key}")
    record = shop.settings["install"]
    assert record["complete"] is True and record["problems"] == []
    assert "shopify.app.toml" in record["webhooks_detail"]
    assert shop.settings["widget_injection"]["method"] == "script_tag"

    # Shopify then loads the app URL inside its admin, with a session token
    page = browser.get(f"/admin/shopify?embedded=1&shop={SHOP}&id_token={session_token()}")
    assert page.status_code == 200
    assert f"{SHOP} is connected" in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors https://{SHOP} https://admin.shopify.com" in csp


def test_the_app_is_embedded_only_when_configured(runtime, browser, shopify):
    with_platform(runtime, "shopify", {"embedded": "false"})
    landing = install_shopify(browser)
    assert landing.headers["Location"].startswith("/admin/?installed=")
    page = browser.get(landing.headers["Location"])
    assert page.status_code == 200 and f"{SHOP} is connected" in page.get_data(as_text=True)


def test_install_request_signed_with_the_previous_secret_is_accepted(browser, shopify):
    assert browser.get(shopify_install_request(secret=SHOPIFY_SECRET_PREVIOUS)).status_code == 302


def test_a_merchant_opening_the_app_url_of_an_uninstalled_shop_is_sent_to_install(browser, shopify):
    launch = shopify_install_request().replace("/install/shopify?", "/admin/shopify?")
    answer = browser.get(launch)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/install/shopify?")
    assert browser.get(answer.headers["Location"]).status_code == 302  # on to Shopify


# --------------------------------------------------------------------------------------------------
# The install request
# --------------------------------------------------------------------------------------------------


def test_bad_hmac_is_refused(runtime, browser, shopify):
    answer = browser.get(shopify_install_request(secret="not-the-secret"))
    assert answer.status_code == 401
    assert "signature" in answer.get_data(as_text=True)
    assert browser.cookie("ccms_install_shopify") is None
    assert answer.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_tampered_parameter_breaks_the_hmac(browser, shopify):
    path = shopify_install_request().replace("my-shop.myshopify.com", "my-shop2.myshopify.com")
    assert browser.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/install/shopify", f"/install/shopify?shop={SHOP}",
                                  f"/install/shopify?shop={SHOP}&timestamp=1&hmac=zz"])
def test_missing_or_malformed_parameters_are_400(browser, shopify, path):
    answer = browser.get(path)
    assert answer.status_code == 400


def test_stale_request_is_refused(browser, shopify):
    answer = browser.get(shopify_install_request(timestamp=int(time.time()) - 3600))
    assert answer.status_code == 400
    assert "too old" in answer.get_data(as_text=True)


@pytest.mark.parametrize("shop", ["evil.example.com", "my-shop.myshopify.com.evil.example",
                                  "-x.myshopify.com", "my_shop.myshopify.com"])
def test_foreign_shop_domain_is_refused_even_when_signed(browser, shopify, shop):
    answer = browser.get(shopify_install_request(shop))
    assert answer.status_code == 400
    assert "myshopify.com" in answer.get_data(as_text=True)


def test_json_clients_get_the_error_shape(browser, shopify):
    answer = browser.get(shopify_install_request(secret="wrong"),
                         headers={"Accept": "application/json"})
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "invalid_hmac"


def test_unknown_platform_is_404(browser):
    assert browser.get("/install/magento?shop=x").status_code == 404
    assert browser.get("/install/magento/callback?state=x").status_code == 404


def test_unconfigured_app_is_503_not_a_crash(runtime, browser, shopify):
    with_platform(runtime, "shopify", {"api_key": ""})
    assert browser.get(shopify_install_request()).status_code == 503


# --------------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------------


def test_forged_state_is_refused(runtime, browser, shopify):
    callback = _callback_url(browser)
    answer = browser.get(_resign(callback, state="forged.state.value"))
    assert answer.status_code == 403
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_missing_state_is_refused(runtime, browser, shopify):
    callback = _callback_url(browser)
    parts = urlsplit(callback)
    values = {k: v[0] for k, v in parse_qs(parts.query).items() if k not in ("hmac", "state")}
    pairs = sorted(values.items())
    answer = browser.get(f"{parts.path}?" + urlencode(pairs + [("hmac", signed_query_hmac(
        pairs, SHOPIFY_SECRET))]))
    assert answer.status_code == 400
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_expired_state_is_refused(runtime, browser, shopify, monkeypatch):
    callback = _callback_url(browser)
    monkeypatch.setattr(install, "STATE_MAX_AGE", -1)
    answer = browser.get(callback)
    assert answer.status_code == 403
    assert "expired" in answer.get_data(as_text=True)
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_state_of_another_browser_is_refused(runtime, web, browser, shopify):
    callback = _callback_url(browser)
    other = Browser(web)  # a victim lured to the attacker's callback URL
    answer = other.get(callback)
    assert answer.status_code == 403
    assert "another browser" in answer.get_data(as_text=True)
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_bad_hmac_on_the_callback_is_refused(runtime, browser, shopify):
    callback = _callback_url(browser)
    answer = browser.get(callback.replace("code=", "code=x"))
    assert answer.status_code == 401
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_callback_for_another_shop_than_the_pending_one(runtime, browser, shopify):
    callback = _callback_url(browser)
    answer = browser.get(_resign(callback, shop="other-shop.myshopify.com"))
    assert answer.status_code == 400
    assert stored_shop(runtime, "shopify", "other-shop.myshopify.com") is None


def test_code_exchange_refused(runtime, browser, shopify):
    callback = _callback_url(browser)
    shopify.state.codes.clear()  # used or expired
    answer = browser.get(callback)
    assert answer.status_code == 400
    assert "refused the authorization code" in answer.get_data(as_text=True)
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_a_code_works_once(runtime, browser, shopify):
    callback = _callback_url(browser)
    assert browser.get(callback).status_code == 302
    assert browser.get(callback).status_code == 403  # the browser's pending install is over


def test_fewer_scopes_than_asked_are_refused(runtime, browser, shopify):
    shopify.state.granted_scope = "read_orders"
    answer = install_shopify(browser)
    assert answer.status_code == 403
    assert stored_shop(runtime, "shopify", SHOP) is None


def test_write_scope_implies_read(runtime, browser, shopify):
    shopify.state.granted_scope = ("write_orders,read_customers,write_returns,write_products,"
                                   "read_themes,write_script_tags")
    assert install_shopify(browser).status_code == 302


def test_an_app_not_approved_for_read_all_orders_still_installs(runtime, browser, shopify):
    """``read_all_orders`` is asked for (history beyond 60 days) but Shopify grants it only to
    apps it approved: without it the shop is installed and its granted scopes recorded."""
    shopify.state.granted_scope = ("read_orders,write_orders,read_customers,read_returns,"
                                   "write_returns,read_products,read_themes,write_script_tags")
    assert install_shopify(browser).status_code == 302
    [authorize] = [r for r in shopify.state.oauth_requests if r["path"].endswith("/authorize")]
    assert "read_all_orders" in authorize["args"]["scope"].split(",")
    shop = stored_shop(runtime, "shopify", SHOP)
    assert "read_all_orders" not in shop.settings["granted_scopes"]


def test_shopify_unreachable_during_the_exchange_is_502(runtime, browser, shopify):
    callback = _callback_url(browser)
    with_platform(runtime, "shopify", {"api_base_url": "http://127.0.0.1:9"})
    answer = browser.get(callback)
    assert answer.status_code == 502
    assert stored_shop(runtime, "shopify", SHOP) is None


# --------------------------------------------------------------------------------------------------
# Rate limits while setting the shop up
# --------------------------------------------------------------------------------------------------


def test_a_short_429_burst_is_waited_out(runtime, browser, shopify):
    callback = _callback_url(browser)
    shopify.fail_next(2, 429, retry_after="0")
    assert browser.get(callback).status_code == 302
    shop = stored_shop(runtime, "shopify", SHOP)
    assert shop.settings["install"]["complete"] is True
    assert {s["topic"] for s in shopify.state.webhook_subscriptions.values()} == EXPECTED_TOPICS


def test_a_429_storm_connects_the_shop_and_retries_the_set_up(runtime, browser, shopify,
                                                              redis_conn):
    callback = _callback_url(browser)
    shopify.fail_next(6, 429, retry_after="0")  # every attempt of the subscriptions and the widget
    landing = browser.get(callback)
    assert landing.status_code == 302  # never a 5xx: the shop is connected
    shop = stored_shop(runtime, "shopify", SHOP)
    assert shop.status is ShopStatus.ACTIVE and shop.credentials_encrypted
    record = shop.settings["install"]
    assert record["complete"] is False and len(record["problems"]) == 2
    assert "rate limited" in record["problems"][0]
    assert shopify.state.webhook_subscriptions == {}
    scheduled = Queue(DELIVERIES_QUEUE, connection=redis_conn).scheduled_job_registry
    assert install.finish_job_id(shop.id) in scheduled.get_job_ids()

    page = browser.get(f"/admin/shopify?id_token={session_token()}")
    assert "Still to do" in page.get_data(as_text=True)

    assert install.finish_install_job(shop.id) == "complete"  # the job, once the storm is over
    assert {s["topic"] for s in shopify.state.webhook_subscriptions.values()} == EXPECTED_TOPICS
    assert len(shopify.state.script_tags) == 1
    assert stored_shop(runtime, "shopify", SHOP).settings["install"]["complete"] is True


def test_the_job_raises_while_the_platform_is_still_busy(runtime, browser, shopify):
    callback = _callback_url(browser)
    shopify.fail_next(6, 429, retry_after="0")
    browser.get(callback)
    shop = stored_shop(runtime, "shopify", SHOP)
    shopify.fail_next(6, 429, retry_after="0")
    with pytest.raises(Exception, match="retrying later"):
        install.finish_install_job(shop.id)


def test_set_up_is_idempotent(runtime, browser, shopify):
    install_shopify(browser)
    shop = stored_shop(runtime, "shopify", SHOP)
    before = dict(shopify.state.webhook_subscriptions)
    assert not install.finish_install(runtime, shop.id).problems
    assert shopify.state.webhook_subscriptions == before
    assert len(shopify.state.script_tags) == 1


def test_a_moved_public_url_moves_the_subscriptions(runtime, browser, shopify):
    install_shopify(browser)
    shop = stored_shop(runtime, "shopify", SHOP)
    runtime.settings = replace(runtime.settings, public_url="https://care2.example")
    assert not install.finish_install(runtime, shop.id).problems
    subscriptions = list(shopify.state.webhook_subscriptions.values())
    assert len(subscriptions) == len(EXPECTED_TOPICS)
    assert {s["uri"] for s in subscriptions} == {"https://care2.example/webhooks/shopify"}


# --------------------------------------------------------------------------------------------------
# Expiring offline tokens
# --------------------------------------------------------------------------------------------------


def _context(runtime):
    shop = stored_shop(runtime, "shopify", SHOP)
    return install.shop_context(runtime, shop, runtime.platforms["shopify"])


def test_an_expiring_token_is_refreshed_before_it_expires(runtime, browser, shopify):
    install_shopify(browser)
    shop = stored_shop(runtime, "shopify", SHOP)
    credentials = runtime.box.decrypt_json(shop.credentials_encrypted)
    with runtime.db.session() as session:
        row = session.get(type(shop), shop.id)
        row.credentials_encrypted = runtime.box.encrypt_json(
            {**credentials, "expires_at": "2000-01-01T00:00:00+00:00"})
    assert runtime.platforms["shopify"].fetch_orders(_context(runtime), ["1"]) == []
    refreshed = runtime.box.decrypt_json(stored_shop(runtime, "shopify", SHOP).credentials_encrypted)
    assert refreshed["access_token"] != credentials["access_token"]
    assert refreshed["refresh_token"] != credentials["refresh_token"]
    assert credentials["refresh_token"] not in shopify.state.refresh_tokens  # replaced on use
    grants = [r["form"].get("grant_type") for r in shopify.state.oauth_requests
              if r["method"] == "POST"]
    assert grants == [None, "refresh_token"]


def test_a_401_refreshes_once_and_retries(runtime, browser, shopify):
    install_shopify(browser)
    before = runtime.box.decrypt_json(stored_shop(runtime, "shopify", SHOP).credentials_encrypted)
    shopify.expire_tokens()  # Shopify says expired while our clock says not yet
    assert runtime.platforms["shopify"].fetch_orders(_context(runtime), ["1"]) == []
    after = runtime.box.decrypt_json(stored_shop(runtime, "shopify", SHOP).credentials_encrypted)
    assert after["access_token"] != before["access_token"]
    assert shopify.state.token_valid(after["access_token"])


# --------------------------------------------------------------------------------------------------
# Uninstall, then reinstall
# --------------------------------------------------------------------------------------------------


def _uninstall_webhook(runtime, web) -> None:
    """Shopify's app/uninstalled delivery, received and processed as in production."""
    adapter = runtime.platforms["shopify"]
    body = json.dumps({"id": 690933842, "domain": SHOP, "myshopify_domain": SHOP}).encode()
    headers = adapter.delivery_headers(body, shop_domain=SHOP, topic="app/uninstalled",
                                       secret=SHOPIFY_SECRET)
    answer = web.test_client().post("/webhooks/shopify", data=body, headers=headers,
                                    base_url=PUBLIC_URL)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    with runtime.db.session() as session:
        delivery_id = session.query(WebhookDelivery.id).filter_by(topic="app/uninstalled").scalar()
    assert process_delivery(delivery_id) == "processed"


def test_uninstall_then_reinstall_restores_the_same_shop(runtime, web, browser, shopify):
    assert install_shopify(browser).status_code == 302
    first = stored_shop(runtime, "shopify", SHOP)
    first_token = runtime.box.decrypt_json(first.credentials_encrypted)["access_token"]
    with runtime.db.session() as session:
        repository.upsert_orders(session, first.id, [OrderRecord(
            platform_order_id="1001", number="#1001", currency="EUR", total=10,
            updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc))])

    _uninstall_webhook(runtime, web)
    shopify.uninstall()
    gone = stored_shop(runtime, "shopify", SHOP)
    assert gone.status is ShopStatus.UNINSTALLED and gone.credentials_encrypted is None
    refused = browser.get(f"/admin/shopify?id_token={session_token()}")
    assert refused.status_code == 401 and "install" in refused.get_data(as_text=True)

    assert install_shopify(browser).status_code == 302
    again = stored_shop(runtime, "shopify", SHOP)
    assert again.id == first.id and again.widget_key == first.widget_key
    assert again.status is ShopStatus.ACTIVE and again.uninstalled_at is None
    token = runtime.box.decrypt_json(again.credentials_encrypted)["access_token"]
    assert token != first_token and shopify.state.token_valid(token)
    assert {s["topic"] for s in shopify.state.webhook_subscriptions.values()} == EXPECTED_TOPICS
    (tag,) = shopify.state.script_tags.values()
    assert tag["src"].endswith(f"shop_key={first.widget_key}")
    with runtime.db.session() as session:
        assert session.query(Order).filter_by(shop_id=first.id).count() == 1  # data kept
    assert browser.get(f"/admin/shopify?id_token={session_token()}").status_code == 200
