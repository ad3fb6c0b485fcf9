"""Guarantee claims from the widget in a real browser (Debian's Chromium, headless): the shop's
free-return and buyback programs appear on the panel's home, each opens its terms and a claim form,
and a claim gets its reference at once and lands in the store — through the real ``POST claims``
(widgets/views.py), on an order that the programs enrolled when it was synced."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from ccms_addon.platforms import (CustomerRecord, FinancialStatus, FulfillmentStatus,
                                  OrderLineRecord, OrderRecord)
from ccms_addon.programs import service
from ccms_addon.programs.schemas import load_terms
from ccms_addon.store import repository
from ccms_addon.store.models import (Claim, ClaimStatus, Enrollment, ProgramKind, Shop, VocItem)
from tests.browser.conftest import CHROMIUM
from tests.browser.test_widget_ui import (FOCUS_IN_DIALOG, FOCUS_ON_LAUNCHER, VIEWPORTS,
                                          host_url, launcher, open_panel)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")

BUYER = "buyer@example.com"
FREE_RETURN = "365-day free returns"
BUYBACK = "Job-loss buyback"
FREE_RETURN_TERMS = {"window_days": 365, "conditions": ["Unused, in its original box"]}
BUYBACK_TERMS = {"window_months": 12, "qualifying_events": [{"code": "involuntary_job_loss"}],
                 "value_schedule": [{"until_month": 6, "percent": "80"},
                                    {"until_month": 12, "percent": "60"}],
                 "evidence_required": ["termination letter"]}
#: delivered ten days ago: inside both windows, and an event three days ago falls after delivery
DELIVERED = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=10)
EVENT_DAY = (date.today() - timedelta(days=3)).isoformat()
#: the Shopify-style order name the shopper types
ORDER = "#1001"


def _order() -> OrderRecord:
    return OrderRecord(
        platform_order_id="P1001", number=ORDER, currency="USD", total=Decimal("120.00"),
        updated_at=DELIVERED, placed_at=DELIVERED - timedelta(days=3),
        financial_status=FinancialStatus.PAID, fulfillment_status=FulfillmentStatus.FULFILLED,
        email=BUYER, customer_name="Kim Minsu",
        customer=CustomerRecord(platform_customer_id="C1001", email=BUYER, name="Kim Minsu"),
        lines=(OrderLineRecord("L1", "Travel bag", 1, Decimal("100.00"), sku="BAG-1",
                               product_id="101"),
               OrderLineRecord("L2", "Strap", 1, Decimal("20.00"), sku="STRAP-1",
                               product_id="202")),
        fulfilled_at=DELIVERED - timedelta(days=1), delivered_at=DELIVERED, locale="en-US",
        country_code="FR", accepts_marketing=False)


@pytest.fixture
def claim_shop(runtime, shop_key) -> str:
    """The test shop with a free-return and a buyback guarantee and one fulfilled order, stored
    the way the pipeline stores it and enrolled by the programs' own ``order_synced`` hook."""
    with runtime.db.session() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.widget_key == shop_key))
        service.create_program(session, shop_id, kind=ProgramKind.FREE_RETURN, name=FREE_RETURN,
                               terms=load_terms(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS),
                               actor="test")
        service.create_program(session, shop_id, kind=ProgramKind.BUYBACK, name=BUYBACK,
                               terms=load_terms(ProgramKind.BUYBACK, BUYBACK_TERMS), actor="test")
    with runtime.db.session() as session:
        changes = repository.upsert_orders(session, shop_id, [_order()])
    for change in changes:
        runtime.pm.hook.order_synced(shop_id=shop_id, order_id=change.order_id,
                                     platform_order_id=change.platform_order_id,
                                     created=change.created)
    with runtime.db.session() as session:
        enrolled = session.scalars(select(Enrollment).where(Enrollment.shop_id == shop_id)).all()
        assert len(enrolled) == 2, "the order should be enrolled in both guarantees"
    return shop_key


