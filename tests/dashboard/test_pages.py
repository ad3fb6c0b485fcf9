"""Every page renders for the roles that may see it (and 403 for the others), in every language;
the catalogs are complete; the templates never mark text safe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ccms_addon.dashboard import i18n
from ccms_addon.platforms import FinancialStatus, FulfillmentStatus
from ccms_addon.store.models import StaffRole, VocKind, VocSeverity, VocStatus
from ccms_addon.voc.lifecycle import CLOSE_WITHOUT_RESPONSE
from ccms_addon.voc.service import VocDesk
from tests.dashboard.conftest import new_item

DASHBOARD = Path(__file__).parents[2] / "ccms_addon" / "dashboard"
TEMPLATES = DASHBOARD / "templates" / "dashboard"


@pytest.fixture
def pages(runtime, team):
    """The dashboard's pages with something on them: an item with a reply and a closed one."""
    open_item = new_item(runtime, team.shop_ids[0], subject="Late", body="The parcel is late")
    closed = new_item(runtime, team.shop_ids[1], body="Lovely shop", kind=VocKind.PRAISE)
    desk = VocDesk(runtime)
    desk.reply(team.shop_ids, closed.id, "staff:1:x", "Thank you!")
    desk.close(team.shop_ids, closed.id, "staff:1:x")
    return {
        "/dashboard/inbox": "read", f"/dashboard/items/{open_item.id}": "read",
        f"/dashboard/items/{closed.id}": "read", "/dashboard/board": "report",
        "/dashboard/reports": "report", "/dashboard/settings": "admin",
        f"/dashboard/settings/{team.shop_ids[0]}/widget": "admin",
        f"/dashboard/settings/{team.shop_ids[1]}/voc": "admin", "/dashboard/staff": "admin"}


ALLOWED = {"viewer": {"read", "report"}, "agent": {"read"}, "manager": {"read", "report"},
           "owner": {"read", "report", "admin"}}


@pytest.mark.parametrize("role", ["viewer", "agent", "manager", "owner"])
def test_every_page_for_every_role(signed_in, pages, role):
    board = signed_in(role)
    for path, permission in pages.items():
        answer = board.get(path)
        expected = 200 if permission in ALLOWED[role] else 403
        assert answer.status_code == expected, (role, path, answer.status_code)
        html = answer.get_data(as_text=True)
        assert "{{" not in html and "{%" not in html
        if expected == 200:
            assert 'name="csrf_token"' in html  # every page has the language switcher at least
        else:
            assert "Your role does not allow this page." in html


@pytest.mark.parametrize("locale, word", [("ko", "접수함"), ("ja", "受付箱"), ("en", "Inbox")])
def test_every_page_in_every_language(runtime, signed_in, pages, team, locale, word):
    from ccms_addon.store.models import Staff
    with runtime.db.session() as s:
        s.get(Staff, team.owner).locale = locale
    board = signed_in("owner")
    for path in pages:
        answer = board.get(path)
        assert answer.status_code == 200, path
        html = answer.get_data(as_text=True)
        assert f'<html lang="{locale}">' in html and word in html
        # no catalog key shown in place of words
        assert not re.search(r">\s*(inbox|item|board|settings|staff|reports|nav)\.[a-z_.]+\s*<",
                             html), path


def test_a_viewer_reads_but_changes_nothing(runtime, signed_in, team):
    item = new_item(runtime, team.shop_ids[0])
    viewer = signed_in("viewer")
    page = viewer.get(f"/dashboard/items/{item.id}").get_data(as_text=True)
    assert item.body in page and 'action="/dashboard/items/' not in page
    assert 'name="item_ids"' not in viewer.get("/dashboard/inbox").get_data(as_text=True)
    assert viewer.post(f"/dashboard/items/{item.id}/note", {"text": "x"}).status_code == 403
    assert viewer.post("/dashboard/inbox/bulk", {"action": "acknowledge",
                                                 "item_ids": str(item.id)}).status_code == 403
    assert viewer.get("/dashboard/board").status_code == 200


def test_navigation_shows_what_the_role_may_open(signed_in, team):
    agent = signed_in("agent").get("/dashboard/inbox").get_data(as_text=True)
    owner = signed_in("owner").get("/dashboard/inbox").get_data(as_text=True)
    assert "/dashboard/board" not in agent and "/dashboard/staff" not in agent
    assert "/dashboard/board" in owner and "/dashboard/staff" in owner


def test_the_catalogs_have_the_same_keys_and_every_key_used():
    catalogs = {locale: json.loads((DASHBOARD / "i18n" / f"{locale}.json").read_text("utf-8"))
                for locale in i18n.LOCALES}
    plural = re.compile(r"^(.+)\.(zero|one|two|few|many|other)$")

    def base(key: str, catalog) -> str:  # a plural form is a language's own: ko and ja have none
        found = plural.match(key)
        return found.group(1) if found and found.group(1) in catalog else key

    keys = {k for k in catalogs["en"] if base(k, catalogs["en"]) == k}
    for locale, catalog in catalogs.items():
        assert {k for k in catalog if base(k, catalog) == k} == keys, locale
        assert all(isinstance(text, str) and text.strip() for text in catalog.values()), locale
        for key, text in catalog.items():  # the same placeholders in every language and form
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(
                r"{(\w+)}", catalogs["en"][base(key, catalog)])), key
            if base(key, catalog) != key:
                assert "count" in re.findall(r"{(\w+)}", text), key
    en, ko = i18n.Translator("en"), i18n.Translator("ko")
    assert [en("inbox.count", count=n) for n in (0, 1, 2)] == ["0 items", "1 item", "2 items"]
    assert en("inbox.count", count="1,000+") == "1,000+ items" and ko("inbox.count", count=1) == "1건"
    used = set()
    sources = list(TEMPLATES.glob("*.html")) + list(DASHBOARD.glob("*.py"))
    for path in sources:
        text = path.read_text("utf-8")
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.\-]+)["']\s*[,)]""", text))
        used |= set(re.findall(r"""["'](form\.error\.[a-z_]+)["']""", text))
    missing = used - keys
    assert not missing, missing
    # the keys built from values: every value has its words
    built = ([f"status.{s.value}" for s in VocStatus] + [f"kind.{k.value}" for k in VocKind]
             + [f"severity.{s.value}" for s in VocSeverity] + [f"role.{r.value}" for r in StaffRole]
             + [f"resolution.{r}" for r in CLOSE_WITHOUT_RESPONSE]
             + [f"financial.{s.value}" for s in FinancialStatus]
             + [f"fulfillment.{s.value}" for s in FulfillmentStatus]
             + [f"bulk.{a}" for a in ("acknowledge", "assign", "close_duplicate",
                                      "close_withdrawn", "note")])
    assert not set(built) - keys, set(built) - keys


def test_no_template_marks_anything_safe():
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text("utf-8")
        assert "|safe" not in text.replace(" ", "") and "Markup(" not in text, path
        assert "autoescape false" not in text, path
        assert not re.search(r"\son[a-z]+\s*=", text), path  # no inline event handlers
        assert "<script>" not in text and "style=" not in text, path


def test_an_unknown_item_and_a_refused_role_are_html_pages(signed_in):
    answer = signed_in("agent").get("/dashboard/items/999999")
    assert answer.status_code == 404 and answer.mimetype == "text/html"
    assert "This page or item does not exist." in answer.get_data(as_text=True)
