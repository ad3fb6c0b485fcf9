"""The owner's settings: every form validated by the store's schema, errors beside the fields,
422 and nothing saved on bad input; the staff: roles, deactivation, the last owner."""

from __future__ import annotations

import pytest

from ccms_addon.store.models import Shop, Staff, StaffRole
from ccms_addon.voc.settings import voc_settings
from ccms_addon.widgets.settings import widget_settings
from tests.dashboard.conftest import PASSWORD, Dashboard, csrf_of

WIDGET_FORM = {
    "position": "bottom-left", "offset_bottom": "80", "color": "#1f4fd1", "text_color": "#ffffff",
    "default_locale": "ko", "phone": "+82 2-1234-5678", "email": "help@ashop.test",
    "kakao_channel_url": "", "chat_url": "https://chat.ashop.test/", "ack_promise_hours": "4",
    "top_bar": "on", "links.0.label": "FAQ", "links.0.url": "https://ashop.test/faq",
    "links.1.label": "", "links.1.url": "", "hours.timezone": "Asia/Seoul",
    "hours.weekly.mon": "09:00-12:00, 13:00-18:00", "hours.weekly.tue": "09:00-18:00",
    "hours.holidays": "2026-12-25\n2027-01-01", "consent_text.ko": "동의합니다",
    "categories.0.key": "delivery", "categories.0.labels.en": "Delivery",
    "categories.0.labels.ko": "배송", "categories.1.key": "", "storefront_origins":
        "https://www.ashop.test"}


def _shop_settings(runtime, shop_id):
    with runtime.db.session() as s:
        return dict(s.get(Shop, shop_id).settings or {})


def test_widget_settings_are_saved_through_the_schema(runtime, signed_in, team):
    owner = signed_in("owner")
    path = f"/dashboard/settings/{team.shop_ids[0]}/widget"
    answer = owner.post(path, WIDGET_FORM)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("?saved=1")
    saved = widget_settings(_shop_settings(runtime, team.shop_ids[0]))
    assert saved["position"] == "bottom-left" and saved["ack_promise_hours"] == 4
    assert saved["hours"]["weekly"]["mon"] == [["09:00", "12:00"], ["13:00", "18:00"]]
    assert "wed" not in saved["hours"]["weekly"] and saved["top_bar"] is True
    assert [c["key"] for c in saved["categories"]] == ["delivery"]
    assert saved["kakao_channel_url"] is None and saved["links"] == [
        {"label": "FAQ", "url": "https://ashop.test/faq"}]
    page = owner.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Saved." in page and "09:00-12:00, 13:00-18:00" in page and "2027-01-01" in page


@pytest.mark.parametrize("change, field, message", [
    ({"hours.weekly.mon": "9-18"}, "hours.weekly.mon", ""),
    ({"hours.weekly.wed": "18:00-09:00"}, "hours.weekly", "start &lt; end"),
    ({"text_color": "#2050d0"}, "text_color", "contrast"),
    ({"links.0.url": "javascript:alert(1)"}, "links.0.url", "Enter a valid web address."),
    ({"ack_promise_hours": "0"}, "ack_promise_hours", "The value is out of range."),
    ({"hours.timezone": "Mars/Olympus"}, "hours.timezone", "Unknown IANA time zone."),
    ({"categories.0.key": "Bad Key"}, "categories.0.key", "lowercase letters"),
    ({"hours.holidays": "2026-12-25\nchristmas"}, "hours.holidays", "Line 2"),
    ({"position": "top"}, "position", "Choose one of the options."),
])
def test_bad_widget_settings_are_422_beside_the_field_and_not_saved(runtime, signed_in, team,
                                                                     change, field, message):
    before = _shop_settings(runtime, team.shop_ids[0])
    answer = signed_in("owner").post(f"/dashboard/settings/{team.shop_ids[0]}/widget",
                                     {**WIDGET_FORM, **change})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "Nothing was saved" in html and "field-error" in html and message in html
    name = field.replace(".", "-")
    assert f'id="error-{name}"' in html or f'name="{field}"' in html
    assert _shop_settings(runtime, team.shop_ids[0]) == before
    # what was typed is shown again, to be corrected
    for value in change.values():
        assert value.split("\n")[0] in html


VOC_FORM = {"sla_hours.complaint.critical": "1", "sla_hours.complaint.high": "3",
            "default_severity": "normal", "rules.0.keywords": "broken, 파손",
            "rules.0.category": "quality", "rules.0.severity": "high",
            "rules.0.kinds": "complaint", "rules.1.keywords": "", "auto_acknowledge": "on",
            "escalate_before_minutes": "30", "duplicate_window_days": "7",
            "recurrence_window_days": "30", "recurrence_threshold": "3", "digest.enabled": "on",
            "digest.hour": "9", "digest.recipients": "boss@ashop.test"}


