"""Three sample storefront pages, one in the markup style of each platform's default theme (Shopify
Dawn, Cafe24's basic skin, WooCommerce Storefront), each with the widget's one script tag — what a
merchant sees after installing. Registered only when ``CCMS_DEMO=1`` (``ccms-addon demo`` sets it).

The pages run under a strict Content-Security-Policy (no inline script or style), as a careful
merchant's storefront would, so the demo also shows the widget needs nothing more.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from sqlalchemy import select

from ccms_addon.store.models import Shop

bp = Blueprint("demo_storefront", __name__, template_folder="templates",
               url_prefix="/demo")
STATIC = Path(__file__).parent / "demo_static"

#: platform → (template, demo shop domain as ``ccms-addon demo`` registers it)
PAGES = {
    "shopify": "demo/shopify.html",
    "cafe24": "demo/cafe24.html",
    "woocommerce": "demo/woocommerce.html",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _widget_key(platform: str) -> str | None:
    runtime = current_app.extensions["ccms"]
    domain = current_app.config["CCMS_DEMO_SHOPS"].get(platform)
    with runtime.db.engine.connect() as conn:
        return conn.scalar(select(Shop.widget_key).where(Shop.platform == platform,
                                                         Shop.domain == domain))


@bp.after_request
def _strict_csp(response):
    response.headers["Content-Security-Policy"] = CSP
    return response


@bp.get("/")
def index():
    return render_template("demo/index.html", platforms=list(PAGES))


@bp.get("/<platform>")
def storefront(platform: str):
    if platform not in PAGES:
        abort(404)
    return render_template(PAGES[platform], widget_key=_widget_key(platform) or "")


@bp.get("/static/<path:name>")
def static_file(name: str):
    return send_from_directory(STATIC, name, max_age=300)
