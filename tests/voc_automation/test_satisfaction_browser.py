"""The satisfaction page in a real Chromium: answered with script turned off, and a hostile
comment shown back without ever running."""

from __future__ import annotations

from ccms_addon.store.models import VocItem
from tests.voc_automation.conftest import XSS


def stored(runtime, item_id) -> VocItem:
    with runtime.db.session() as session:
        return session.get(VocItem, item_id)


def test_answering_without_script_and_the_comment_stays_inert(browser, live_server, runtime,
                                                              link):
    item, path = link
    url = live_server.url + path

    no_script = browser.new_context(java_script_enabled=False, locale="ko-KR")
    try:
        page = no_script.new_page()
        page.set_default_timeout(10_000)
        page.goto(url)
        page.fill("#comment", XSS)
        page.get_by_role("button", name="5 · 매우 만족").click()
        page.wait_for_selector("blockquote.comment")
        assert page.inner_text("h1") == "응답해 주셔서 감사합니다"
        assert page.inner_text("blockquote.comment") == XSS
    finally:
        no_script.close()
    assert (stored(runtime, item.id).satisfaction, stored(runtime, item.id).satisfaction_comment) \
        == (5, XSS)

    with_script = browser.new_context(locale="ko-KR")
    try:
        page = with_script.new_page()
        page.set_default_timeout(10_000)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url)
        assert page.input_value("#comment") == XSS  # the stored comment, as text in the box
        assert page.locator("img").count() == 0 and page.locator("script").count() == 0
        assert page.get_attribute("button[value='5']", "aria-pressed") == "true"
        page.get_by_role("button", name="2 · 불만족").click()
        page.wait_for_selector("blockquote.comment")
        assert page.inner_text("blockquote.comment") == XSS
        assert page.locator("img").count() == 0
        assert dialogs == []
    finally:
        with_script.close()
    assert stored(runtime, item.id).satisfaction == 2
