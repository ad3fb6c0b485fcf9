"""The three demo storefronts (Dawn, Cafe24's basic skin, Storefront) with the widget on them, in
a real Chromium at a phone's and a laptop's size: what a merchant sees after installing."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from ccms_addon.app import create_app
from ccms_addon.demo import DEMO_NAMES, DEMO_WIDGETS
from ccms_addon.runtime import build_runtime
from ccms_addon.store import repository
from ccms_addon.store.models import VocItem

VIEWPORTS = [(375, 667), (1366, 768)]
PLATFORMS = ["shopify", "cafe24", "woocommerce"]
#: the page language of each demo storefront
LOCALE = {"shopify": "en", "cafe24": "ko", "woocommerce": "ja"}
#: what stays clickable on the page's own sticky bars on a phone
CHECKOUT = {"shopify": ".sticky-checkout", "cafe24": "#orderFixArea",
            "woocommerce": ".storefront-handheld-footer-bar"}
I18N = Path(__file__).resolve().parents[2] / "widgets" / "i18n"
LAUNCHER = {"en": "Contact us", "ko": "고객센터 문의", "ja": "お問い合わせ"}


def words(platform: str) -> dict:
    return json.loads((I18N / f"{LOCALE[platform]}.json").read_text())


@pytest.fixture
def demo(settings, redis_conn, runtime):
    """The app as ``ccms-addon demo`` runs it (CCMS_DEMO=1), with its three demo shops."""
    from ccms_addon.demo import DEMO_SHOPS
    demo_settings = dataclasses.replace(settings, demo=True)
    rt = build_runtime(demo_settings, redis_connection=redis_conn)
    with rt.db.session() as session:
        for platform, domain in DEMO_SHOPS.items():
            repository.create_shop(session, rt.box, platform=platform, domain=domain,
                                   name=DEMO_NAMES[platform],
                                   settings={"widget": DEMO_WIDGETS[platform]})
    app = create_app(runtime=rt)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", rt
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()
    rt.close()


def _launcher(page, platform):
    return page.get_by_role("button", name=LAUNCHER[LOCALE[platform]], exact=True)


def _overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("width,height", VIEWPORTS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_launcher_visible_and_clear_of_checkout(demo, page, platform, width, height):
    base, _ = demo
    violations = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{base}/demo/{platform}")
    launcher = _launcher(page, platform)
    launcher.wait_for(state="visible")
    box = launcher.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    assert 0 <= box["y"] and box["y"] + box["height"] <= height
    bar = page.locator(CHECKOUT[platform])
    if bar.is_visible():  # phones: the theme's sticky checkout bar stays uncovered
        assert not _overlaps(box, bar.bounding_box())
    assert violations == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_opens_by_click_and_by_keyboard(demo, page, platform):
    base, _ = demo
    page.goto(f"{base}/demo/{platform}")
    launcher = _launcher(page, platform)
    launcher.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    launcher.focus()
    page.keyboard.press("Enter")
    dialog.wait_for(state="visible")


@pytest.mark.parametrize("width,height", VIEWPORTS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_axe_finds_no_violation_on_the_page_with_the_panel_open(demo, page, platform, width,
                                                                height):
    from axe_playwright_python.sync_playwright import Axe
    base, _ = demo
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{base}/demo/{platform}")
    _launcher(page, platform).click()
    page.get_by_role("dialog").wait_for(state="visible")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_complaint_gets_its_reference_and_lands_in_the_store(demo, page, platform):
    base, rt = demo
    w = words(platform)
    page.goto(f"{base}/demo/{platform}")
    _launcher(page, platform).click()
    page.get_by_role("button", name=w["problem"]).click()
    page.get_by_label(w["message"]).fill("<img src=x onerror=alert(1)> 배송이 늦어요")
    page.get_by_label(w["email_label"], exact=True).fill("shopper@example.com")
    consent = DEMO_WIDGETS[platform].get("consent_text", {}).get(LOCALE[platform])
    if consent:
        page.get_by_label(consent).check()
    page.get_by_role("button", name=w["send"]).click()
    reference = page.locator("ccms-widget .ref")
    reference.wait_for(timeout=15_000)  # the form token must be 3 s old
    number = reference.text_content()
    assert re.fullmatch(r"VOC-\d{4}-\d{6}", number)
    with rt.db.session() as session:
        item = session.scalar(select(VocItem).where(VocItem.reference == number))
        assert item.channel == "widget" and item.locale == LOCALE[platform]
        assert item.body == "<img src=x onerror=alert(1)> 배송이 늦어요"
    # and the shopper's view of it, through the widget API's "my requests"
    answer = page.request.post(f"{base}/widget/v1/{_key(rt, platform)}/requests/lookup",
                               data={"reference": number, "contact": "shopper@example.com"},
                               headers={"X-CCMS-Widget": "1"})
    assert answer.status == 200 and answer.json()["request"]["reference"] == number


def _key(rt, platform):
    from ccms_addon.demo import DEMO_SHOPS
    from ccms_addon.store.models import Shop
    with rt.db.session() as session:
        return session.scalar(select(Shop.widget_key).where(Shop.domain == DEMO_SHOPS[platform]))
