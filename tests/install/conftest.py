"""Fixtures of the install-flow tests: the add-on at an https public address (the platforms refuse
anything else), the loopback platforms playing the merchant who approves, and a browser.

The add-on runs in a Flask test client; the platforms are the loopback servers of
``tests.platform_servers``, reached over real HTTP by both the add-on (token endpoints, admin APIs)
and the test's "browser" (the authorize pages). The browser's cookies stay in the test client, on
the add-on's own host, as a real browser keeps them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from ccms_addon import install
from ccms_addon.store.models import Shop
from tests.conftest import SHOPIFY_SECRET
from tests.platform_servers.shopify import ShopifyAdminServer, signed_query_hmac

PUBLIC_URL = "https://care.example"
SHOPIFY_API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SHOP = "my-shop.myshopify.com"


def with_platform(runtime, name: str, values: dict[str, str]) -> None:
    """Set app-level ``CCMS_<NAME>_*`` values on the test runtime."""
    platforms = dict(runtime.settings.platforms)
    platforms[name] = {**platforms.get(name, {}), **values}
    runtime.settings = replace(runtime.settings, public_url=PUBLIC_URL, platforms=platforms)


@pytest.fixture
def web(runtime):
    """The add-on's web app with the install blueprint registered (what app.py will do)."""
    from ccms_addon.app import create_app
    runtime.settings = replace(runtime.settings, public_url=PUBLIC_URL)
    app = create_app(runtime=runtime)
    if "install" not in app.blueprints:
        install.init_app(app)
    app.config["TESTING"] = True
    return app


class Browser:
    """The merchant's browser: the add-on through the test client (cookies kept, on the add-on's
    https host), the platforms' pages over HTTP."""

    def __init__(self, app) -> None:
        self.client = app.test_client()

    def get(self, url: str, **kwargs: Any):
        parts = urlsplit(url)
        if parts.scheme and f"{parts.scheme}://{parts.netloc}" != PUBLIC_URL:
            raise AssertionError(f"{url} is not the add-on's")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.client.get(path, base_url=PUBLIC_URL, **kwargs)

    @staticmethod
    def platform(url: str) -> requests.Response:
        """A page of the platform (never following its redirect, to look at it)."""
        return requests.get(url, allow_redirects=False, timeout=10)

    def cookie(self, name: str):
        return self.client.get_cookie(name, domain="care.example", path="/install/")


@pytest.fixture
def browser(web) -> Browser:
    return Browser(web)


def stored_shop(runtime, platform: str, domain: str) -> Shop | None:
    from sqlalchemy import select
    with runtime.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.platform == platform, Shop.domain == domain))
        if shop is not None:
            session.expunge(shop)
        return shop


# --------------------------------------------------------------------------------------------------
# Shopify
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def shopify(runtime) -> Iterator[ShopifyAdminServer]:
    with ShopifyAdminServer("", api_key=SHOPIFY_API_KEY, api_secret=SHOPIFY_SECRET,
                            shop_domain=SHOP) as server:
        with_platform(runtime, "shopify", {"api_key": SHOPIFY_API_KEY,
                                           "api_base_url": server.base_url})
        yield server


def shopify_install_request(shop: str = SHOP, *, secret: str = SHOPIFY_SECRET,
                            timestamp: int | None = None, **extra: str) -> str:
    """``/install/shopify?…`` as Shopify signs it."""
    pairs = [("host", base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode())
              .decode()), ("shop", shop), ("timestamp", str(timestamp or int(time.time())))]
    pairs += list(extra.items())
    return "/install/shopify?" + urlencode(pairs + [("hmac", signed_query_hmac(pairs, secret))])


def session_token(*, shop: str = SHOP, secret: str = SHOPIFY_SECRET, header: dict | None = None,
                  **claims: Any) -> str:
    """An App Bridge session token (HS256 JWT) as Shopify issues it."""
    now = int(time.time())
    payload = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": SHOPIFY_API_KEY,
               "sub": "42", "exp": now + 60, "nbf": now - 1, "iat": now - 1,
               "jti": str(uuid.uuid4()), "sid": uuid.uuid4().hex}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{b64(header or {'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def install_shopify(browser: Browser, *, request_path: str | None = None):
    """The whole install, as the merchant lives it: the app store's install request, Shopify's
    approval page, the redirect back. Returns the add-on's last answer."""
    start = browser.get(request_path or shopify_install_request())
    assert start.status_code == 302, start.get_data(as_text=True)
    approved = browser.platform(start.headers["Location"])
    assert approved.status_code == 302, approved.text
    return browser.get(approved.headers["Location"])

