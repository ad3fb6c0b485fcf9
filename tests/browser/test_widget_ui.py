"""The contact widget in a real browser (Debian's Chromium, headless): the launcher is visible on
every viewport, opens by mouse and keyboard, traps and returns focus, speaks the page's language,
survives hostile pages and a strict CSP, passes axe-core, writes no storage, shifts no layout."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from ccms_addon.store.models import VocItem
from tests.browser.conftest import CHROMIUM, WIDGET_SETTINGS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")

VIEWPORTS = [(375, 667), (1366, 768)]

#: what the page and its scripts see of the widget: the host and the focused element inside
FOCUS_IN_DIALOG = """() => {
  const host = document.querySelector('ccms-widget');
  const inner = host && host.shadowRoot.activeElement;
  return document.activeElement === host && !!inner && !!inner.closest('dialog');
}"""
FOCUS_ON_LAUNCHER = """() => {
  const host = document.querySelector('ccms-widget');
  const inner = host && host.shadowRoot.activeElement;
  return document.activeElement === host && !!inner
    && inner.getAttribute('aria-haspopup') === 'dialog';
}"""
#: counts layout shifts from the first paint on (the widget must cause none)
CLS_OBSERVER = """
window.__cls = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__cls += entry.value;
}).observe({type: 'layout-shift', buffered: true});
"""
#: records every CSP violation the page reports
CSP_LISTENER = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  const seen = event.violatedDirective + ' ' + event.blockedURI;
  window.__violations[window.__violations.length] = seen;
}, true);
"""


def host_url(live_server, key, *, lang="en", variant="plain"):
    return f"{live_server.url}/test-host/page?key={key}&lang={lang}&variant={variant}"


def launcher(page, name="Contact us"):
    return page.get_by_role("button", name=name, exact=True)


def wait_for_panel_loaded(page):
    """The panel module is fetched when the browser is idle; wait until it has been."""
    page.wait_for_function("() => performance.getEntriesByType('resource')"
                           ".some((e) => /panel\\.[0-9a-f]+\\.js$/.test(e.name))")


def open_panel(page, name="Contact us"):
    launcher(page, name).click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible")
    return dialog


def set_widget(runtime, key, **changes):
    """Change the test shop's widget settings (as the merchant API would)."""
    from ccms_addon.store.models import Shop
    with runtime.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.widget_key == key))
        shop.settings = {"widget": {**WIDGET_SETTINGS, **changes}}


