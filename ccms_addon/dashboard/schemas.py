"""The dashboard's forms, validated by marshmallow like every other input of the add-on.

An HTML form arrives as a multi-dict of strings: :func:`form_data` turns it into what a schema
loads (a list field takes every value of its name, an empty text box is "not given", the CSRF
token is not data). The settings pages reuse the store's own schemas (``WidgetSettingsSchema``,
``VocSettingsSchema``); :func:`widget_form` and :func:`voc_form` only reshape their flat field
names (``hours.weekly.mon``, ``rules.0.keywords``) into those schemas' nested documents, and
:func:`flat_errors` gives the nested error messages back under the same names, so each error is
shown beside its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import (EXCLUDE, RAISE, Schema, ValidationError, fields, validate,
                         validates_schema)
from werkzeug.datastructures import MultiDict

from ccms_addon.dashboard.i18n import LOCALES
from ccms_addon.store.models import StaffRole, VocKind, VocSeverity, VocStatus
from ccms_addon.voc.inbox import SORTS
from ccms_addon.voc.lifecycle import CLOSE_WITHOUT_RESPONSE
from ccms_addon.voc.service import MAX_TEXT
from ccms_addon.voc.settings import KINDS, SEVERITIES
from ccms_addon.widgets.settings import LOCALES as WIDGET_LOCALES
from ccms_addon.widgets.settings import WEEKDAYS

from .auth import CSRF_FIELD

#: a category key, as the widget's categories spell it
CATEGORY = r"^[a-z0-9_-]{1,40}$"
#: the bulk actions of the inbox, each one call of ``VocDesk.bulk``
BULK_ACTIONS = ("acknowledge", "assign", "close_duplicate", "close_withdrawn", "note")
#: rows offered for new entries on the settings pages
SPARE_ROWS = 3
#: the widget's contact channels a merchant may leave empty
OPTIONAL_CONTACTS = ("phone", "email", "kakao_channel_url", "chat_url")


class _Form(Schema):
    class Meta:
        unknown = RAISE


def _text(required: bool = True, limit: int = MAX_TEXT) -> fields.String:
    if required:
        return fields.String(required=True, validate=validate.Length(1, limit))
    return fields.String(load_default=None, validate=validate.Length(1, limit))


# --------------------------------------------------------------------------------------------------
# Signing in, the language
# --------------------------------------------------------------------------------------------------


class LoginSchema(_Form):
    email = fields.String(required=True, validate=validate.Length(1, 320))
    password = fields.String(required=True, validate=validate.Length(1, 1000))
    return_to = fields.String(load_default=None, validate=validate.Length(max=2000))


class LocaleSchema(_Form):
    locale = fields.String(required=True, validate=validate.OneOf(LOCALES))
    return_to = fields.String(load_default=None, validate=validate.Length(max=2000))


# --------------------------------------------------------------------------------------------------
# The inbox
# --------------------------------------------------------------------------------------------------


class InboxQuerySchema(Schema):
    """The inbox's filters in the query string. Unknown parameters are ignored (EXCLUDE), unlike
    the forms: a platform's admin adds its own (``host``, ``embedded``, ``locale``…) to links."""

    class Meta:
        unknown = EXCLUDE

    status = fields.List(fields.String(validate=validate.OneOf([s.value for s in VocStatus])),
                         load_default=list)
    kind = fields.List(fields.String(validate=validate.OneOf([k.value for k in VocKind])),
                       load_default=list)
    channel = fields.List(fields.String(validate=validate.Length(1, 40)), load_default=list)
    category = fields.List(fields.String(validate=validate.Length(1, 100)), load_default=list)
    severity = fields.List(fields.String(validate=validate.OneOf([s.value for s in VocSeverity])),
                           load_default=list)
    #: a staff id, ``none`` (unassigned) or ``me``
    assignee = fields.String(load_default=None, validate=validate.Regexp(r"^(none|me|[0-9]{1,12})$"))
    breached = fields.Boolean(load_default=False)
    recurrence = fields.Boolean(load_default=False)
    shop = fields.Integer(load_default=None, strict=False)
    q = fields.String(load_default=None, validate=validate.Length(max=200))
    sort = fields.String(load_default="newest", validate=validate.OneOf(SORTS))
    cursor = fields.String(load_default=None, validate=validate.Length(max=500))


class BulkSchema(_Form):
    item_ids = fields.List(fields.Integer(strict=False), required=True,
                           validate=validate.Length(1, 200))
    action = fields.String(required=True, validate=validate.OneOf(BULK_ACTIONS))
    assignee = fields.String(load_default=None, validate=validate.Regexp(r"^(none|[0-9]{1,12})$"))
    note = _text(required=False)
    return_to = fields.String(load_default=None, validate=validate.Length(max=2000))

    @validates_schema
    def _parameters(self, data: dict, **_: Any) -> None:
        if data["action"] == "assign" and data.get("assignee") is None:
            raise ValidationError("form.error.assignee_required", "assignee")
        if data["action"] == "note" and not data.get("note"):
            raise ValidationError("form.error.required", "note")