def _claim_of(runtime, reference: str) -> tuple[Claim, VocItem]:
    with runtime.db.session() as session:
        item = session.scalar(select(VocItem).where(VocItem.reference == reference))
        assert item is not None, f"no VOC item {reference}"
        claim = session.scalar(select(Claim).where(Claim.voc_item_id == item.id))
        assert claim is not None, f"no claim row for {reference}"
        session.expunge_all()
        return claim, item


def _claims(runtime) -> int:
    with runtime.db.session() as session:
        return len(session.scalars(select(Claim)).all())


def _focused(page) -> str:
    """The accessible text of what has focus inside the widget (its label or its own text)."""
    return page.evaluate("""() => {
      const active = document.querySelector('ccms-widget').shadowRoot.activeElement;
      if (!active) return '';
      const label = active.id && active.getRootNode().querySelector('label[for="' + active.id + '"]');
      return (label ? label.textContent : active.textContent || '').trim();
    }""")


def _tab_to(page, name: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused(page) == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def _open_by_keyboard(page) -> None:
    launcher(page).wait_for(state="visible")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUS_ON_LAUNCHER):
            break
    assert page.evaluate(FOCUS_ON_LAUNCHER), "Tab never reached the launcher"
    page.keyboard.press("Enter")
    page.get_by_role("dialog").wait_for(state="visible")
    assert page.evaluate(FOCUS_IN_DIALOG)


def _reference(page) -> str:
    reference = page.locator("ccms-widget .ref")
    reference.wait_for(timeout=15_000)  # the form token must be 3 s old
    number = reference.text_content()
    assert re.fullmatch(r"VOC-\d{4}-\d{6}", number), number
    return number


# --------------------------------------------------------------------------------------------------
# The entries on the home view
# --------------------------------------------------------------------------------------------------