# --------------------------------------------------------------------------------------------------
# Visible, opens, focus
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_launcher_visible_inside_viewport_and_on_top(live_server, shop_key, page, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(host_url(live_server, shop_key))
    button = launcher(page)
    button.wait_for(state="visible")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
    assert box["width"] >= 48 and box["height"] >= 48  # WCAG 2.2 target size, with room to spare
    # nothing of the page covers it: the topmost element at its centre is the widget's host
    top = page.evaluate("([x, y]) => document.elementFromPoint(x, y).tagName",
                        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert top == "CCMS-WIDGET"


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_opens_by_click_as_sheet_on_mobile_and_card_on_desktop(live_server, shop_key, page,
                                                               width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(host_url(live_server, shop_key))
    dialog = open_panel(page)
    assert dialog.get_attribute("aria-modal") == "true"
    assert page.get_by_role("heading", name="Contact Test Shop").is_visible()
    assert launcher(page).get_attribute("aria-expanded") == "true"
    box = dialog.bounding_box()
    if width < 640:  # a full-height sheet
        assert box["width"] == pytest.approx(width, abs=1)
        assert box["height"] == pytest.approx(height, abs=1)
    else:  # a card that leaves the launcher visible
        assert box["width"] <= 420 and box["y"] + box["height"] <= height
    call = page.get_by_role("link", name="Call +82 2-1234-5678")
    assert call.get_attribute("href") == "tel:+82212345678"
    kakao = page.get_by_role("link", name=re.compile("KakaoTalk"))
    assert kakao.get_attribute("target") == "_blank"


def test_keyboard_opens_traps_focus_and_escape_returns_it(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    launcher(page).wait_for(state="visible")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUS_ON_LAUNCHER):
            break
    assert page.evaluate(FOCUS_ON_LAUNCHER), "Tab never reached the launcher"
    page.keyboard.press("Enter")
    page.get_by_role("dialog").wait_for(state="visible")
    assert page.evaluate(FOCUS_IN_DIALOG)
    for key in ["Tab"] * 25 + ["Shift+Tab"] * 25:
        page.keyboard.press(key)
        assert page.evaluate(FOCUS_IN_DIALOG), f"focus left the dialog after {key}"
    # the same inside the longest view, the message form
    page.get_by_role("button", name="I have a problem").click()
    for key in ["Tab"] * 30 + ["Shift+Tab"] * 30:
        page.keyboard.press(key)
        assert page.evaluate(FOCUS_IN_DIALOG), f"focus left the message form after {key}"
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="hidden")
    assert page.evaluate(FOCUS_ON_LAUNCHER)
    # set when the closing transition ends: waited for, not read at once
    expect(launcher(page)).to_have_attribute("aria-expanded", "false", timeout=2000)


def test_page_api_opens_the_form_prefilled(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    launcher(page).wait_for(state="visible")
    page.evaluate("() => window.ccms.open("
                  "{kind: 'suggestion', order: '1001', text: 'Add a blue one'})")
    page.get_by_role("dialog").wait_for(state="visible")
    assert page.get_by_label("Your message").input_value() == "Add a blue one"
    assert page.get_by_label("Order number (optional)").input_value() == "1001"
    assert page.get_by_label("An idea").is_checked()
    page.evaluate("() => window.ccms.close()")
    page.get_by_role("dialog").wait_for(state="hidden")


# --------------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------------


def test_korean_from_html_lang(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key, lang="ko"))
    dialog = open_panel(page, "고객센터 문의")
    assert page.get_by_role("heading", name="상담원과 연결").is_visible()
    assert dialog.get_by_role("button", name="문제가 있어요").is_visible()
    assert dialog.get_by_role("button", name="닫기").is_visible()


def test_browser_language_when_the_page_has_none_we_speak(live_server, shop_key, browser):
    context = browser.new_context(locale="ja-JP")
    try:
        page = context.new_page()
        page.goto(host_url(live_server, shop_key, lang="fr"))
        open_panel(page, "お問い合わせ")
        assert page.get_by_role("heading", name="担当者に相談する").is_visible()
    finally:
        context.close()


def test_shop_default_when_neither_page_nor_browser_matches(live_server, shop_key, runtime,
                                                            browser):
    set_widget(runtime, shop_key, default_locale="ko")
    context = browser.new_context(locale="fr-FR")
    try:
        page = context.new_page()
        page.goto(host_url(live_server, shop_key, lang="fr"))
        launcher(page, "고객센터 문의").wait_for(state="visible")
    finally:
        context.close()


# --------------------------------------------------------------------------------------------------
# Hostile pages and a strict CSP
# --------------------------------------------------------------------------------------------------


def test_hostile_css_and_sabotaged_globals_do_not_break_it(live_server, shop_key, page):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(host_url(live_server, shop_key, variant="hostile"))
    button = launcher(page)
    button.wait_for(state="visible")
    assert button.bounding_box()["width"] == 56  # our own size, whatever the page's * rules say
    # (page.evaluate itself needs Array.prototype: only locators work on this page)
    assert page.locator("html[data-sabotaged]").count() == 1, "the sabotage did not run"
    open_panel(page)
    page.get_by_role("button", name="I have a problem").click()
    assert page.get_by_label("Topic (optional)").locator("option").count() == 3
    assert page.get_by_label("Your message").is_visible()
    page.get_by_role("button", name="Back").click()
    page.get_by_role("button", name="Where is my order?").click()
    assert page.get_by_label("Order number", exact=True).is_visible()
    assert errors == []


def test_strict_csp_runs_it_without_violations(live_server, shop_key, page):
    page.add_init_script(CSP_LISTENER)
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(host_url(live_server, shop_key, variant="csp"))
    dialog = open_panel(page)
    # the panel's adopted stylesheet applied: a white panel, a 48px close button
    assert dialog.evaluate("(d) => getComputedStyle(d).backgroundColor") == "rgb(255, 255, 255)"
    assert dialog.get_by_role("button", name="Close").bounding_box()["height"] == \
        pytest.approx(48, abs=0.5)  # read while the panel may still be easing in
    colour = launcher(page).evaluate("(b) => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(31, 79, 209)"  # the default #1f4fd1
    assert page.evaluate("() => window.__violations") == []
    assert not [text for text in console if "Content Security Policy" in text], console


# --------------------------------------------------------------------------------------------------
# Accessibility, privacy, layout
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_axe_reports_no_violations_with_the_panel_open(live_server, shop_key, page, width, height):
    from axe_playwright_python.sync_playwright import Axe
    axe = Axe()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(host_url(live_server, shop_key))
    open_panel(page)
    results = axe.run(page)
    assert results.violations_count == 0, f"home:\n{results.generate_report()}"
    for view in ("I have a problem", "Where is my order?", "My requests"):
        page.get_by_role("button", name=view).click()
        results = axe.run(page)
        assert results.violations_count == 0, f"{view}:\n{results.generate_report()}"
        page.get_by_role("button", name="Back").click()
    page.get_by_role("button", name="Where is my order?").click()
    # with field errors shown
    page.get_by_role("button", name="Find my order").click()
    page.get_by_text("Please fill this in.").first.wait_for()
    results = axe.run(page)
    assert results.violations_count == 0, results.generate_report()


def test_no_cookie_or_storage_before_or_after_interaction(live_server, shop_key, page, context):
    storage = """async () => ({
      cookie: document.cookie, local: localStorage.length, session: sessionStorage.length,
      idb: (await indexedDB.databases()).length, caches: (await caches.keys()).length})"""
    empty = {"cookie": "", "local": 0, "session": 0, "idb": 0, "caches": 0}
    page.goto(host_url(live_server, shop_key))
    launcher(page).wait_for(state="visible")
    wait_for_panel_loaded(page)
    assert page.evaluate(storage) == empty
    assert context.cookies() == []
    open_panel(page)
    page.get_by_role("button", name="My requests").click()
    assert page.evaluate(storage) == empty
    assert context.cookies() == []


@pytest.mark.parametrize("top_bar", [False, True])
def test_no_layout_shift(live_server, shop_key, runtime, page, top_bar):
    set_widget(runtime, shop_key, top_bar=top_bar)
    page.add_init_script(CLS_OBSERVER)
    page.route("**/widget/v1/loader.js", lambda route: route.abort())
    page.goto(host_url(live_server, shop_key))
    h1_top = page.evaluate("() => document.querySelector('h1').getBoundingClientRect().top")
    page.unroute("**/widget/v1/loader.js")
    page.goto(host_url(live_server, shop_key))
    launcher(page).wait_for(state="visible")
    wait_for_panel_loaded(page)
    if top_bar:  # the bar overlays the page: phone, then the hours line once the panel loaded
        page.get_by_role("link", name="+82 2-1234-5678").wait_for(state="visible")
        page.wait_for_function("() => /until|We open|Closed/.test(document"
                               ".querySelector('ccms-widget').shadowRoot.querySelector('span')"
                               ".textContent)")
    # the page's content stays where it was before the widget came
    assert page.evaluate("() => document.querySelector('h1').getBoundingClientRect().top") == h1_top
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__cls") == 0


# --------------------------------------------------------------------------------------------------
# Opening hours
# --------------------------------------------------------------------------------------------------


def test_closed_shop_says_when_it_opens_and_still_takes_the_message(live_server, shop_key,
                                                                    runtime, page):
    seoul = datetime.now(ZoneInfo("Asia/Seoul")).date()
    holidays = [(seoul + timedelta(days=n)).isoformat() for n in (-1, 0, 1)]  # any clock skew
    set_widget(runtime, shop_key, hours={"timezone": "Asia/Seoul", "holidays": holidays,
                                         "weekly": {"mon": [["09:00", "18:00"]],
                                                    "tue": [["09:00", "18:00"]],
                                                    "wed": [["09:00", "18:00"]],
                                                    "thu": [["09:00", "18:00"]],
                                                    "fri": [["09:00", "18:00"]],
                                                    "sat": [["09:00", "18:00"]],
                                                    "sun": [["09:00", "18:00"]]}})
    page.goto(host_url(live_server, shop_key))
    open_panel(page)
    hours = page.get_by_text(re.compile(r"^Closed now\. We open .* \(your time\)$"))
    assert hours.is_visible()
    # 09:00 in Seoul two days on, shown in the browser's zone (Paris)
    opens = datetime.combine(seoul + timedelta(days=2), time(9), ZoneInfo("Asia/Seoul"))
    local = opens.astimezone(ZoneInfo("Europe/Paris"))
    assert f"{local.hour % 12 or 12}:{local.minute:02d}" in hours.text_content()
    page.get_by_role("button", name="I have a question").click()
    assert page.get_by_text(re.compile("Leave us a message all the same")).is_visible()
    assert page.get_by_role("button", name="Send").is_enabled()


def test_hours_status_across_zones_and_dst(live_server, shop_key, page):
    """The panel module's hours computation, run in the browser against known instants."""
    page.goto(host_url(live_server, shop_key))
    wait_for_panel_loaded(page)
    url = page.evaluate("() => performance.getEntriesByType('resource')"
                        ".find((e) => /panel\\.[0-9a-f]+\\.js$/.test(e.name)).name")
    cases = page.evaluate("""async (url) => {
      const {hoursStatus} = await import(url);
      const weekly = {mon: [['09:00', '18:00']], tue: [['09:00', '18:00']],
                      sat: [['10:00', '12:00']]};
      const at = (iso) => Date.parse(iso);
      const iso = (status) => ({open: status.open,
        until: status.until && new Date(status.until).toISOString(),
        next: status.next && new Date(status.next).toISOString()});
      return {
        // Monday 10:00 in Seoul (UTC+9): open until 18:00 Seoul = 09:00Z
        openSeoul: iso(hoursStatus({timezone: 'Asia/Seoul', weekly}, at('2026-03-02T01:00:00Z'))),
        // Tuesday 19:00 in Seoul: next is Saturday 10:00 Seoul = 01:00Z
        closedSeoul: iso(hoursStatus({timezone: 'Asia/Seoul', weekly}, at('2026-03-03T10:00:00Z'))),
        // Saturday 2026-03-07 is a holiday: next is Monday 09:00
        holiday: iso(hoursStatus({timezone: 'Asia/Seoul', weekly, holidays: ['2026-03-07']},
                                 at('2026-03-03T10:00:00Z'))),
        // New York moves to DST on Sunday 2026-03-08: Monday 09:00 EDT = 13:00Z, not 14:00Z
        dst: iso(hoursStatus({timezone: 'America/New_York', weekly}, at('2026-03-07T18:00:00Z'))),
        none: hoursStatus({timezone: 'UTC', weekly: {}}, at('2026-03-02T01:00:00Z')),
      };
    }""", url)
    assert cases["openSeoul"] == {"open": True, "until": "2026-03-02T09:00:00.000Z", "next": None}
    assert cases["closedSeoul"] == {"open": False, "until": None,
                                    "next": "2026-03-07T01:00:00.000Z"}
    assert cases["holiday"] == {"open": False, "until": None, "next": "2026-03-09T00:00:00.000Z"}
    assert cases["dst"] == {"open": False, "until": None, "next": "2026-03-09T13:00:00.000Z"}
    assert cases["none"] is None


# --------------------------------------------------------------------------------------------------
# End to end through the public API (widgets/views.py)
# --------------------------------------------------------------------------------------------------


def test_complaint_gets_a_reference_number_stored_in_the_api(live_server, shop_key, runtime, page):
    page.goto(host_url(live_server, shop_key))
    open_panel(page)
    page.get_by_role("button", name="I have a problem").click()
    page.get_by_role("button", name="Send").click()  # empty: errors next to the fields
    assert page.get_by_text("Please write your message.").is_visible()
    assert page.get_by_label("Your message").get_attribute("aria-invalid") == "true"
    page.get_by_label("Topic (optional)").select_option("delivery")
    page.get_by_label("Your message").fill("The parcel arrived torn. <b>not bold</b>")
    page.get_by_label("Order number (optional)").fill("1001")
    page.get_by_label("Email", exact=True).fill("buyer@example.com")
    page.get_by_label("I agree that the shop keeps my message to answer it.").check()
    page.get_by_role("button", name="Send").click()
    reference = page.locator("ccms-widget .ref")
    reference.wait_for(timeout=15_000)  # the form token must be 3 s old
    number = reference.text_content()
    assert re.fullmatch(r"VOC-\d{4}-\d+", number)
    assert page.get_by_role("status").filter(has_text="We answer within 24 hours").is_visible()
    with runtime.db.session() as session:
        item = session.scalar(select(VocItem).where(VocItem.reference == number))
        assert item is not None
        assert item.kind.value == "complaint" and item.channel == "widget"
        assert item.body == "The parcel arrived torn. <b>not bold</b>"
        assert item.category == "delivery" and item.contact_email == "buyer@example.com"
    # "My requests" finds it with the same contact
    page.get_by_role("button", name="Send another message").wait_for()
    page.get_by_role("button", name="Back").click()
    page.get_by_role("button", name="My requests").click()
    page.get_by_label("Reference number").fill(number)
    page.get_by_label("Email or phone you gave us").fill("buyer@example.com")
    page.get_by_role("button", name="Show the status").click()
    page.get_by_role("heading", name=number).wait_for()
    assert page.get_by_text("Received").first.is_visible()


def test_order_lookup_miss_is_neutral(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    open_panel(page)
    page.get_by_role("button", name="Where is my order?").click()
    page.get_by_label("Order number", exact=True).fill("9999")
    page.get_by_label("Email or phone used at checkout").fill("nobody@example.com")
    page.get_by_role("button", name="Find my order").click()
    page.get_by_text("We could not find an order with these details.", exact=False).wait_for()


def test_server_field_errors_and_rate_limit_are_shown(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    open_panel(page)
    page.get_by_role("button", name="I have a question").click()
    page.get_by_label("Your message").fill("Do you ship to Jeju?")
    page.get_by_label("Phone", exact=True).fill("12")  # the API, not the browser, refuses this one
    page.get_by_label("I agree that the shop keeps my message to answer it.").check()
    page.get_by_role("button", name="Send").click()
    error = page.get_by_text("Please enter a valid phone number.")
    error.wait_for(timeout=15_000)
    assert page.get_by_label("Phone", exact=True).get_attribute("aria-invalid") == "true"
    focused = "(input) => input === input.getRootNode().activeElement"
    assert page.get_by_label("Phone", exact=True).evaluate(focused)
    # a rate limit reads as a plain sentence with the wait in minutes
    page.route("**/voc", lambda route: route.fulfill(
        status=429, headers={"Retry-After": "120", "Access-Control-Allow-Origin": "*"},
        content_type="application/json",
        body='{"error": {"code": "rate_limited", "message": "Too many requests."}}'))
    page.get_by_label("Phone", exact=True).fill("+82 10-1234-5678")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("status").filter(has_text="Please try again in 2 minutes.").wait_for()


def test_key_from_the_script_url_as_shopify_and_cafe24_script_tags_send_it(live_server, shop_key,
                                                                           page):
    page.goto(host_url(live_server, shop_key, variant="scripttag"))
    launcher(page).wait_for(state="visible")
    launcher(page).click()
    page.get_by_role("dialog").wait_for(state="visible")
