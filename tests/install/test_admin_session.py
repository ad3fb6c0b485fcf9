"""The embedded admin: Shopify session tokens (signature, exp/nbf, aud, dest, iss), the reusable
``admin_required`` decorator, the install receipt, and the per-shop ``frame-ancestors``."""

from __future__ import annotations

import time

import pytest
from flask import Blueprint, jsonify

from ccms_addon import install
from ccms_addon.install import admin_required, current_admin
from tests.conftest import SHOPIFY_SECRET_PREVIOUS
from tests.install.conftest import SHOP, install_shopify, session_token

FRAMED = f"frame-ancestors https://{SHOP} https://admin.shopify.com"


@pytest.fixture
def installed(runtime, browser, shopify):
    assert install_shopify(browser).status_code == 302
    return browser


def _admin(browser, token: str | None, *, header: bool = False, path: str = "/admin/shopify"):
    if header:
        return browser.get(path, headers={"Authorization": f"Bearer {token}"})
    return browser.get(f"{path}?embedded=1&shop={SHOP}" + (f"&id_token={token}" if token else ""))


def test_a_valid_token_in_the_query_or_the_header(installed):
    for answer in (_admin(installed, session_token()),
                   _admin(installed, session_token(), header=True),
                   _admin(installed, session_token(), header=True, path="/admin/")):
        assert answer.status_code == 200
        assert FRAMED in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"


def test_previous_secret_is_accepted_during_rotation(installed):
    assert _admin(installed, session_token(secret=SHOPIFY_SECRET_PREVIOUS)).status_code == 200


def test_small_clock_skew_is_allowed(installed):
    now = int(time.time())
    assert _admin(installed, session_token(exp=now - 5)).status_code == 200
    assert _admin(installed, session_token(nbf=now + 5)).status_code == 200


#: claim → seconds from now, resolved when the test runs (not when the suite is collected)
_NOW_RELATIVE = ("exp", "nbf")


@pytest.mark.parametrize("claims, reason", [
    ({"exp": -120}, "expired"),
    ({"exp": None}, "expired"),
    ({"nbf": 120}, "not valid yet"),
    ({"aud": "another-app-key"}, "another app"),
    ({"dest": "https://evil.example.com", "iss": "https://evil.example.com/admin"},
     "destination"),
    ({"dest": f"http://{SHOP}"}, "destination"),
    ({"iss": "https://other-shop.myshopify.com/admin"}, "issuer"),
])
def test_bad_claims_are_401(installed, claims, reason):
    now = int(time.time())
    claims = {k: (now + v if k in _NOW_RELATIVE and v is not None else v)
              for k, v in claims.items()}
    answer = _admin(installed, session_token(**claims))
    assert answer.status_code == 401
    assert reason in answer.get_data(as_text=True)
    assert answer.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")


def test_wrong_signature_and_other_algorithms_are_401(installed):
    assert _admin(installed, session_token(secret="not-our-secret")).status_code == 401
    unsigned = session_token(header={"alg": "none", "typ": "JWT"}).rsplit(".", 1)[0] + "."
    assert _admin(installed, unsigned).status_code == 401
    assert _admin(installed, session_token(header={"alg": "HS512"})).status_code == 401
    for garbage in ("x", "a.b.c", "e30.e30.", "!!!.###.$$$"):
        assert _admin(installed, garbage).status_code == 401


def test_a_valid_token_of_a_shop_without_the_add_on_is_401(installed):
    other = "other-shop.myshopify.com"
    answer = _admin(installed, session_token(shop=other))
    assert answer.status_code == 401 and "not installed" in answer.get_data(as_text=True)


def test_no_credentials_is_401(installed):
    answer = installed.get("/admin/")
    assert answer.status_code == 401
    assert answer.headers["Content-Security-Policy"].endswith("frame-ancestors 'none'")
    json_answer = installed.get("/admin/", headers={"Accept": "application/json"})
    assert json_answer.get_json()["error"]["code"] == "unauthenticated"


def test_unknown_platform_is_404(installed):
    assert installed.get("/admin/magento").status_code == 404


def test_receipts_are_signed_and_short_lived(runtime, installed, monkeypatch):
    assert installed.get("/admin/?installed=forged").status_code == 401
    receipt = install._serializer  # noqa: SLF001 — a receipt as the callback makes it
    with installed.client.application.test_request_context():
        token = receipt(install.RECEIPT_SALT).dumps({"p": "shopify", "i": 1})
    monkeypatch.setattr(install, "RECEIPT_MAX_AGE", -1)
    assert installed.get(f"/admin/?installed={token}").status_code == 401


def test_admin_required_decorates_later_views(runtime, web, browser, shopify):
    admin_bp = Blueprint("test_admin_views", __name__)

    @admin_bp.get("/admin/test-page")
    @admin_required
    def page():
        return f"<p>{current_admin().shop_domain}</p>"

    @admin_bp.get("/admin/test-data")
    @admin_required
    def data():
        return jsonify(shop=current_admin().shop_domain, via=current_admin().via)

    web.register_blueprint(admin_bp)
    assert install_shopify(browser).status_code == 302
    token = session_token()
    html = browser.get("/admin/test-page", headers={"Authorization": f"Bearer {token}"})
    assert html.status_code == 200 and SHOP in html.get_data(as_text=True)
    assert html.headers["Content-Security-Policy"] == FRAMED
    data_answer = browser.get("/admin/test-data", headers={"Authorization": f"Bearer {token}"})
    assert data_answer.get_json() == {"shop": SHOP, "via": "session_token"}
    assert "Content-Security-Policy" not in data_answer.headers  # not an HTML answer
    assert browser.get("/admin/test-page").status_code == 401
    expired = session_token(exp=int(time.time()) - 120)
    assert browser.get("/admin/test-page",
                       headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_frame_ancestors_keeps_an_existing_policy():
    from flask import Flask, Response
    app = Flask(__name__)
    with app.test_request_context():
        response = Response("<p>x</p>", mimetype="text/html")
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        install.with_frame_ancestors(response, None)
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'self'; frame-ancestors 'none'")


def test_frame_ancestors_drops_what_is_not_an_origin():
    assert install.frame_ancestors_directive(
        ["https://a.myshopify.com", "https://x; script-src *", "http://plain", "'unsafe-inline'"]
    ) == "frame-ancestors https://a.myshopify.com"