def test_no_guarantee_no_entry(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    dialog = open_panel(page)
    dialog.get_by_role("button", name="My requests").wait_for()
    assert dialog.get_by_role("heading", name="Our guarantees").count() == 0
    assert dialog.get_by_role("button", name=FREE_RETURN).count() == 0


def test_home_lists_each_guarantee_with_its_terms(live_server, claim_shop, page):
    page.goto(host_url(live_server, claim_shop))
    dialog = open_panel(page)
    assert dialog.get_by_role("heading", name="Our guarantees").is_visible()
    dialog.get_by_role("button", name=FREE_RETURN).click()
    view = dialog.get_by_role("region", name=FREE_RETURN)
    assert view.get_by_role("heading", name=FREE_RETURN).is_visible()
    assert view.get_by_text("Return it free of charge within 365 days of delivery.").is_visible()
    assert view.get_by_text("Unused, in its original box").is_visible()
    assert view.get_by_text("A person at the shop reads every claim").is_visible()
    assert view.get_by_label("I confirm the item meets the conditions above.").is_visible()
    view.get_by_role("button", name="Back").click()
    dialog.get_by_role("button", name=BUYBACK).click()
    view = dialog.get_by_role("region", name=BUYBACK)
    assert view.get_by_text("within 12 months of delivery, the shop buys the product back").is_visible()
    # the event in the shopper's language (the built-in label), the evidence asked for
    assert view.get_by_role("listitem").filter(
        has_text="I lost my job (not by my choice)").is_visible()
    assert view.get_by_text("termination letter").is_visible()
    options = view.get_by_label("What happened?").locator("option").all_text_contents()
    assert options == ["Choose one", "I lost my job (not by my choice)"]


def test_korean_page_gets_korean_terms_and_event_labels(live_server, claim_shop, page):
    page.goto(host_url(live_server, claim_shop, lang="ko"))
    dialog = open_panel(page, "고객센터 문의")
    assert dialog.get_by_role("heading", name="보장 서비스").is_visible()
    dialog.get_by_role("button", name=BUYBACK).click()
    assert dialog.get_by_text("배송 완료 후 12개월 안에").is_visible()
    options = dialog.get_by_label("어떤 일이 있었나요?").locator("option").all_text_contents()
    assert options[0] == "선택하세요" and len(options) == 2 and options[1] != "involuntary_job_loss"


# --------------------------------------------------------------------------------------------------
# Claims end to end through POST claims
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_free_return_claimed_by_keyboard(live_server, claim_shop, runtime, page, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(host_url(live_server, claim_shop))
    _open_by_keyboard(page)
    _tab_to(page, FREE_RETURN)
    page.keyboard.press("Enter")
    view = page.get_by_role("region", name=FREE_RETURN)
    view.get_by_role("heading", name=FREE_RETURN).wait_for()
    # empty: the errors next to the fields, focus on the first
    _tab_to(page, "Send my claim")
    page.keyboard.press("Enter")
    number = view.get_by_label("Order number", exact=True)
    assert number.get_attribute("aria-invalid") == "true"
    assert view.get_by_text("Please write your message.").is_visible()
    assert number.evaluate("(input) => input === input.getRootNode().activeElement")
    page.keyboard.type(ORDER)
    page.keyboard.press("Tab")
    page.keyboard.type(BUYER)
    page.keyboard.press("Tab")
    assert _focused(page) == "I confirm the item meets the conditions above."
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.type("The bag is too small. <b>not bold</b>")
    _tab_to(page, "Send my claim")
    page.keyboard.press("Enter")
    reference = _reference(page)
    status = page.get_by_role("status").filter(has_text=reference)
    assert status.get_by_text("Thank you. We have your claim.").is_visible()
    assert status.get_by_text("the shop will confirm the next steps").is_visible()
    assert status.get_by_text("We answer within 24 hours").is_visible()
    # focus moved to the receipt, which the live region announces; the form is gone
    assert page.evaluate(FOCUS_IN_DIALOG)
    assert _focused(page) == "Thank you. We have your claim."
    assert view.get_by_label("Order number", exact=True).is_hidden()
    claim, item = _claim_of(runtime, reference)
    assert claim.status is ClaimStatus.PENDING, claim.eligibility
    assert claim.program_kind is ProgramKind.FREE_RETURN and claim.eligibility["eligible"] is True
    assert item.kind.value == "claim" and item.channel == "widget"
    assert item.body == "The bag is too small. <b>not bold</b>"
    assert item.locale == "en"


def test_buyback_with_its_event_and_date(live_server, claim_shop, runtime, page):
    page.goto(host_url(live_server, claim_shop))
    dialog = open_panel(page)
    dialog.get_by_role("button", name=BUYBACK).click()
    view = dialog.get_by_role("region", name=BUYBACK)
    view.get_by_label("Order number", exact=True).fill("1001")  # without Shopify's "#"
    view.get_by_label("Email or phone used at checkout").fill(BUYER.upper())
    view.get_by_label("Your message").fill("I was laid off last week.")
    view.get_by_role("button", name="Send my claim").click()  # no event, no date
    assert view.get_by_text("Please choose what happened.").is_visible()
    assert view.get_by_text("Please give the date it happened (today or earlier).").is_visible()
    assert view.get_by_label("What happened?").get_attribute("aria-invalid") == "true"
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    view.get_by_label("What happened?").select_option("involuntary_job_loss")
    view.get_by_label("When did it happen?").fill(tomorrow)
    view.get_by_role("button", name="Send my claim").click()  # a date to come is refused here
    assert view.get_by_label("When did it happen?").get_attribute("aria-invalid") == "true"
    view.get_by_label("When did it happen?").fill(EVENT_DAY)
    view.get_by_label("Your proof (optional)").fill("Termination letter dated last Monday")
    view.get_by_role("button", name="Send my claim").click()
    reference = _reference(page)
    assert page.get_by_role("status").get_by_text(
        "the shop will confirm the next steps").is_visible()
    claim, _ = _claim_of(runtime, reference)
    assert claim.status is ClaimStatus.PENDING, claim.eligibility
    assert claim.program_kind is ProgramKind.BUYBACK and claim.event == "involuntary_job_loss"
    assert claim.event_date.date().isoformat() == EVENT_DAY
    assert claim.evidence == {"text": "Termination letter dated last Monday"}


def test_outside_the_terms_is_recorded_and_says_a_person_looks(live_server, claim_shop, runtime,
                                                               page):
    page.goto(host_url(live_server, claim_shop))
    open_panel(page)
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'free_return', order: '#1001'})")
    view = page.get_by_role("region", name=FREE_RETURN)
    view.get_by_label("Email or phone used at checkout").fill(BUYER)
    view.get_by_label("Your message").fill("Worn once, but it does not fit.")
    view.get_by_role("button", name="Send my claim").click()  # conditions not confirmed
    reference = _reference(page)
    status = page.get_by_role("status").filter(has_text=reference)
    assert status.get_by_text("a person at the shop will still look at it").is_visible()
    assert status.get_by_role("listitem").all_text_contents() == [
        "The conditions were not confirmed."]
    claim, _ = _claim_of(runtime, reference)
    assert claim.status is ClaimStatus.INELIGIBLE
    assert claim.eligibility["reasons"] == ["conditions_not_accepted"]
    # opening the guarantee again gives a fresh form
    view.get_by_role("button", name="Back").click()
    page.get_by_role("button", name=FREE_RETURN).click()
    assert view.get_by_label("Order number", exact=True).input_value() == ""
    assert page.get_by_role("status").filter(has_text=reference).count() == 0


