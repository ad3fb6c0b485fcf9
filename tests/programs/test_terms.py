"""Terms validation and the time arithmetic of follow-ups."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from ccms_addon.programs.schedule import (add_months, outside_quiet_hours, shopper_timezone,
                                          step_due_at, zone)
from ccms_addon.programs.schemas import ProgramCreateSchema, load_terms
from ccms_addon.store.models import ProgramKind
from tests.programs.conftest import BUYBACK_TERMS, CHECK_IN_TERMS, FREE_RETURN_TERMS

QUIET = {"start": "21:00", "end": "08:00"}


def test_valid_terms_get_their_defaults():
    terms = load_terms(ProgramKind.FREE_RETURN, FREE_RETURN_TERMS)
    assert terms["quiet_hours"] == QUIET and terms["return_shipping_paid_by"] == "merchant"
    assert terms["steps"][0]["send_at"] == "10:00" and terms["steps"][0]["channel"] == "email"
    buyback = load_terms(ProgramKind.BUYBACK, BUYBACK_TERMS)
    assert [b["percent"] for b in buyback["value_schedule"]] == ["100.00", "80.00", "60.00"]


@pytest.mark.parametrize("kind, terms, field", [
    (ProgramKind.FOLLOW_UP, {"steps": []}, "steps"),
    (ProgramKind.FOLLOW_UP, {"steps": [{"key": "a", "offset_days": 1}]}, "steps"),
    (ProgramKind.FOLLOW_UP, {"steps": [CHECK_IN_TERMS["steps"][0]] * 2}, "steps"),
    (ProgramKind.FOLLOW_UP, {"steps": [{"key": "a", "offset_days": 1, "send_at": "25:00",
                                        "template": "thank_you"}]}, "steps"),
    (ProgramKind.FOLLOW_UP, {"steps": [{"key": "a", "offset_days": 1, "texts": {
        "en": {"subject": "Hi {{ nope }}", "body": "x"}}}]}, "steps"),
    (ProgramKind.FREE_RETURN, {"window_days": 0}, "window_days"),
    (ProgramKind.FREE_RETURN, {"window_days": 30, "surprise": 1}, "surprise"),
    (ProgramKind.BUYBACK, {**BUYBACK_TERMS, "value_schedule": [
        {"until_month": 3, "percent": "50"}, {"until_month": 12, "percent": "70"}]},
     "value_schedule"),
    (ProgramKind.BUYBACK, {**BUYBACK_TERMS, "value_schedule": [
        {"until_month": 3, "percent": "100"}]}, "value_schedule"),
    (ProgramKind.BUYBACK, {**BUYBACK_TERMS, "qualifying_events": [{"code": "divorce"}]},
     "qualifying_events"),
])
def test_invalid_terms_name_the_field(kind, terms, field):
    with pytest.raises(ValidationError) as caught:
        load_terms(kind, terms)
    assert field in caught.value.messages


def test_a_program_needs_a_known_kind():
    with pytest.raises(ValidationError) as caught:
        ProgramCreateSchema().load({"kind": "lottery", "name": "x", "terms": {}})
    assert "kind" in caught.value.messages


def test_steps_fall_on_the_local_day_at_the_local_time():
    anchor = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)  # 08:30, 2 March in Seoul
    due = step_due_at(anchor, 3, "10:00", "Asia/Seoul", QUIET)
    assert due == datetime(2026, 3, 5, 1, 0, tzinfo=timezone.utc)  # 10:00, 5 March in Seoul
    late = step_due_at(anchor, 3, "22:30", "Asia/Seoul", QUIET)  # in the quiet hours
    assert late.astimezone(zone("Asia/Seoul")).strftime("%d %H:%M") == "06 08:00"


def test_quiet_hours_spanning_midnight_and_a_dst_gap():
    seoul = zone("Asia/Seoul")
    three_am = datetime(2026, 6, 1, 3, 0, tzinfo=seoul)
    assert outside_quiet_hours(three_am, "Asia/Seoul", QUIET) == datetime(
        2026, 6, 1, 8, 0, tzinfo=seoul)
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=seoul)
    assert outside_quiet_hours(noon, "Asia/Seoul", QUIET) == noon
    # 02:30 does not exist in New York on 8 March 2026: the send moves on with the clock
    due = step_due_at(datetime(2026, 3, 7, 12, tzinfo=timezone.utc), 1, "02:30",
                      "America/New_York", {"start": "00:00", "end": "00:00"})
    assert due.astimezone(zone("America/New_York")).hour == 3


def test_the_shoppers_time_zone_comes_from_the_shipping_country():
    assert shopper_timezone("KR", "UTC") == "Asia/Seoul"
    assert shopper_timezone("US", "America/Chicago") == "America/Chicago"  # the shop's own
    assert shopper_timezone("US", "Asia/Seoul") == "America/New_York"
    assert shopper_timezone(None, "Asia/Tokyo") == "Asia/Tokyo"


def test_months_are_calendar_months():
    assert add_months(datetime(2026, 1, 31, tzinfo=timezone.utc), 1).day == 28
    assert add_months(datetime(2026, 11, 15, tzinfo=timezone.utc), 3) == datetime(
        2027, 2, 15, tzinfo=timezone.utc)
