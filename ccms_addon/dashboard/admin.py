"""The owner's settings: each shop's widget (look, contact channels, hours, categories, the
acknowledgement promise) and VOC handling (SLAs, rules, escalation, windows, the digest), and the
merchant's staff. Every form goes through the store's own schema; a refused form is shown again,
422, with each message beside its field, and nothing is saved."""

from __future__ import annotations

from flask import abort, redirect, request, url_for
from marshmallow import ValidationError
from sqlalchemy import func, select

from ccms_addon.staff import StaffError, add_staff, set_password
from ccms_addon.store.models import Shop, Staff, StaffRole
from ccms_addon.voc.settings import KINDS, SEVERITIES, VocSettingsSchema, voc_settings
from ccms_addon.widgets.settings import LOCALES as WIDGET_LOCALES
from ccms_addon.widgets.settings import WEEKDAYS, WidgetSettingsSchema, widget_settings

from .i18n import LOCALES
from .schemas import (ROLES, SPARE_ROWS, StaffCreateSchema, StaffUpdateSchema, flat_errors,
                      form_data, form_errors, voc_form, widget_form)
from .views import bp, page, requires, runtime, viewer


def _shop_or_404(shop_id: int):
    shop = viewer().shop(shop_id)
    if shop is None:
        abort(404)
    return shop


@bp.get("/settings")
@requires("admin")
def settings_home():
    return page("settings_home.html", shops=viewer().shops)


# --------------------------------------------------------------------------------------------------
# The widget
# --------------------------------------------------------------------------------------------------


def _widget_page(shop, values: dict, status: int = 200, errors: dict | None = None,
                 saved: bool = False):
    return page("settings_widget.html", status, shop=shop, values=values, errors=errors or {},
                saved=saved, weekdays=WEEKDAYS, widget_locales=WIDGET_LOCALES,
                spare=SPARE_ROWS)


@bp.get("/settings/<int:shop_id>/widget")
@requires("admin")
def widget_settings_page(shop_id: int):
    shop = _shop_or_404(shop_id)
    try:
        values = widget_settings(shop.settings)
    except ValidationError:  # stored before a rule tightened: show the defaults to fix it
        values = widget_settings({})
    return _widget_page(shop, values, saved=request.args.get("saved") == "1")


@bp.post("/settings/<int:shop_id>/widget")
@requires("admin")
def save_widget_settings(shop_id: int):
    shop = _shop_or_404(shop_id)
    return _save_section(shop, "widget", WidgetSettingsSchema(), widget_form(request.form),
                         _widget_page, ".widget_settings_page")


# --------------------------------------------------------------------------------------------------
# VOC handling
# --------------------------------------------------------------------------------------------------


def _voc_page(shop, values: dict, status: int = 200, errors: dict | None = None,
              saved: bool = False):
    return page("settings_voc.html", status, shop=shop, values=values, errors=errors or {},
                saved=saved, kinds=KINDS, severities=SEVERITIES, spare=SPARE_ROWS)


@bp.get("/settings/<int:shop_id>/voc")
@requires("admin")
def voc_settings_page(shop_id: int):
    shop = _shop_or_404(shop_id)
    return _voc_page(shop, voc_settings(shop.settings), saved=request.args.get("saved") == "1")


@bp.post("/settings/<int:shop_id>/voc")
@requires("admin")
def save_voc_settings(shop_id: int):
    shop = _shop_or_404(shop_id)
    return _save_section(shop, "voc", VocSettingsSchema(), voc_form(request.form), _voc_page,
                         ".voc_settings_page")


def _save_section(shop, section: str, schema, submitted: dict, render, endpoint: str):
    """Validate one settings document; store it under ``Shop.settings[section]`` and go back to
    its page, or show the form again with the errors beside their fields (422, nothing saved)."""
    try:
        loaded = schema.load(submitted)
    except ValidationError as exc:
        return render(shop, submitted, 422, flat_errors(exc.messages))
    with runtime().db.session() as session:
        row = session.get(Shop, shop.id)
        row.settings = {**(row.settings or {}), section: schema.dump(loaded)}
    return redirect(url_for(endpoint, shop_id=shop.id, saved=1), 303)


# --------------------------------------------------------------------------------------------------
# Staff
# --------------------------------------------------------------------------------------------------


def _team(merchant_id: int) -> list[Staff]:
    with runtime().db.session() as session:
        team = list(session.scalars(select(Staff).where(Staff.merchant_id == merchant_id)
                                    .order_by(Staff.active.desc(), Staff.name)))
        session.expunge_all()
    return team


def _staff_page(status: int = 200, *, errors: dict | None = None, values: dict | None = None,
                done: str | None = None):
    return page("staff.html", status, team=_team(viewer().merchant_id), roles=ROLES,
                locales=LOCALES, errors=errors or {}, values=values or {}, done=done)


@bp.get("/staff")
@requires("admin")
def staff_page():
    return _staff_page(done=request.args.get("done"))


@bp.post("/staff")
@requires("admin")
def add_staff_member():
    schema = StaffCreateSchema()
    try:
        data = schema.load(form_data(schema, request.form))
        with runtime().db.session() as session:
            add_staff(session, viewer().merchant_id, data["email"], data["name"],
                      StaffRole(data["role"]), password=data["password"], locale=data["locale"])
    except ValidationError as exc:
        return _staff_page(422, errors={"new": form_errors(schema, exc.messages)},
                           values={"new": request.form})
    except StaffError as exc:
        return _staff_page(422, errors={"new": {exc.field: [_staff_error(exc)]}},
                           values={"new": request.form})
    return redirect(url_for(".staff_page", done="added"), 303)


@bp.post("/staff/<int:staff_id>")
@requires("admin")
def update_staff_member(staff_id: int):
    current = viewer()
    schema = StaffUpdateSchema()
    key = str(staff_id)
    try:
        data = schema.load(form_data(schema, request.form))
        with runtime().db.session() as session:
            member = session.scalar(select(Staff).where(Staff.id == staff_id,
                                                        Staff.merchant_id == current.merchant_id))
            if member is None:
                abort(404)
            role, active = StaffRole(data["role"]), data["active"]
            if member.id == current.id and (role is not StaffRole.OWNER or not active):
                raise StaffError("form.error.own_role", "role")
            if member.role is StaffRole.OWNER and (role is not StaffRole.OWNER or not active):
                owners = session.scalar(select(func.count()).select_from(Staff).where(
                    Staff.merchant_id == current.merchant_id, Staff.role == StaffRole.OWNER,
                    Staff.active.is_(True)))
                if owners <= 1:
                    raise StaffError("form.error.last_owner", "role")
            member.name, member.role, member.active = data["name"].strip(), role, active
            member.locale = data["locale"]
            if data["password"]:
                set_password(member, data["password"])
    except ValidationError as exc:
        return _staff_page(422, errors={key: form_errors(schema, exc.messages)},
                           values={key: request.form})
    except StaffError as exc:
        return _staff_page(422, errors={key: {exc.field: [_staff_error(exc)]}},
                           values={key: request.form})
    return redirect(url_for(".staff_page", done="updated"), 303)


def _staff_error(exc: StaffError) -> str:
    """The store's refusals as catalog keys: the schema already checked the address's form, so
    an email refused here is taken, and a password refused here is too short."""
    message = str(exc)
    if message.startswith("form.error."):
        return message
    return {"email": "form.error.email_taken",
            "password": "form.error.password_short"}.get(exc.field, message)