def test_wrong_contact_reads_as_the_order_lookup_miss(live_server, claim_shop, runtime, page):
    page.goto(host_url(live_server, claim_shop))
    dialog = open_panel(page)
    dialog.get_by_role("button", name=FREE_RETURN).click()
    view = dialog.get_by_role("region", name=FREE_RETURN)
    view.get_by_label("Order number", exact=True).fill(ORDER)
    view.get_by_label("Email or phone used at checkout").fill("someone@else.example")
    view.get_by_label("I confirm the item meets the conditions above.").check()
    view.get_by_label("Your message").fill("Too small.")
    view.get_by_role("button", name="Send my claim").click()
    miss = page.get_by_role("status").filter(
        has_text="We could not find an order with these details.")
    miss.wait_for(timeout=15_000)
    assert view.get_by_label("Order number", exact=True).is_visible()  # the form stays to retry
    assert view.get_by_label("Order number", exact=True).input_value() == ORDER
    assert _claims(runtime) == 0


def test_server_field_errors_and_rate_limit_are_shown(live_server, claim_shop, page):
    page.goto(host_url(live_server, claim_shop))
    open_panel(page)
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'buyback', order: '#1001'})")
    view = page.get_by_role("region", name=BUYBACK)
    view.get_by_label("Email or phone used at checkout").fill(BUYER)
    view.get_by_label("What happened?").select_option("involuntary_job_loss")
    view.get_by_label("When did it happen?").fill(EVENT_DAY)
    view.get_by_label("Your message").fill("Laid off.")
    answers = [
        (422, {}, '{"error": {"code": "validation_error", "message": "Some fields are not valid.",'
                  ' "fields": {"json": {"event_date": ["Not a valid date."],'
                  ' "evidence": ["Longer than maximum length 5000."]}}}}'),
        (429, {"Retry-After": "120"},
         '{"error": {"code": "rate_limited", "message": "Too many requests."}}'),
    ]

    def answer(route):
        status, headers, body = answers.pop(0)
        route.fulfill(status=status, headers={"Access-Control-Allow-Origin": "*", **headers},
                      content_type="application/json", body=body)

    page.route("**/claims", answer)
    view.get_by_role("button", name="Send my claim").click()
    date_error = view.get_by_text("Please give the date it happened (today or earlier).")
    date_error.wait_for(timeout=15_000)
    assert view.get_by_text("Please shorten this text (up to 5,000 characters).").is_visible()
    when = view.get_by_label("When did it happen?")
    assert when.get_attribute("aria-invalid") == "true"
    assert when.evaluate("(input) => input === input.getRootNode().activeElement")
    assert "err" in when.get_attribute("aria-describedby")
    view.get_by_role("button", name="Send my claim").click()
    page.get_by_role("status").filter(has_text="Please try again in 2 minutes.").wait_for()
    assert answers == []


