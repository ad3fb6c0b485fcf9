"""Signing in and out, the cookie, CSRF, failed sign-ins, the embedded launch, framing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ccms_addon.dashboard import auth
from ccms_addon.staff import set_password
from ccms_addon.store.models import Staff, StaffRole
from tests.dashboard.conftest import PASSWORD, Dashboard, csrf_of, new_item
from tests.install.conftest import session_token

SELF_FRAMED = "frame-ancestors 'self'"


def test_sign_in_sets_a_signed_httponly_cookie_and_lands_in_the_inbox(dashboard, team):
    answer = dashboard.sign_in(team.emails["agent"])
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/dashboard/inbox")
    cookie = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith(auth.COOKIE + "=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/dashboard" in cookie
    assert "Partitioned" not in cookie
    inbox = dashboard.get("/dashboard/inbox")
    assert inbox.status_code == 200 and "a agent" in inbox.get_data(as_text=True)
    assert SELF_FRAMED in inbox.headers["Content-Security-Policy"]
    assert "script-src 'self'" in inbox.headers["Content-Security-Policy"]
    assert inbox.headers["Cache-Control"] == "no-store"


def test_pages_need_a_sign_in(dashboard, team):
    answer = dashboard.get("/dashboard/inbox?status=received")
    assert answer.status_code == 303
    assert "/dashboard/login?next=" in answer.headers["Location"]
    assert dashboard.client.post("/dashboard/inbox/bulk", data={}).status_code == 401
    assert dashboard.get("/dashboard/").headers["Location"].endswith("/dashboard/login")


def test_sign_in_returns_to_the_page_asked_for_but_never_another_site(dashboard, team):
    form = dashboard.get("/dashboard/login").get_data(as_text=True)
    answer = dashboard.client.post("/dashboard/login", data={
        "csrf_token": csrf_of(form), "email": team.emails["agent"], "password": PASSWORD,
        "return_to": "/dashboard/inbox?kind=complaint"})
    assert answer.headers["Location"].endswith("/dashboard/inbox?kind=complaint")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/admin/"):
        fresh = Dashboard(dashboard.client.application.test_client())
        form = fresh.get("/dashboard/login").get_data(as_text=True)
        answer = fresh.client.post("/dashboard/login", data={
            "csrf_token": csrf_of(form), "email": team.emails["agent"], "password": PASSWORD,
            "return_to": target})
        assert answer.headers["Location"].endswith("/dashboard/inbox"), target


@pytest.mark.parametrize("email, password", [
    ("agent@a.test", "wrong password!"), ("nobody@a.test", PASSWORD), ("", PASSWORD)])
def test_wrong_credentials_are_refused_alike(dashboard, team, email, password):
    answer = dashboard.sign_in(email, password)
    assert answer.status_code in (401, 422)
    assert auth.COOKIE + "=" not in "".join(answer.headers.getlist("Set-Cookie"))
    if email:
        assert answer.status_code == 401
        assert "The email or the password is not right." in answer.get_data(as_text=True)


def test_the_login_form_is_bound_to_the_browser(dashboard, team):
    # no form cookie (a forged cross-site login) → 403, no session
    answer = dashboard.client.post("/dashboard/login", data={
        "csrf_token": "0" * 64, "email": team.emails["agent"], "password": PASSWORD})
    assert answer.status_code == 403
    assert auth.COOKIE + "=" not in "".join(answer.headers.getlist("Set-Cookie"))


def test_failed_sign_ins_are_limited_per_email(dashboard, team):
    limit = auth.LOGIN_FAILURE_LIMITS["email"][0]
    for _ in range(limit):
        assert dashboard.sign_in(team.emails["agent"], "not the password").status_code == 401
    blocked = dashboard.sign_in(team.emails["agent"], PASSWORD)  # even the right one now
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    other = Dashboard(dashboard.client.application.test_client())
    assert other.sign_in(team.emails["owner"]).status_code == 303  # another person is not blocked


def test_a_successful_sign_in_clears_the_count(dashboard, team):
    limit = auth.LOGIN_FAILURE_LIMITS["email"][0]
    for _ in range(limit - 1):
        dashboard.sign_in(team.emails["agent"], "nope nope nope")
    assert dashboard.sign_in(team.emails["agent"]).status_code == 303
    again = Dashboard(dashboard.client.application.test_client())
    for _ in range(limit - 1):
        assert again.sign_in(team.emails["agent"], "nope nope nope").status_code == 401


def test_every_post_needs_the_sessions_csrf_token(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0])
    board = signed_in("agent")
    for token in ("", "x" * 64):
        answer = board.post(f"/dashboard/items/{item.id}/note", {"text": "hi"}, token=token)
        assert answer.status_code == 403
        assert "This form has expired" in answer.get_data(as_text=True)
    # a token of another person's session does not fit this one
    stranger = signed_in("owner")
    assert board.post(f"/dashboard/items/{item.id}/note", {"text": "hi"},
                      token=stranger.token).status_code == 403
    assert [e.type for e in _events(runtime, item.id)] == ["received"]
    assert board.post(f"/dashboard/items/{item.id}/note", {"text": "hi"}).status_code == 303


def _events(runtime, item_id):
    from ccms_addon.store.models import VocEvent
    with runtime.db.session() as s:
        return s.scalars(select(VocEvent).where(VocEvent.voc_item_id == item_id)
                         .order_by(VocEvent.id)).all()


def test_sign_out_revokes_the_cookie_even_if_replayed(app, signed_in):
    board = signed_in("agent")
    cookie = board.client.get_cookie(auth.COOKIE, path="/dashboard").value
    answer = board.post("/dashboard/logout")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/dashboard/login")
    replay = app.test_client()
    replay.set_cookie(auth.COOKIE, cookie, path="/dashboard")
    assert replay.get("/dashboard/inbox").status_code == 303


def test_deactivation_and_a_new_password_end_sessions_at_once(runtime, signed_in, team):
    agent = signed_in("agent")
    manager = signed_in("manager")
    with runtime.db.session() as s:
        s.get(Staff, team.agent).active = False
        set_password(s.get(Staff, team.manager), "a brand new password")
    assert agent.get("/dashboard/inbox").status_code == 303
    assert manager.get("/dashboard/inbox").status_code == 303


def test_a_tampered_cookie_is_no_session(app, signed_in):
    board = signed_in("agent")
    value = board.client.get_cookie(auth.COOKIE, path="/dashboard").value
    forged = app.test_client()
    forged.set_cookie(auth.COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
                      path="/dashboard")
    assert forged.get("/dashboard/inbox").status_code == 303


def test_the_locale_is_the_persons_and_can_be_switched(runtime, signed_in, team):
    board = signed_in("agent")
    assert "Inbox" in board.get("/dashboard/inbox").get_data(as_text=True)
    answer = board.post("/dashboard/locale", {"locale": "ko", "return_to": "/dashboard/inbox"})
    assert answer.status_code == 303
    page = board.get("/dashboard/inbox").get_data(as_text=True)
    assert "접수함" in page and '<html lang="ko">' in page
    board.post("/dashboard/locale", {"locale": "ja"})
    assert "受付箱" in board.get("/dashboard/inbox").get_data(as_text=True)
    assert board.post("/dashboard/locale", {"locale": "fr"}).status_code == 422
    with runtime.db.session() as s:
        assert s.get(Staff, team.agent).locale == "ja"


# --------------------------------------------------------------------------------------------------
# The embedded launch (Shopify admin iframe)
# --------------------------------------------------------------------------------------------------


def _launch(client, token: str):
    return client.get(f"/dashboard/?embedded=1&shop=a-shop.myshopify.com&host=YWRtaW4&hmac=x"
                      f"&id_token={token}", base_url="https://care.example")


def test_the_embedded_launch_signs_in_the_shops_owner_with_a_partitioned_cookie(
        app, runtime, team):
    client = app.test_client()
    answer = _launch(client, session_token(shop="a-shop.myshopify.com"))
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/dashboard/inbox")
    cookie = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith(auth.COOKIE + "=")][0]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Partitioned", "Path=/dashboard"):
        assert attribute in cookie
    framed = ("frame-ancestors https://a-shop.myshopify.com https://admin.shopify.com")
    assert framed in answer.headers["Content-Security-Policy"]
    inbox = client.get("/dashboard/inbox", base_url="https://care.example")
    assert inbox.status_code == 200
    assert framed in inbox.headers["Content-Security-Policy"]
    assert "a owner" in inbox.get_data(as_text=True)  # the merchant's owner
    assert "Sign out" not in inbox.get_data(as_text=True)  # the platform's admin signs out


def test_the_embedded_launch_makes_the_first_owner_when_there_is_none(app, runtime, make_shop):
    from ccms_addon.store.models import Merchant
    shop = make_shop("shopify", "new-shop.myshopify.com", credentials={"access_token": "t"},
                     merchant=Merchant(name="New", email="Boss@New.test")).shop
    answer = _launch(app.test_client(), session_token(shop="new-shop.myshopify.com"))
    assert answer.status_code == 303
    with runtime.db.session() as s:
        owner = s.scalar(select(Staff).where(Staff.merchant_id == shop.merchant_id))
        assert (owner.email, owner.role, owner.password_hash) == ("boss@new.test",
                                                                  StaffRole.OWNER, None)


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
def test_a_bad_session_token_is_401_and_framed_by_nobody_else(app, team, token):
    answer = _launch(app.test_client(), token)
    assert answer.status_code == 401
    assert auth.COOKIE + "=" not in "".join(answer.headers.getlist("Set-Cookie"))
    assert SELF_FRAMED in answer.headers["Content-Security-Policy"]


def test_a_token_of_a_shop_without_the_add_on_is_401(app, team):
    answer = _launch(app.test_client(), session_token(shop="stranger.myshopify.com"))
    assert answer.status_code == 401
    assert "has not installed" in answer.get_data(as_text=True)


def test_an_embedded_session_ends_when_its_shop_is_uninstalled(app, runtime, team):
    from ccms_addon.store.models import Shop, ShopStatus
    client = app.test_client()
    _launch(client, session_token(shop="a-shop.myshopify.com"))
    with runtime.db.session() as s:
        s.get(Shop, team.shop_ids[1]).status = ShopStatus.UNINSTALLED
    assert client.get("/dashboard/inbox", base_url="https://care.example").status_code == 303


def test_the_static_files_are_served_with_the_policy(app):
    answer = app.test_client().get("/dashboard/static/dashboard.js")
    assert answer.status_code == 200 and "addEventListener" in answer.get_data(as_text=True)
    assert SELF_FRAMED in answer.headers["Content-Security-Policy"]

