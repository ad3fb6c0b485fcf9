"""The hosted pages a follow-up's signed link opens.

- a check-in's link: answer 1–5 with an optional comment;
- a guarantee's link (free return, buyback): claim it — the order's covered lines, the conditions
  or the qualifying event and its date, evidence — and see at once the reference and whether the
  claim is inside the terms;
- any other message's link: write to the shop (an inquiry on the order).

The token in the URL is the only credential: it names the follow-up and its shop (``links.py``).
A GET never changes anything — mail scanners follow links — so the score a check-in link carries is
only pre-selected; the page's own script submits it at once for a person (one click), and a browser
without script shows the button. Pages run under a strict Content-Security-Policy (no inline script
or style) and render the shopper's words escaped.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import select

from ccms_addon.links import LinkExpiredError, LinkInvalidError, read_token
from ccms_addon.platforms import ReturnLine
from ccms_addon.programs import templates
from ccms_addon.programs.checkins import NotACheckInError, record_answer
from ccms_addon.programs.claims import ClaimRequest, event_moment, submit_claim
from ccms_addon.programs.followups import LINK_PURPOSE, PAGE_PATH
from ccms_addon.programs.schemas import KNOWN_EVENTS
from ccms_addon.store.models import (Enrollment, FollowUp, Order, OrderLine, Program, ProgramKind,
                                     ProgramVersion, Shop, VocChannel, VocKind)
from ccms_addon.voc.intake import NewVocItem, record_voc_item

bp = Blueprint("follow_up_pages", __name__, url_prefix=PAGE_PATH,
               template_folder="page_templates", static_folder="page_static",
               static_url_path="/static")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
#: a shopper's text is a message, not an essay
MAX_TEXT = 4000



def _texts(locale: str | None) -> tuple[str, dict]:
    """The pages' strings (``templates/<locale>.json``, key ``pages``) in the best language."""
    for candidate in templates.languages(locale, None):
        if "pages" in templates.builtin(candidate):
            return candidate, templates.builtin(candidate)["pages"]
    return templates.FALLBACK_LOCALE, templates.builtin(templates.FALLBACK_LOCALE)["pages"]


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak onwards
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _runtime():
    return current_app.extensions["ccms"]


def _load(token: str) -> dict:
    """The follow-up the token names, with what its pages show; aborts with an error page."""
    try:
        payload = read_token(_runtime().settings, LINK_PURPOSE, token)
    except LinkExpiredError:
        abort(_error("expired", 410))
    except LinkInvalidError:
        abort(_error("invalid", 404))
    with _runtime().db.session() as session:
        follow_up = session.get(FollowUp, payload.get("f"))
        if follow_up is None or follow_up.shop_id != payload.get("s"):
            abort(_error("invalid", 404))
        enrollment = session.get(Enrollment, follow_up.enrollment_id)
        program = session.get(Program, enrollment.program_id)
        terms = session.get(ProgramVersion, enrollment.program_version_id).terms
        order = session.get(Order, follow_up.order_id)
        shop = session.get(Shop, follow_up.shop_id)
        lines = list(session.scalars(select(OrderLine).where(OrderLine.order_id == order.id)
                                     .order_by(OrderLine.id)))
        locale, texts = _texts(enrollment.locale)
        return dict(follow_up=follow_up, program=program, terms=terms, order=order, lines=lines,
                    shop_name=shop.name or shop.domain, locale=locale, texts=texts, token=token,
                    order_number=order.number, contact_email=order.email,
                    contact_name=order.customer_name, contact_phone=order.phone)


def _error(problem: str, status: int):
    locale, texts = _texts(request.accept_languages.best_match(list(templates.LOCALES)))
    return current_app.make_response((render_template(
        "follow_up_error.html", texts=texts, locale=locale, shop_name="",
        message=texts[problem]), status))


def _page(found: dict) -> str:
    if found["follow_up"].kind == "check_in":
        return "check_in"
    if found["program"].kind in (ProgramKind.FREE_RETURN, ProgramKind.BUYBACK):
        return "claim"
    return "write"