# --------------------------------------------------------------------------------------------------
# The page's API, accessibility
# --------------------------------------------------------------------------------------------------


def test_page_api_opens_a_claim_prefilled(live_server, claim_shop, page):
    page.goto(host_url(live_server, claim_shop))
    launcher(page).wait_for(state="visible")
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'buyback', order: '#1001',"
                  " text: 'Laid off in May'})")
    page.get_by_role("dialog").wait_for(state="visible")
    view = page.get_by_role("region", name=BUYBACK)
    assert view.get_by_role("heading", name=BUYBACK).is_visible()
    assert page.evaluate(FOCUS_IN_DIALOG)
    assert view.get_by_label("Order number", exact=True).input_value() == "#1001"
    assert view.get_by_label("Your message").input_value() == "Laid off in May"
    assert launcher(page).get_attribute("aria-expanded") == "true"
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'free_return', order: '1002'})")
    view = page.get_by_role("region", name=FREE_RETURN)
    assert view.get_by_label("Order number", exact=True).input_value() == "1002"
    assert page.get_by_role("region", name=BUYBACK).is_hidden()
    # no program named: the shop's first guarantee
    page.evaluate("() => window.ccms.close()")
    page.evaluate("() => window.ccms.open({kind: 'claim'})")
    assert view.get_by_role("heading", name=FREE_RETURN).is_visible()
    assert view.get_by_label("Order number", exact=True).input_value() == "1002"
    # a program the shop does not run: the home view, not a form for another guarantee
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'lifetime_warranty'})")
    page.get_by_role("heading", name="Talk to a person").wait_for()
    assert view.is_hidden()


def test_page_api_claim_without_programs_shows_home(live_server, shop_key, page):
    page.goto(host_url(live_server, shop_key))
    launcher(page).wait_for(state="visible")
    page.evaluate("() => window.ccms.open({kind: 'claim', program: 'free_return'})")
    page.get_by_role("heading", name="Talk to a person").wait_for()


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_axe_reports_no_violations_on_the_claim_forms(live_server, claim_shop, page, width,
                                                      height):
    from axe_playwright_python.sync_playwright import Axe
    axe = Axe()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(host_url(live_server, claim_shop))
    dialog = open_panel(page)
    results = axe.run(page)
    assert results.violations_count == 0, f"home:\n{results.generate_report()}"
    for name in (FREE_RETURN, BUYBACK):
        dialog.get_by_role("button", name=name).click()
        results = axe.run(page)
        assert results.violations_count == 0, f"{name}:\n{results.generate_report()}"
        # with the field errors shown
        view = dialog.get_by_role("region", name=name)
        view.get_by_role("button", name="Send my claim").click()
        view.get_by_text("Please fill this in.").first.wait_for()
        results = axe.run(page)
        assert results.violations_count == 0, f"{name}, errors:\n{results.generate_report()}"
        view.get_by_role("button", name="Back").click()


def test_focus_stays_in_the_claim_form(live_server, claim_shop, page):
    page.goto(host_url(live_server, claim_shop))
    _open_by_keyboard(page)
    _tab_to(page, BUYBACK)
    page.keyboard.press("Enter")
    for key in ["Tab"] * 20 + ["Shift+Tab"] * 20:
        page.keyboard.press(key)
        assert page.evaluate(FOCUS_IN_DIALOG), f"focus left the claim form after {key}"
