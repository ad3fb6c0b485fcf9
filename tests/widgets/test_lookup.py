"""The order lookup's inline check of its body against ``OrderLookupSchema``: the same answer for
every body (the values, or the schema's 422)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from ccms_addon.widgets.errors import WidgetRequestError
from ccms_addon.widgets.schemas import CONTACT_MAX, ORDER_NUMBER_MAX, OrderLookupSchema
from ccms_addon.widgets.views import _lookup_args

_text = st.one_of(
    st.text(max_size=8), st.text(min_size=1, max_size=40),
    st.text(min_size=ORDER_NUMBER_MAX - 1, max_size=ORDER_NUMBER_MAX + 1),
    st.text(min_size=CONTACT_MAX - 1, max_size=CONTACT_MAX + 1),
    st.sampled_from(["", " ", "\t\u3000", "#1001", "a\x00b", "\ud800", "ab", "a@b.co", "é@x.kr"]))
_value = st.one_of(_text, st.none(), st.integers(), st.booleans(), st.lists(st.integers(),
                                                                            max_size=2))
_body = st.one_of(
    st.fixed_dictionaries({"order_number": _value, "contact": _value}),
    st.dictionaries(st.sampled_from(["order_number", "contact", "token", "website"]), _value),
    _value)


def _schema(data):
    try:
        args = OrderLookupSchema().load(data)
    except Exception as exc:  # noqa: BLE001 — any refusal of the schema
        return type(exc).__name__
    return args["order_number"], args["contact"]


@given(_body)
def test_the_inline_check_answers_what_the_schema_answers(data):
    try:
        ours = _lookup_args(data)
    except WidgetRequestError as exc:
        assert exc.status == 422
        ours = "ValidationError"
    assert ours == _schema(data)