def test_voc_settings_are_saved_through_the_schema(runtime, signed_in, team):
    owner = signed_in("owner")
    answer = owner.post(f"/dashboard/settings/{team.shop_ids[1]}/voc", VOC_FORM)
    assert answer.status_code == 303
    saved = voc_settings(_shop_settings(runtime, team.shop_ids[1]))
    assert saved["sla_hours"]["complaint"]["critical"] == 1.0
    assert saved["rules"] == [{"keywords": ["broken", "파손"], "category": "quality",
                               "severity": "high", "kinds": ["complaint"]}]
    assert saved["ask_satisfaction"] is False  # an unticked box is "no", not the default
    assert saved["digest"] == {"enabled": True, "hour": 9, "recipients": ["boss@ashop.test"]}
    assert "broken, 파손" in owner.get(f"/dashboard/settings/{team.shop_ids[1]}/voc").get_data(
        as_text=True)


@pytest.mark.parametrize("change, message", [
    ({"sla_hours.complaint.high": "0"}, "The value is out of range."),
    ({"sla_hours.inquiry.low": "soon"}, "Enter a number."),
    ({"rules.0.keywords": ""}, "The length is out of range."),
    ({"rules.0.severity": "urgent"}, "Choose one of the options."),
    ({"digest.recipients": "boss@ashop.test\nnot-an-email"}, "Line 2"),
    ({"digest.hour": "25"}, "The value is out of range."),
    ({"recurrence_threshold": "1"}, "The value is out of range."),
])
def test_bad_voc_settings_are_422_and_not_saved(runtime, signed_in, team, change, message):
    before = _shop_settings(runtime, team.shop_ids[1])
    answer = signed_in("owner").post(f"/dashboard/settings/{team.shop_ids[1]}/voc",
                                     {**VOC_FORM, **change})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert message in html and "Nothing was saved" in html
    assert _shop_settings(runtime, team.shop_ids[1]) == before


def test_settings_are_for_owners_only(signed_in, team):
    for role in ("viewer", "agent", "manager"):
        board = signed_in(role)
        assert board.get(f"/dashboard/settings/{team.shop_ids[0]}/widget").status_code == 403
        assert board.post(f"/dashboard/settings/{team.shop_ids[0]}/voc", VOC_FORM).status_code \
            == 403
        assert board.post("/dashboard/staff", {"email": "x@a.test", "name": "X",
                                               "role": "owner"}).status_code == 403


def test_adding_staff_and_signing_in_as_them(app, runtime, signed_in, team):
    owner = signed_in("owner")
    answer = owner.post("/dashboard/staff", {"email": "New.Person@A.test", "name": "New person",
                                             "role": "manager", "locale": "ja",
                                             "password": "a long enough password"})
    assert answer.status_code == 303
    newcomer = Dashboard(app.test_client())
    assert newcomer.sign_in("new.person@a.test", "a long enough password").status_code == 303
    assert "受付箱" in newcomer.get("/dashboard/inbox").get_data(as_text=True)


@pytest.mark.parametrize("form, field, message", [
    ({"email": "agent@a.test", "name": "Dup", "role": "agent"}, "email", "already on the team"),
    ({"email": "nope", "name": "X", "role": "agent"}, "email", "Enter a valid email address."),
    ({"email": "x@a.test", "name": "X", "role": "emperor"}, "role", "Choose one of the options."),
    ({"email": "x@a.test", "name": "X", "role": "agent", "password": "short"}, "password",
     "Use at least 10 characters."),
    ({"email": "x@a.test", "role": "agent"}, "name", "This is required."),
])
def test_bad_staff_forms_are_422_beside_the_field(runtime, signed_in, team, form, field, message):
    answer = signed_in("owner").post("/dashboard/staff", form)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert message in html and f'id="error-{field}"' in html
    with runtime.db.session() as s:
        assert s.query(Staff).filter(Staff.merchant_id == team.merchant_id).count() == 4


def test_roles_deactivation_and_the_last_owner(app, runtime, signed_in, team):
    owner = signed_in("owner")
    agent = signed_in("agent")
    answer = owner.post(f"/dashboard/staff/{team.agent}", {"name": "a agent", "role": "agent",
                                                           "locale": "en"})  # active unticked
    assert answer.status_code == 303
    assert agent.get("/dashboard/inbox").status_code == 303  # signed out at once
    for form in ({"name": "a owner", "role": "manager", "locale": "en", "active": "on"},
                 {"name": "a owner", "role": "owner", "locale": "en"}):
        refused = owner.post(f"/dashboard/staff/{team.owner}", form)
        assert refused.status_code == 422
        assert "You cannot remove your own owner role" in refused.get_data(as_text=True)
    promoted = owner.post(f"/dashboard/staff/{team.manager}", {
        "name": "a manager", "role": "owner", "locale": "ko", "active": "on",
        "password": "the manager's new password"})
    assert promoted.status_code == 303
    with runtime.db.session() as s:
        manager = s.get(Staff, team.manager)
        assert (manager.role, manager.locale) == (StaffRole.OWNER, "ko")
        assert s.get(Staff, team.agent).active is False
    assert Dashboard(app.test_client()).sign_in(team.emails["manager"], PASSWORD).status_code \
        == 401
    assert csrf_of(owner.get("/dashboard/staff").get_data(as_text=True))