# --------------------------------------------------------------------------------------------------
# An item's actions
# --------------------------------------------------------------------------------------------------


class AcknowledgeSchema(_Form):
    notify_customer = fields.Boolean(load_default=False)


class StartSchema(_Form):
    pass


class ReplySchema(_Form):
    message = _text()
    #: answered by phone or at the counter: recorded, nothing is sent
    given_outside = fields.Boolean(load_default=False)


class NoteSchema(_Form):
    text = _text()


class AssignSchema(_Form):
    #: empty: nobody
    assignee_id = fields.Integer(load_default=None, allow_none=True, strict=False)


class AssessSchema(_Form):
    category = fields.String(load_default=None, validate=validate.Regexp(CATEGORY))
    severity = fields.String(load_default=None, validate=validate.OneOf(SEVERITIES))
    issue_category = fields.String(load_default=None, validate=validate.Regexp(CATEGORY))
    issue_summary = _text(required=False, limit=2000)

    @validates_schema
    def _issue(self, data: dict, **_: Any) -> None:
        if data.get("issue_summary") and not data.get("issue_category"):
            raise ValidationError("form.error.issue_category", "issue_category")


class CloseSchema(_Form):
    root_cause = _text(required=False)
    prevention_action = _text(required=False)
    #: closing without an answer: why (duplicate, withdrawn…)
    resolution = fields.String(load_default=None, validate=validate.OneOf(CLOSE_WITHOUT_RESPONSE))
    handled_issue_ids = fields.List(fields.Integer(strict=False), load_default=list)


class ReopenSchema(_Form):
    reason = _text()


class DuplicateSchema(_Form):
    #: the reference number (or id) of the item this one repeats
    original = fields.String(required=True, validate=validate.Length(1, 40))


class OrderActionSchema(_Form):
    """An action on the item's order (``ccms_addon.voc.order_actions``, which checks it against
    the order); the lines ticked are taken whole."""

    action = fields.String(required=True, validate=validate.OneOf(
        ("refund", "return", "cancel", "resend")))
    amount = fields.String(load_default=None, validate=validate.Regexp(r"^[0-9]{1,15}(\.[0-9]{1,4})?$"))
    lines = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)
    reason = fields.String(load_default="", validate=validate.Length(max=500))
    #: empty: the action's own default (a return restocks, a refund does not)
    restock = fields.String(load_default=None, validate=validate.OneOf(("yes", "no")))
    refund = fields.Boolean(load_default=False)
    notify_customer = fields.Boolean(load_default=False)


# --------------------------------------------------------------------------------------------------
# Staff
# --------------------------------------------------------------------------------------------------

ROLES = tuple(role.value for role in StaffRole)


