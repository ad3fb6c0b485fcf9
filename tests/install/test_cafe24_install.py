"""Cafe24: OAuth 2.0 per mall end to end against the loopback mall — the code exchange with HTTP
Basic client credentials, webhook reception switched on, the ScriptTag installed — and the
access token refreshed before it expires and once on a 401, the new pair written back encrypted."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from ccms_addon import install
from ccms_addon.platforms import PlatformAuthError
from ccms_addon.store.models import Shop, ShopStatus
from tests.conftest import CAFE24_WEBHOOK_KEY
from tests.install.conftest import PUBLIC_URL, Browser, stored_shop, with_platform
from tests.platform_servers.cafe24 import Cafe24ServerState, running_server

MALL = "ccmsmall"


@pytest.fixture
def mall(runtime) -> Iterator[Cafe24ServerState]:
    state = Cafe24ServerState(access_token="", mall_id=MALL)
    with running_server(state) as base_url:
        with_platform(runtime, "cafe24", {"client_id": state.client_id,
                                          "client_secret": state.client_secret,
                                          "api_base_url": base_url,
                                          "webhook_key": CAFE24_WEBHOOK_KEY})
        state.base_url = base_url  # type: ignore[attr-defined]
        yield state


def _install(browser: Browser, mall_id: str = MALL):
    start = browser.get(f"/install/cafe24?mall_id={mall_id}&user_id=owner&lang=ko_KR")
    assert start.status_code == 302, start.get_data(as_text=True)
    approved = browser.platform(start.headers["Location"])
    assert approved.status_code == 302, approved.text
    return start, browser.get(approved.headers["Location"])


def _credentials(runtime) -> dict:
    return runtime.box.decrypt_json(stored_shop(runtime, "cafe24", MALL).credentials_encrypted)


def test_install_end_to_end(runtime, browser, mall):
    start, landing = _install(browser)
    authorize = urlsplit(start.headers["Location"])
    assert authorize.path == "/api/v2/oauth/authorize"
    query = parse_qs(authorize.query)
    assert query["response_type"] == ["code"] and query["client_id"] == [mall.client_id]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/install/cafe24/callback"]
    scopes = query["scope"][0].split(" ")
    assert {"mall.read_order", "mall.write_application", "mall.read_privacy"} <= set(scopes)

    assert landing.status_code == 302 and landing.headers["Location"].startswith("/admin/?installed=")
    exchange = [c for c in mall.oauth_calls if c["method"] == "POST"]
    assert exchange[0]["form"]["grant_type"] == "authorization_code"
    assert exchange[0]["form"]["redirect_uri"] == f"{PUBLIC_URL}/install/cafe24/callback"
    assert "client_secret" not in exchange[0]["form"]  # HTTP Basic, not the body
    assert exchange[0]["authorization"] == "Basic " + base64.b64encode(
        f"{mall.client_id}:{mall.client_secret}".encode()).decode()

    shop = stored_shop(runtime, "cafe24", MALL)
    assert shop.status is ShopStatus.ACTIVE and shop.settings["shop_no"] == "1"
    credentials = _credentials(runtime)
    assert credentials["access_token"] == mall.access_token
    assert credentials["refresh_token"] == mall.refresh_token
    expires = datetime.fromisoformat(credentials["expires_at"])
    assert timedelta(hours=1, minutes=55) < expires - datetime.now(timezone.utc) <= timedelta(hours=2)
    assert mall.access_token not in str(shop.settings)

    assert mall.webhook_reception == "T"
    (tag,) = mall.scripttags.values()
    assert tag["src"] == f"{PUBLIC_URL}/widget/v1/loader.js?shop_key={shop.widget_key}"
    assert shop.settings["install"]["complete"] is True
    assert "90023" in shop.settings["install"]["webhooks_detail"]

    page = browser.get(landing.headers["Location"])
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"{MALL} is connected" in text and "Receiving 15 kinds" in text
    assert page.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_the_mall_address_is_accepted_as_its_id(runtime, browser, mall):
    _install(browser, f"https://{MALL}.cafe24.com/")
    assert stored_shop(runtime, "cafe24", MALL) is not None


@pytest.mark.parametrize("mall_id", ["", "evil.example.com", "UPPER_not-ok!", "a" * 300])
def test_bad_mall_id_is_400(browser, mall, mall_id):
    assert browser.get(f"/install/cafe24?mall_id={mall_id}").status_code == 400


def test_code_exchange_refused(runtime, browser, mall):
    start = browser.get(f"/install/cafe24?mall_id={MALL}")
    approved = browser.platform(start.headers["Location"])
    mall.codes.clear()  # a code lives one minute and works once
    answer = browser.get(approved.headers["Location"])
    assert answer.status_code == 400
    assert "refused the authorization code" in answer.get_data(as_text=True)
    assert stored_shop(runtime, "cafe24", MALL) is None


def test_wrong_client_secret_is_refused(runtime, browser, mall):
    with_platform(runtime, "cafe24", {"client_secret": "wrong"})
    _, answer = _install(browser)
    assert answer.status_code == 400
    assert stored_shop(runtime, "cafe24", MALL) is None


def test_declined_authorisation(runtime, browser, mall):
    start = browser.get(f"/install/cafe24?mall_id={MALL}")
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    answer = browser.get(f"/install/cafe24/callback?error=access_denied&state={state}")
    assert answer.status_code == 403
    assert stored_shop(runtime, "cafe24", MALL) is None


def test_a_state_of_another_platform_is_refused(runtime, browser, mall, shopify):
    from tests.install.conftest import shopify_install_request
    start = browser.get(shopify_install_request())
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    answer = browser.get(f"/install/cafe24/callback?code=abc&state={state}")
    assert answer.status_code == 403


# --------------------------------------------------------------------------------------------------
# Refresh
# --------------------------------------------------------------------------------------------------


def _context(runtime):
    shop = stored_shop(runtime, "cafe24", MALL)
    return install.shop_context(runtime, shop, runtime.platforms["cafe24"])


def _set_stored(runtime, **changes) -> None:
    with runtime.db.session() as session:
        shop = session.query(Shop).filter_by(platform="cafe24", domain=MALL).one()
        credentials = runtime.box.decrypt_json(shop.credentials_encrypted)
        shop.credentials_encrypted = runtime.box.encrypt_json({**credentials, **changes})


def _grants(mall) -> list[str]:
    return [c["form"]["grant_type"] for c in mall.oauth_calls if c["method"] == "POST"]


def test_the_token_is_refreshed_before_it_expires(runtime, browser, mall):
    _install(browser)
    before = _credentials(runtime)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    _set_stored(runtime, expires_at=soon)
    assert runtime.platforms["cafe24"].fetch_orders(_context(runtime), ["20240302-0000001"]) == []
    after = _credentials(runtime)
    assert after["access_token"] == mall.access_token != before["access_token"]
    assert after["refresh_token"] == mall.refresh_token != before["refresh_token"]
    assert _grants(mall) == ["authorization_code", "refresh_token"]
    orders_call = [c for c in mall.calls if c["path"] == "/api/v2/admin/orders"][-1]
    assert orders_call["headers"]["Authorization"] == f"Bearer {after['access_token']}"


def test_a_401_refreshes_once_and_retries(runtime, browser, mall):
    _install(browser)
    before = _credentials(runtime)
    mall.token_expires_at = time.time() - 1  # Cafe24 says expired; our record says not yet
    assert runtime.platforms["cafe24"].fetch_orders(_context(runtime), ["20240302-0000001"]) == []
    assert _grants(mall) == ["authorization_code", "refresh_token"]
    statuses = [c["path"] for c in mall.calls if c["path"] == "/api/v2/admin/orders"]
    assert len(statuses) == 2  # the refused call and its retry
    assert _credentials(runtime)["access_token"] != before["access_token"]


def test_a_second_worker_takes_the_token_the_first_refreshed(runtime, browser, mall):
    _install(browser)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    _set_stored(runtime, expires_at=soon)
    first, second = _context(runtime), _context(runtime)  # both read the old pair
    adapter = runtime.platforms["cafe24"]
    adapter.fetch_orders(first, ["x"])
    adapter.fetch_orders(second, ["x"])  # does not spend the voided refresh token
    assert _grants(mall) == ["authorization_code", "refresh_token"]


def test_a_refused_refresh_token_means_reauthorising(runtime, browser, mall):
    _install(browser)
    _set_stored(runtime, expires_at="2000-01-01T00:00:00+00:00")
    mall.refresh_token = None  # two weeks unused, or the app was deleted
    with pytest.raises(PlatformAuthError, match="refresh token"):
        runtime.platforms["cafe24"].fetch_orders(_context(runtime), ["x"])


def test_a_refresh_never_resurrects_an_uninstalled_shop(runtime, browser, mall):
    from ccms_addon.store.privacy import uninstall_shop
    _install(browser)
    context = _context(runtime)
    with runtime.db.session() as session:
        uninstall_shop(session, context.shop_id)
    context.credentials_store.save({"access_token": "new"})
    assert stored_shop(runtime, "cafe24", MALL).credentials_encrypted is None
    assert context.credentials_store.load() == {}


def test_reinstall_restores_the_same_mall(runtime, browser, mall):
    from ccms_addon.store.privacy import uninstall_shop
    _install(browser)
    first = stored_shop(runtime, "cafe24", MALL)
    with runtime.db.session() as session:
        uninstall_shop(session, first.id)
    mall.scripttags.clear()
    mall.webhook_reception = "F"
    _install(browser)
    again = stored_shop(runtime, "cafe24", MALL)
    assert (again.id, again.widget_key) == (first.id, first.widget_key)
    assert again.status is ShopStatus.ACTIVE
    assert _credentials(runtime)["access_token"] == mall.access_token
    assert mall.webhook_reception == "T" and len(mall.scripttags) == 1


def test_no_refresh_without_a_store_to_keep_the_new_token(runtime, browser, mall):
    from dataclasses import replace
    _install(browser)
    mall.token_expires_at = time.time() - 1
    context = replace(_context(runtime), credentials_store=None)
    with pytest.raises(PlatformAuthError, match="credentials store"):
        runtime.platforms["cafe24"].fetch_orders(context, ["x"])
    assert _grants(mall) == ["authorization_code"]  # the stored refresh token was not spent