def _render(found: dict, status: int = 200, **extra):
    page = _page(found)
    context = dict(found, page=page, **extra)
    if page == "check_in":
        context["scores"] = list(enumerate(templates.score_labels(found["locale"]), start=1))
    if page == "claim" and found["program"].kind is ProgramKind.BUYBACK:
        labels = templates.builtin(found["locale"]).get("events") or {}
        context["events"] = [(event["code"], (event.get("labels") or {}).get(found["locale"])
                              or labels.get(event["code"]) or event["code"])
                             for event in found["terms"]["qualifying_events"]]
    return render_template(f"follow_up_{page}.html", **context), status


@bp.get("/<token>")
def show(token: str):
    found = _load(token)
    follow_up = found["follow_up"]
    score = request.args.get("score", type=int)
    preselected = score if score in range(1, 6) else follow_up.answer
    return _render(found, preselected=preselected,
                   auto_submit=score in range(1, 6) and follow_up.answer is None)


@bp.post("/<token>")
def answer(token: str):
    found = _load(token)
    page = _page(found)
    if page == "check_in":
        return _answer_check_in(found)
    if page == "claim":
        return _claim(found)
    return _write(found)


def _answer_check_in(found: dict):
    score = request.form.get("score", type=int)
    comment = (request.form.get("comment") or "")[:MAX_TEXT]
    if score not in range(1, 6):
        return _render(found, 422, preselected=None, auto_submit=False, invalid=True)
    follow_up = found["follow_up"]
    try:
        result = record_answer(_runtime(), follow_up.shop_id, follow_up.id, score, comment)
    except NotACheckInError:
        abort(404)
    return render_template("follow_up_thanks.html", **found, heading=found["texts"]["thanks"],
                           note=found["texts"]["sorry"] if result.complaint_reference else None,
                           reference=result.complaint_reference)


def _parse_date(value: str | None) -> datetime | None:
    try:
        day = datetime.strptime((value or "").strip(), "%Y-%m-%d")
    except ValueError:
        return None
    return event_moment(day.date())


def _claim(found: dict):
    form = request.form
    kind = found["program"].kind
    message = (form.get("message") or "").strip()[:MAX_TEXT]
    lines = []
    for line in found["lines"]:
        quantity = form.get(f"line-{line.platform_line_id}", type=int)
        if quantity:
            lines.append(ReturnLine(line.platform_line_id, min(max(quantity, 0), line.quantity)))
    event = form.get("event") if kind is ProgramKind.BUYBACK else None
    event_date = _parse_date(form.get("event_date")) if kind is ProgramKind.BUYBACK else None
    missing = not message or (kind is ProgramKind.BUYBACK and (not event or event_date is None))
    if missing:
        return _render(found, 422, invalid=True, form=form)
    evidence = (form.get("evidence") or "").strip()[:MAX_TEXT]
    follow_up = found["follow_up"]
    item, claim = submit_claim(_runtime(), follow_up.shop_id, ClaimRequest(
        kind=kind, order_id=found["order"].id, message=message, channel=VocChannel.FOLLOW_UP,
        event=event if event in KNOWN_EVENTS or event in {e["code"] for e in found["terms"].get(
            "qualifying_events", [])} else None,
        event_date=event_date, lines=tuple(line for line in lines if line.quantity > 0),
        evidence={"text": evidence} if evidence else {},
        conditions_accepted=form.get("conditions") == "1",
        contact_email=found["contact_email"], contact_name=found["contact_name"],
        contact_phone=found["contact_phone"], locale=found["locale"]))
    texts = found["texts"]
    return render_template("follow_up_thanks.html", **found, heading=texts["received"],
                           note=texts["eligible"] if claim.eligibility.get("eligible")
                           else texts["ineligible"], reference=item.reference)


def _write(found: dict):
    message = (request.form.get("message") or "").strip()[:MAX_TEXT]
    if not message:
        return _render(found, 422, invalid=True, form=request.form)
    order = found["order"]
    item = record_voc_item(_runtime(), order.shop_id, NewVocItem(
        kind=VocKind.INQUIRY, channel=VocChannel.FOLLOW_UP, body=message, actor="shopper",
        locale=found["locale"], contact_name=found["contact_name"],
        contact_email=found["contact_email"], contact_phone=found["contact_phone"],
        order_id=order.id, customer_id=order.customer_id,
        event_data={"follow_up_id": found["follow_up"].id}))
    from ccms_addon.jobs.notify import notify_merchant_soon
    notify_merchant_soon(_runtime(), item.id, shop_id=item.shop_id)
    return render_template("follow_up_thanks.html", **found, heading=found["texts"]["written"],
                           note=None, reference=item.reference)