class StaffCreateSchema(_Form):
    email = fields.Email(required=True, validate=validate.Length(max=320))
    name = fields.String(required=True, validate=validate.Length(1, 200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    locale = fields.String(load_default="en", validate=validate.OneOf(LOCALES))
    #: the first password (at least ``staff.MIN_PASSWORD`` characters), or none: they sign in
    #: through the platform's admin only until one is set
    password = fields.String(load_default=None, validate=validate.Length(max=1000))


class StaffUpdateSchema(_Form):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    locale = fields.String(required=True, validate=validate.OneOf(LOCALES))
    active = fields.Boolean(load_default=False)
    password = fields.String(load_default=None, validate=validate.Length(max=1000))


# --------------------------------------------------------------------------------------------------
# Reading forms, showing errors
# --------------------------------------------------------------------------------------------------


def form_data(schema: Schema, form: MultiDict) -> dict[str, Any]:
    """The form as ``schema`` loads it: every value of a list field, one value otherwise, empty
    strings and the CSRF token left out (an empty box is "not given")."""
    data: dict[str, Any] = {}
    for name in form.keys():
        if name == CSRF_FIELD:
            continue
        if isinstance(schema.fields.get(name), fields.List):
            values = [v for v in form.getlist(name) if v.strip()]
            if values:
                data[name] = values
        else:
            value = form.get(name, "")
            if value.strip():
                data[name] = value
    return data


def flat_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages keyed by dotted field names (``links.0.url``); errors of
    the whole form under ``_schema``."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for sub, texts in flat_errors(value, name).items():
                flat.setdefault(sub, []).extend(texts)
    elif isinstance(messages, (list, tuple)):
        for value in messages:
            if isinstance(value, (Mapping, list, tuple)):
                for sub, texts in flat_errors(value, prefix).items():
                    flat.setdefault(sub, []).extend(texts)
            else:
                flat.setdefault(prefix or "_schema", []).append(str(value))
    else:
        flat.setdefault(prefix or "_schema", []).append(str(messages))
    return flat


# --------------------------------------------------------------------------------------------------
# The settings pages: flat form names ↔ the stored documents
# --------------------------------------------------------------------------------------------------


def form_errors(schema: Schema, messages: Any) -> dict[str, list[str]]:
    """:func:`flat_errors` of a flat form: an error of a field the form does not have (an
    unknown field) is shown with the form's own errors, naming the field."""
    flat = flat_errors(messages)
    placed: dict[str, list[str]] = {}
    for name, texts in flat.items():
        if name == "_schema" or name.split(".")[0] in schema.fields:
            placed.setdefault(name, []).extend(texts)
        else:
            placed.setdefault("_schema", []).extend(f"{name}: {text}" for text in texts)
    return placed


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _spans(text: str) -> list[list[str]]:
    """``"09:00-12:00, 13:00-18:00"`` → ``[["09:00", "12:00"], ["13:00", "18:00"]]`` (the schema
    judges the pieces)."""
    return [[part.strip() for part in span.split("-")] for span in text.split(",") if span.strip()]


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _rows(form: MultiDict, prefix: str) -> list[int]:
    """The row numbers used by ``<prefix>.<n>.<field>`` names, in order."""
    found = set()
    for name in form.keys():
        head, _, rest = name.partition(".")
        if head == prefix:
            index, _, _ = rest.partition(".")
            if index.isdigit() and len(index) <= 3:
                found.add(int(index))
    return sorted(found)


def widget_form(form: MultiDict) -> dict[str, Any]:
    """A ``WidgetSettingsSchema`` document from the widget settings form."""
    data: dict[str, Any] = {}
    for name in ("position", "offset_bottom", "color", "text_color", "default_locale",
                 "ack_promise_hours"):
        value = _blank(form.get(name))
        if value is not None:
            data[name] = value
    for name in OPTIONAL_CONTACTS:  # an empty box removes the channel
        data[name] = _blank(form.get(name))
    data["top_bar"] = form.get("top_bar") == "on"
    links = []
    for index in _rows(form, "links"):
        label, url = _blank(form.get(f"links.{index}.label")), _blank(form.get(f"links.{index}.url"))
        if label or url:
            links.append({"label": label or "", "url": url or ""})
    data["links"] = links
    weekly = {day: _spans(form.get(f"hours.weekly.{day}", "")) for day in WEEKDAYS
              if form.get(f"hours.weekly.{day}", "").strip()}
    data["hours"] = {"timezone": _blank(form.get("hours.timezone")) or "UTC", "weekly": weekly,
                     "holidays": _lines(form.get("hours.holidays"))}
    data["consent_text"] = {locale: text for locale in WIDGET_LOCALES
                            if (text := (form.get(f"consent_text.{locale}") or "").strip())}
    categories = []
    for index in _rows(form, "categories"):
        key = _blank(form.get(f"categories.{index}.key"))
        labels = {locale: label for locale in WIDGET_LOCALES
                  if (label := _blank(form.get(f"categories.{index}.labels.{locale}")))}
        if key or labels:
            categories.append({"key": key or "", "labels": labels})
    data["categories"] = categories
    data["storefront_origins"] = _lines(form.get("storefront_origins"))
    return data


def voc_form(form: MultiDict) -> dict[str, Any]:
    """A ``VocSettingsSchema`` document from the VOC settings form."""
    sla: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        for severity in SEVERITIES:
            value = _blank(form.get(f"sla_hours.{kind}.{severity}"))
            if value is not None:
                sla.setdefault(kind, {})[severity] = value
    rules = []
    for index in _rows(form, "rules"):
        keywords = [word.strip() for word in (form.get(f"rules.{index}.keywords") or "").split(",")
                    if word.strip()]
        category = _blank(form.get(f"rules.{index}.category"))
        severity = _blank(form.get(f"rules.{index}.severity"))
        kinds = [k for k in form.getlist(f"rules.{index}.kinds") if k.strip()]
        if keywords or category or severity or kinds:
            rules.append({"keywords": keywords, "category": category, "severity": severity,
                          "kinds": kinds})
    data: dict[str, Any] = {"sla_hours": sla, "rules": rules,
                            "auto_acknowledge": form.get("auto_acknowledge") == "on",
                            "ask_satisfaction": form.get("ask_satisfaction") == "on"}
    for name in ("default_severity", "escalate_before_minutes", "duplicate_window_days",
                 "recurrence_window_days", "recurrence_threshold"):
        value = _blank(form.get(name))
        if value is not None:
            data[name] = value
    digest: dict[str, Any] = {"enabled": form.get("digest.enabled") == "on",
                              "recipients": _lines(form.get("digest.recipients"))}
    if _blank(form.get("digest.hour")) is not None:
        digest["hour"] = form.get("digest.hour").strip()
    data["digest"] = digest
    return data
