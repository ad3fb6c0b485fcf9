"""Real-browser fixtures: Debian's Chromium driven by Playwright (sync API) against the real app.

The app (``create_app`` on the test runtime) runs in a werkzeug server on a free loopback port,
with one extra blueprint registered here only: host pages that embed the loader the way a
storefront does — plain, hostile (CSS and sabotaged globals) and under a strict CSP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Blueprint, Response, request
from markupsafe import escape
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'"

#: the widget settings of the test shop (settings.py validates them like a merchant's)
WIDGET_SETTINGS = {
    "phone": "+82 2-1234-5678",
    "email": "help@test-shop.example",
    "kakao_channel_url": "https://pf.kakao.com/_test",
    "links": [{"label": "FAQ", "url": "https://test-shop.example/faq"}],
    "hours": {"timezone": "Asia/Seoul",
              "weekly": {day: [["00:00", "23:59"]] for day in
                         ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}},
    "categories": [{"key": "delivery", "labels": {"en": "Delivery", "ko": "배송", "ja": "配送"}},
                   {"key": "product", "labels": {"en": "Product", "ko": "상품", "ja": "商品"}}],
    "consent_text": {"en": "I agree that the shop keeps my message to answer it.",
                     "ko": "답변을 위해 메시지를 보관하는 데 동의합니다.",
                     "ja": "回答のためにメッセージを保管することに同意します。"},
    "ack_promise_hours": 24,
}

PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Test shop</title>
{head}
</head>
<body>
<header><nav aria-label="Shop"><a href="/test-host/page">Home</a>
<a href="/test-host/page">Bags</a></nav></header>
<main>
<h1>Travel bag</h1>
<p>Waxed canvas, leather straps, a lifetime of trips.</p>
<button type="button">Add to cart</button>
<section class="sticky" aria-label="Checkout">Checkout</section>
</main>
<script async src="/widget/v1/loader.js" data-shop-key="{key}"></script>
</body>
</html>
"""

#: what a careless or hostile theme does: broad !important rules and a sticky bar at max z-index
HOSTILE_CSS = """
button { all: unset; color: red !important; }
div, aside, dialog { display: none !important; }
* { font-size: 40px !important; box-sizing: content-box !important; }
.sticky { position: fixed; right: 0; bottom: 0; width: 100px; height: 100px;
          z-index: 2147483647; background: #eee; }
ccms-widget { display: none !important; opacity: 0 !important; }
"""

#: globals a theme or an old library overwrote before the loader ran
SABOTAGE_JS = """
(function () {
  function broken() { throw new Error('sabotaged by the page'); }
  var names = ['map', 'forEach', 'push', 'indexOf', 'includes', 'join', 'filter', 'some', 'slice'];
  for (var i = 0; i < names.length; i++) Array.prototype[names[i]] = broken;
  JSON.parse = broken;
  JSON.stringify = broken;
  Object.assign = broken;
  window.Promise = broken;
  document.documentElement.setAttribute('data-sabotaged', '');
})();
"""


def host_blueprint() -> Blueprint:
    """Storefront-like pages for the tests: ``/test-host/page?key=…&lang=…&variant=…``."""
    bp = Blueprint("test_host", __name__)

    @bp.get("/test-host/page")
    def page():
        variant = request.args.get("variant", "plain")
        head = ""
        if variant == "hostile":
            head = ('<link rel="stylesheet" href="/test-host/hostile.css">\n'
                    '<script src="/test-host/sabotage.js"></script>')
        html = PAGE.format(lang=escape(request.args.get("lang", "en")), head=head,
                           key=escape(request.args.get("key", "")))
        if variant == "scripttag":  # the ScriptTag API's form: no attributes, the key in the URL
            key = escape(request.args.get("key", ""))
            html = html.replace(f'src="/widget/v1/loader.js" data-shop-key="{key}"',
                                f'src="/widget/v1/loader.js?shop_key={key}"')
        response = Response(html, mimetype="text/html")
        if variant in ("csp", "hostile"):
            response.headers["Content-Security-Policy"] = STRICT_CSP
        return response

    @bp.get("/test-host/hostile.css")
    def hostile_css():
        return Response(HOSTILE_CSS, mimetype="text/css")

    @bp.get("/test-host/sabotage.js")
    def sabotage_js():
        return Response(SABOTAGE_JS, mimetype="text/javascript")

    return bp


@dataclass
class LiveServer:
    url: str
    app: object


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    app.register_blueprint(host_blueprint())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def shop_key(make_shop) -> str:
    """A shop with every contact channel, all-day hours, categories and a consent text."""
    new = make_shop("shopify", "test-shop.myshopify.com", name="Test Shop",
                    settings={"widget": WIDGET_SETTINGS})
    return new.shop.widget_key


@pytest.fixture
def context(browser) -> Iterator[object]:
    ctx = browser.new_context(locale="en-US", timezone_id="Europe/Paris")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context) -> Iterator[object]:
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    pg.close()
