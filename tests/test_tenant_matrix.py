"""The cross-tenant route matrix: every route, called with merchant A's credentials and merchant
B's ids, must answer 404 — exactly what it answers for an id that does not exist — and leave B's
data as it was.

The matrix is generated from ``app.url_map``, so a new route cannot escape it:

- a rule whose URL variables name tenant-owned objects (:data:`OBJECT_VARIABLES`) under a surface
  with credentials (:data:`SURFACES`, :data:`CREDENTIALS`: the merchant API's bearer token, alone
  or acting as an agent; the dashboard's sessions — the owner signed in with a password, the
  owner launched inside Shopify's admin with a session token, an agent) is called for every
  method it allows and every companion value (an item's action), with B's value, with each of
  A's credentials and a valid body;
- every other rule must be classified in :data:`CLASSIFIED` (public pages, webhooks, install,
  operations, lists, writes in the caller's own shop, the widget, signed links). Lists are read
  with A's credentials and must show none of B's markers; writes that can name B's things in
  their body name them; widget routes get A's widget key and B's order numbers and references;
  signed links get tokens that name B's objects with A's shop.

A rule that is neither fails :func:`test_every_route_is_in_the_matrix_or_classified` with "new
route X: add it to the tenant matrix". The world (two merchants, each with a shop, an order with
lines and a customer, a program with its enrollment and follow-up, a claim, VOC items, staff,
satisfaction and follow-up links, and B's stored monthly report) is built once for the module by
tests/tenant_matrix_fixtures.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from ccms_addon.app import create_app
from ccms_addon.dashboard.items import ACTIONS as DASHBOARD_ITEM_ACTIONS
from ccms_addon.dashboard.schemas import StaffUpdateSchema, form_data
from ccms_addon.links import make_token
from ccms_addon.programs.followups import LINK_PURPOSE
from ccms_addon.store.models import VocItem
from ccms_addon.voc.service import SATISFACTION_PURPOSE
from ccms_addon.widgets.tokens import form_token
from tests.install.conftest import session_token
from tests.tenant_matrix_fixtures import (FREE_RETURN_TERMS, Tenant, World, build_world,
                                          close_world, markers_in, shop_of_item, tenant_rows)

# --------------------------------------------------------------------------------------------------
# What the URL variables name
# --------------------------------------------------------------------------------------------------

#: URL variables that name a tenant's object → B's value of it
OBJECT_VARIABLES: dict[str, Callable[[Tenant], Any]] = {
    "item_id": lambda t: t.item_id,
    "reference": lambda t: t.reference,
    "claim_id": lambda t: t.claim_id,
    "program_id": lambda t: t.program_id,
    "platform_order_id": lambda t: t.platform_order_id,
    "shop_id": lambda t: t.shop_id,
    "staff_id": lambda t: t.owner_id,
}
#: the same variables naming nothing at all: B's answer must be this one's
MISSING: dict[str, Any] = {
    "item_id": 987654321, "reference": "VOC-1999-999999", "claim_id": 987654321,
    "program_id": 987654321, "platform_order_id": "no-such-order", "shop_id": 987654321,
    "staff_id": 987654321,
}
#: variables that choose what to do with the object (every value is called)
COMPANIONS: dict[str, Callable[[], list[str]]] = {
    "action": lambda: sorted(DASHBOARD_ITEM_ACTIONS) + ["no-such-action"],
}
#: path prefix → how A's credentials are presented there
SURFACES = (("/api/v1/", "api"), ("/dashboard/", "dashboard"))


def _api_bodies(w: World, values: dict) -> dict | None:
    """A valid JSON body of each merchant API operation (only A's own values besides the URL's)."""
    return {
        "programs.update_program": {"status": "paused"},
        "programs.decide_claim": {"decision": "reject", "note": "not yours"},
        "voc.acknowledge_voc_item": {"notify_customer": False},
        "voc.start_voc_item": {},
        "voc.assign_voc_item": {"assignee_id": w.a.agent_id},
        "voc.add_voc_note": {"note": "a note"},
        "voc.assess_voc_item": {"severity": "high"},
        "voc.reply_voc_item": {"message": "an answer", "given_outside": True},
        "voc.close_voc_item": {"resolution": "spam"},
        "voc.reopen_voc_item": {"reason": "again"},
        "voc.mark_voc_duplicate": {"original": w.a.references[0]},
    }.get(values["endpoint"])


def _dashboard_forms(w: World, values: dict) -> dict:
    """A valid form of each dashboard POST (the CSRF token is added by the session)."""
    item_actions = {
        "acknowledge": {}, "start": {}, "reply": {"message": "an answer"},
        "note": {"text": "a note"}, "assign": {"assignee_id": str(w.a.agent_id)},
        "assess": {"severity": "high"}, "close": {"resolution": "spam"},
        "reopen": {"reason": "again"}, "duplicate": {"original": w.a.references[0]},
        "order_action": {"action": "refund", "amount": "1000", "reason": "broken"},
    }
    return {
        "dashboard.item_action": item_actions.get(values.get("action"), {}),
        "dashboard.update_staff_member": {"name": "Hijacked", "role": "owner", "locale": "en",
                                          "active": "y"},
        "dashboard.save_voc_settings": {"default_severity": "low"},
        "dashboard.save_widget_settings": {"position": "left"},
    }.get(values["endpoint"], {})


#: (endpoint, method) → (status, why) where a route may answer B's id with something else than
#: 404. Empty: every object route answers 404, as for a missing id.
NOT_404: dict[tuple[str, str], tuple[int, str]] = {}

# --------------------------------------------------------------------------------------------------
# Rules without object variables, classified
# --------------------------------------------------------------------------------------------------

PUBLIC, OPERATIONS, WEBHOOK, INSTALL = "public", "operations", "webhook", "install"
SESSION, LIST, OWN_WRITE = "session", "list", "own-write"
WIDGET, SIGNED_LINK = "widget", "signed-link"

#: endpoint → (kind, why it needs no object substitution)
CLASSIFIED: dict[str, tuple[str, str]] = {
    # the same for everyone
    "static": (PUBLIC, "Flask's static folder: files of the add-on"),
    "dashboard.static": (PUBLIC, "the dashboard's CSS and JS"),
    "follow_up_pages.static": (PUBLIC, "the hosted pages' CSS and JS"),
    "widget_assets.loader": (PUBLIC, "the widget's loader script"),
    "widget_assets.asset": (PUBLIC, "the widget's hashed assets"),
    "api-docs.openapi_json": (PUBLIC, "the merchant API's OpenAPI document"),
    "widget_openapi.openapi_json": (PUBLIC, "the widget API's OpenAPI document"),
    "dashboard.login": (PUBLIC, "the sign-in form: a person, then their merchant's shops"),
    "dashboard.index": (PUBLIC, "redirects; the embedded launch takes the shop from the verified "
                                "session token"),
    "demo_storefront.index": (PUBLIC, "demo storefronts (CCMS_DEMO only)"),
    "demo_storefront.storefront": (PUBLIC, "demo storefronts (CCMS_DEMO only): <platform>"),
    "demo_storefront.static_file": (PUBLIC, "demo storefronts' files (CCMS_DEMO only)"),
    # operators
    "health.healthz": (OPERATIONS, "liveness, no data"),
    "health.readyz": (OPERATIONS, "store and queue reachable, no data"),
    "metrics.metrics": (OPERATIONS, "aggregates for the operator (token or private network)"),
    # platforms
    "webhooks.receive": (WEBHOOK, "authenticated by the platform's signature; the shop comes "
                                  "from the verified delivery, <platform> is no tenant"),
    "install.start": (INSTALL, "OAuth start: <platform> is no tenant, the shop is validated"),
    "install.callback": (INSTALL, "OAuth callback: the signed state names the shop"),
    "install.admin_home": (INSTALL, "the shop comes from the verified session token or signed "
                                    "receipt (test_the_admin_landing_shows_the_token_shop_only)"),
    # the caller's own session
    "dashboard.logout": (SESSION, "revokes the caller's own cookie"),
    # lists: read with A's credentials, no B marker may appear (LIST_CALLS)
    "programs.list_programs": (LIST, "A's programs"),
    "programs.list_claims": (LIST, "A's claims"),
    "orders.list_orders": (LIST, "A's orders"),
    "voc.list_voc_items": (LIST, "A's inbox"),
    "voc.get_voc_settings": (LIST, "A's VOC settings"),
    "voc.list_staff": (LIST, "A's merchant's staff"),
    "voc_reports.get_board": (LIST, "A's board"),
    "voc_reports.get_monthly_report": (LIST, "A's monthly report"),
    "voc_reports.export_items": (LIST, "A's items export"),
    "voc_reports.export_events": (LIST, "A's events export"),
    "widget_settings.get_settings": (LIST, "A's widget settings"),
    "dashboard.inbox": (LIST, "A's merchant's inbox"),
    "dashboard.board_page": (LIST, "A's merchant's board"),
    "dashboard.reports_page": (LIST, "A's reports page"),
    "dashboard.monthly_report": (LIST, "A's monthly report (stored files are per shop set)"),
    "dashboard.export_items": (LIST, "A's items export"),
    "dashboard.export_events": (LIST, "A's events export"),
    "dashboard.settings_home": (LIST, "A's shops' settings"),
    "dashboard.staff_page": (LIST, "A's merchant's staff"),
    # writes in the caller's own shop, B's things named in the body where one can be (OWN_WRITES)
    "programs.create_program": (OWN_WRITE, "a program of A's shop"),
    "voc.create_voc_item": (OWN_WRITE, "an item of A's shop; order_number names the order"),
    "voc.bulk_voc_action": (OWN_WRITE, "references name the items"),
    "voc.put_voc_settings": (OWN_WRITE, "A's VOC settings"),
    "voc.create_staff": (OWN_WRITE, "a person of A's merchant"),
    "widget_settings.put_settings": (OWN_WRITE, "A's widget settings"),
    "dashboard.bulk": (OWN_WRITE, "item_ids name the items"),
    "dashboard.add_staff_member": (OWN_WRITE, "a person of A's merchant"),
    "dashboard.change_locale": (OWN_WRITE, "the caller's own language"),
    # the widget: the key is the credential, B's numbers go in the body (WIDGET_CASES)
    "widgets.config": (WIDGET, "A's public settings"),
    "widgets.form_token": (WIDGET, "a form token of A's shop"),
    "widgets.submit_voc": (WIDGET, "order_number names an order"),
    "widgets.lookup_order": (WIDGET, "order_number and contact name an order"),
    "widgets.lookup_requests": (WIDGET, "reference and contact name an item"),
    "widgets.submit_claim": (WIDGET, "order_number and contact name an order"),
    # signed links: the token is the credential and names the shop (SIGNED_LINKS)
    "follow_up_pages.show": (SIGNED_LINK, "the token names the follow-up and its shop"),
    "follow_up_pages.answer": (SIGNED_LINK, "the token names the follow-up and its shop"),
    "voc_satisfaction.show": (SIGNED_LINK, "the token names the item and its shop"),
    "voc_satisfaction.answer": (SIGNED_LINK, "the token names the item and its shop"),
}

# --------------------------------------------------------------------------------------------------
# The world, once per module
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(database_url, redis_url) -> Iterator[World]:
    built = build_world(database_url, redis_url)
    yield built
    close_world(built)
    print(f"\ntenant matrix module: {sum(REQUESTS.values())} requests {REQUESTS}")


def _assert_b_unchanged(world: World) -> None:
    """Every row of B is as it was before the module's first request."""
    before, after = world.b_rows, tenant_rows(world.runtime, world.b)
    changed = {name: (before.get(name), rows) for name, rows in after.items()
               if before.get(name) != rows}
    assert not changed, f"B's data changed: {changed}"


# --------------------------------------------------------------------------------------------------
# Calling
# --------------------------------------------------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: requests made by the module, by surface (printed at the end)
REQUESTS: dict[str, int] = {}


def _count(surface: str) -> None:
    REQUESTS[surface] = REQUESTS.get(surface, 0) + 1


@dataclass
class Answer:
    status: int
    body: str


def _surface(rule: str) -> str | None:
    return next((name for prefix, name in SURFACES if rule.startswith(prefix)), None)


#: surface → A's credentials there → whether they carry every permission. The API's token acts
#: as the shop (every permission) or, with ``X-Staff-Email``, as a person of the merchant; the
#: dashboard's sessions are the owner signed in with a password, the owner launched inside
#: Shopify's admin (session token → partitioned cookie), and an agent.
CREDENTIALS: dict[str, dict[str, bool]] = {
    "api": {"token": True, "token as agent": False},
    "dashboard": {"password": True, "embedded": True, "agent": False},
}
#: what a credential without every permission may answer: 404, or the 403 its role gets — for
#: B's id exactly as for a missing one (the role check runs before the lookup, so a 403 says
#: nothing about the object; see NOT_404 for the owner's credentials)
ROLE_LIMITED = (403, 404)


def _call(world: World, surface: str, credential: str, method: str, path: str,
          body: dict | None, headers: dict | None = None) -> Answer:
    """One request with A's ``credential`` of ``surface`` (``headers``: more for the API)."""
    _count(surface)
    if surface == "api":
        client = world.app.test_client()
        headers = world.api_headers({"X-Staff-Email": world.a.agent_email, **(headers or {})}
                                    if credential == "token as agent" else headers)
        kwargs: dict[str, Any] = {"headers": headers}
        if method != "GET":
            kwargs["json"] = body if body is not None else {}
        response = client.open(path, method=method, **kwargs)
    else:
        response = world.dashboards[credential].request(method, path, body)
    return Answer(response.status_code, response.get_data(as_text=True))


def _credentials(surface: str, *, full_only: bool = False) -> tuple[str, ...]:
    return tuple(name for name, full in CREDENTIALS[surface].items() if full or not full_only)


def _variable_sets(rule) -> list[dict[str, Any]]:
    """The companion values of a rule (one empty set when it has none)."""
    sets: list[dict[str, Any]] = [{}]
    for name in sorted(rule.arguments):
        if name in COMPANIONS:
            sets = [{**chosen, name: value} for chosen in sets for value in COMPANIONS[name]()]
    return sets


@dataclass(frozen=True)
class MatrixCall:
    rule: str
    endpoint: str
    method: str
    surface: str
    companions: tuple


def matrix_calls(app) -> list[MatrixCall]:
    """Every (rule, method, companion values) whose rule has object variables on a surface."""
    calls = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments & OBJECT_VARIABLES.keys() or _surface(rule.rule) is None:
            continue
        if not rule.arguments <= OBJECT_VARIABLES.keys() | COMPANIONS.keys():
            continue
        for method in sorted(rule.methods & set(METHODS)):
            for chosen in _variable_sets(rule):
                calls.append(MatrixCall(rule.rule, rule.endpoint, method, _surface(rule.rule),
                                        tuple(sorted(chosen.items()))))
    return calls


def _path(app, call: MatrixCall, objects: dict[str, Any]) -> str:
    rule = next(r for r in app.url_map.iter_rules()
                if r.rule == call.rule and r.endpoint == call.endpoint)
    return rule.build({**objects, **dict(call.companions)})[1]


# --------------------------------------------------------------------------------------------------
# 1. Coverage: every rule is in the matrix or classified
# --------------------------------------------------------------------------------------------------


def _uncovered(app) -> list[str]:
    generated = {(c.rule, c.endpoint) for c in matrix_calls(app)}
    problems = []
    for rule in app.url_map.iter_rules():
        if (rule.rule, rule.endpoint) in generated or rule.endpoint in CLASSIFIED:
            continue
        methods = ",".join(sorted(rule.methods & set(METHODS)))
        unknown = sorted(rule.arguments - OBJECT_VARIABLES.keys() - COMPANIONS.keys())
        hint = f" (URL variables not in OBJECT_VARIABLES: {unknown})" if unknown else ""
        problems.append(f"new route {methods} {rule.rule} [{rule.endpoint}]: add it to the "
                        f"tenant matrix{hint}")
    return problems


def test_every_route_is_in_the_matrix_or_classified(world):
    """The app's URL map (and the demo's extra pages) holds no rule the matrix does not cover."""
    demo_runtime = dataclasses.replace(
        world.runtime, settings=dataclasses.replace(world.runtime.settings, demo=True))
    demo_app = create_app(runtime=demo_runtime)
    problems = sorted(set(_uncovered(world.app)) | set(_uncovered(demo_app)))
    assert not problems, "\n".join(problems)
    known = {r.endpoint for app in (world.app, demo_app) for r in app.url_map.iter_rules()}
    stale = sorted(set(CLASSIFIED) - known)
    assert not stale, f"CLASSIFIED names endpoints the app no longer has: {stale}"
    generated = {c.endpoint for c in matrix_calls(world.app)}
    twice = sorted(generated & set(CLASSIFIED))
    assert not twice, f"endpoints both generated and classified: {twice}"
    # each kind that is exercised has exactly its table
    for kind, table in ((LIST, LIST_CALLS), (OWN_WRITE, OWN_WRITES), (WIDGET, WIDGET_CASES),
                        (SIGNED_LINK, SIGNED_LINKS)):
        classified = {e for e, (k, _) in CLASSIFIED.items() if k == kind}
        assert classified == set(table), (
            f"{kind}: classified but not exercised {sorted(classified - set(table))}, "
            f"exercised but not classified {sorted(set(table) - classified)}")


def test_a_rule_nobody_classified_fails_the_coverage_check(world):
    """The check itself: an app with one more route is reported by name."""
    from flask import Blueprint
    app = create_app(runtime=world.runtime)
    extra = Blueprint("tenant_matrix_probe", __name__)
    extra.add_url_rule("/dashboard/collections/<int:collection_id>", "probe",
                       lambda collection_id: "")
    extra.add_url_rule("/api/v1/newthing", "plain", lambda: "")
    app.register_blueprint(extra)
    problems = "\n".join(_uncovered(app))
    assert "new route GET /dashboard/collections/<int:collection_id>" in problems
    assert "OBJECT_VARIABLES: ['collection_id']" in problems
    assert "new route GET /api/v1/newthing [tenant_matrix_probe.plain]: add it to the tenant " \
           "matrix" in problems


# --------------------------------------------------------------------------------------------------
# 2. The generated matrix: B's ids with A's credentials
# --------------------------------------------------------------------------------------------------


def test_b_ids_with_a_credentials_are_404_everywhere(world):
    """Every object route × method × A's credential kind: 404, the very answer a missing id
    gets, with none of B's markers; B's rows unchanged afterwards."""
    calls = matrix_calls(world.app)
    rules = {(c.rule, c.endpoint) for c in calls}
    assert len(rules) >= 20, "the matrix lost its routes"
    assert world.a.shop_id not in shop_of_item(world.runtime, world.b.reference), \
        "B's reference is also A's: the matrix would call A's own item"
    failures, made = [], 0
    for call in calls:
        values = {"endpoint": call.endpoint, **dict(call.companions)}
        names = _rule_object_names(world.app, call)
        theirs = {name: OBJECT_VARIABLES[name](world.b) for name in names}
        missing = {name: MISSING[name] for name in names}
        body = (_api_bodies(world, values) if call.surface == "api"
                else _dashboard_forms(world, values))
        their_path, no_path = _path(world.app, call, theirs), _path(world.app, call, missing)
        for credential in _credentials(call.surface):
            got = _call(world, call.surface, credential, call.method, their_path, body)
            none = _call(world, call.surface, credential, call.method, no_path, body)
            made += 2
            where = (f"{call.method} {call.rule} {dict(call.companions) or ''} "
                     f"[{call.endpoint}] as A ({credential})")
            expected = ((NOT_404.get((call.endpoint, call.method), (404, ""))[0],)
                        if CREDENTIALS[call.surface][credential] else ROLE_LIMITED)
            if got.status not in expected:
                hint = (" (a 422: give it a valid body in _api_bodies / _dashboard_forms)"
                        if got.status == 422 else "")
                failures.append(f"{where}: {got.status} for B's id, expected {expected}"
                                f"{hint}: {got.body[:300]}")
            if markers_in(got.body, world.b.markers):
                failures.append(f"{where}: B's data in the answer: "
                                f"{markers_in(got.body, world.b.markers)}")
            mine, nobody = (_scrub(got.body, their_path, *theirs.values()),
                            _scrub(none.body, no_path, *missing.values()))
            if (got.status, mine) != (none.status, nobody):
                failures.append(f"{where}: B's id answers {got.status}, a missing id "
                                f"{none.status}: the answer tells them apart\n"
                                f"{_diff(mine, nobody)}")
    print(f"\ntenant matrix: {len(rules)} rules, {len(calls)} rule/method/companion cases, "
          f"{made} requests")
    assert not failures, "\n".join(failures)
    _assert_b_unchanged(world)


def test_the_matrix_forms_pass_their_schemas(world):
    """The dashboard validates an item action's form before it looks the item up (a refused
    form answers the item page, 404 for B's): each form of the matrix must load, so the 404s
    above come from the lookup."""
    for action, (schema_class, _) in DASHBOARD_ITEM_ACTIONS.items():
        form = _dashboard_forms(world, {"endpoint": "dashboard.item_action", "action": action})
        schema = schema_class()
        schema.load(form_data(schema, MultiDict(form)))  # raises on a form that is refused
    schema = StaffUpdateSchema()
    schema.load(form_data(schema, MultiDict(_dashboard_forms(
        world, {"endpoint": "dashboard.update_staff_member"}))))


def _rule_object_names(app, call: MatrixCall) -> list[str]:
    rule = next(r for r in app.url_map.iter_rules()
                if r.rule == call.rule and r.endpoint == call.endpoint)
    return sorted(rule.arguments & OBJECT_VARIABLES.keys())


def _scrub(body: str, path: str, *values: Any) -> str:
    """The answer without what the caller sent (an echo is no disclosure): the path, and each
    value — a word as typed, URL-encoded or HTML-escaped; a number only where it is echoed
    (``#12``, ``?x=12``: numbers also occur by themselves). A created row's answer is reduced
    to its field names (its id and times are new each time)."""
    text = body
    for form in {path, html.escape(path)}:
        text = text.replace(form, "<path>")
    for value in map(str, values):
        if value.isdigit():
            text = re.sub(rf"(?<=[#=]){value}(?![0-9])", "<value>", text)
            continue
        for form in {value, quote(value), quote_plus(value), html.escape(value)}:
            text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(form)}(?![0-9A-Za-z])", "<value>", text)
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "id" in data:
        return json.dumps(sorted(data))
    return text


def _diff(one: str, other: str) -> str:
    lines = difflib.unified_diff(one.splitlines(), other.splitlines(), "B", "missing",
                                 lineterm="", n=0)
    return "\n".join(list(lines)[:20])


# --------------------------------------------------------------------------------------------------
# 3. Lists with A's credentials show nothing of B
# --------------------------------------------------------------------------------------------------


def _month() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m")


def _a_markers(w: World) -> tuple[str, ...]:
    return w.a.markers


@dataclass(frozen=True)
class Read:
    """A read with A's credentials. ``own``: strings of A's data it must show (else the check
    proves nothing). ``probe``: a term of B's the path searches or filters on, and one nobody
    has — the two answers must be the same."""

    path: Callable[[World, str], str]
    own: Callable[[World], tuple[str, ...]] | None = _a_markers
    probe: Callable[[World], tuple[str, str]] | None = None


#: a search term nobody has
NOBODY = "zz-nobody-has-this-zz"


def _search(term: Callable[[World], str]) -> Callable[[World], tuple[str, str]]:
    return lambda w: (term(w), NOBODY)


def _b_staff(w: World) -> tuple[str, str]:
    return str(w.b.owner_id), str(MISSING["staff_id"])


#: endpoint → (surface, reads)
LIST_CALLS: dict[str, tuple[str, list[Read]]] = {
    "programs.list_programs": ("api", [Read(lambda w, t: "/api/v1/programs",
                                            own=lambda w: (w.a.program_name,))]),
    "programs.list_claims": ("api", [
        Read(lambda w, t: "/api/v1/claims"),
        Read(lambda w, t: "/api/v1/claims?status=pending")]),
    "orders.list_orders": ("api", [Read(lambda w, t: "/api/v1/orders")]),
    "voc.list_voc_items": ("api", [
        Read(lambda w, t: "/api/v1/voc/items"),
        Read(lambda w, t: f"/api/v1/voc/items?q={t}", None, _search(lambda w: w.b.markers[0])),
        Read(lambda w, t: f"/api/v1/voc/items?q={t}", None, _search(lambda w: w.b.buyer_email)),
        Read(lambda w, t: f"/api/v1/voc/items?q={t}", None, _search(lambda w: w.b.reference)),
        Read(lambda w, t: f"/api/v1/voc/items?assignee={t}", None, _b_staff)]),
    "voc.get_voc_settings": ("api", [Read(lambda w, t: "/api/v1/voc/settings", None)]),
    "voc.list_staff": ("api", [Read(lambda w, t: "/api/v1/voc/staff")]),
    "voc_reports.get_board": ("api", [Read(lambda w, t: "/api/v1/voc/board")]),
    "voc_reports.get_monthly_report": ("api", [
        Read(lambda w, t: f"/api/v1/voc/reports/monthly?month={_month()}", None),
        Read(lambda w, t: f"/api/v1/voc/reports/monthly?month={_month()}&format=html")]),
    "voc_reports.export_items": ("api", [
        Read(lambda w, t: "/api/v1/voc/export/items.csv"),
        Read(lambda w, t: f"/api/v1/voc/export/items.csv?q={t}", None,
             _search(lambda w: w.b.markers[0]))]),
    "voc_reports.export_events": ("api", [Read(lambda w, t: "/api/v1/voc/export/events.csv")]),
    "widget_settings.get_settings": ("api", [Read(lambda w, t: "/api/v1/widget/settings")]),
    "dashboard.inbox": ("dashboard", [
        Read(lambda w, t: "/dashboard/inbox"),
        Read(lambda w, t: f"/dashboard/inbox?q={t}", None, _search(lambda w: w.b.markers[0])),
        Read(lambda w, t: f"/dashboard/inbox?q={t}", None, _search(lambda w: w.b.reference)),
        Read(lambda w, t: f"/dashboard/inbox?q={t}", None, _search(lambda w: w.b.buyer_email)),
        Read(lambda w, t: f"/dashboard/inbox?assignee={t}", None, _b_staff)]),
    "dashboard.board_page": ("dashboard", [Read(lambda w, t: "/dashboard/board")]),
    "dashboard.reports_page": ("dashboard", [Read(lambda w, t: "/dashboard/reports", None)]),
    "dashboard.monthly_report": ("dashboard", [
        Read(lambda w, t: f"/dashboard/reports/monthly?month={_month()}&format=html", None)]),
    "dashboard.export_items": ("dashboard", [
        Read(lambda w, t: "/dashboard/reports/items.csv"),
        Read(lambda w, t: f"/dashboard/reports/items.csv?q={t}", None,
             _search(lambda w: w.b.markers[0]))]),
    "dashboard.export_events": ("dashboard", [
        Read(lambda w, t: f"/dashboard/reports/events.csv?month={_month()}")]),
    "dashboard.settings_home": ("dashboard", [Read(lambda w, t: "/dashboard/settings")]),
    "dashboard.staff_page": ("dashboard", [Read(lambda w, t: "/dashboard/staff")]),
}


def test_lists_with_a_credentials_show_nothing_of_b(world):
    """Each list, page, board, report and export read with A's credentials: 2xx, A's own data
    where it has some, none of B's markers; a search or filter on B's term answers as one on a
    term nobody has."""
    failures = []
    for endpoint, (surface, reads) in LIST_CALLS.items():
        for read in reads:
            term, nobody = read.probe(world) if read.probe else ("", "")
            path = read.path(world, term)
            for credential in _credentials(surface, full_only=True):
                got = _call(world, surface, credential, "GET", path, None)
                where = f"GET {path} [{endpoint}] as A ({credential})"
                body = _scrub(got.body, path, term) if term else got.body
                if got.status not in (200, 202):
                    failures.append(f"{where}: {got.status} {got.body[:200]}")
                if markers_in(body, world.b.markers):
                    failures.append(f"{where}: B's data: {markers_in(body, world.b.markers)}")
                if read.own and got.status == 200 and not markers_in(got.body, read.own(world)):
                    failures.append(f"{where}: none of A's own data (the check proves nothing)")
                if term:
                    other = read.path(world, nobody)
                    none = _call(world, surface, credential, "GET", other, None)
                    if (got.status, body) != (none.status, _scrub(none.body, other, nobody)):
                        failures.append(f"{where}: answers unlike a term nobody has:\n"
                                        f"{_diff(body, _scrub(none.body, other, nobody))}")
    assert not failures, "\n".join(failures)
    _assert_b_unchanged(world)


# --------------------------------------------------------------------------------------------------
# 4. Writes in A's own shop that can name B's things
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """A write (or a filtered read) with A's credentials. ``foreign`` gives B's value of what
    the path or body names; the answer to it must be the answer to ``missing``, a value nobody
    has."""

    surface: str
    method: str
    path: Callable[[World, Any], str]
    body: Callable[[World, Any], dict]
    status: int
    foreign: Callable[[Tenant], Any] | None = None
    missing: Any = None


_EMAILS = itertools.count(1)


def _fresh_email() -> str:
    """A new person's address in A's domain (each write adds one)."""
    return f"new-{next(_EMAILS)}@tenant-a.test"


def _at(path: str) -> Callable[[World, Any], str]:
    return lambda w, value: path


#: endpoint → a write of A's own, naming B's thing where the body can name one
OWN_WRITES: dict[str, Write] = {
    "programs.create_program": Write(  # program names are per shop: B's is free for A
        "api", "POST", _at("/api/v1/programs"),
        lambda w, name: {"kind": "free_return", "name": name, "terms": FREE_RETURN_TERMS},
        201, foreign=lambda t: t.program_name, missing="No such programme"),
    "voc.create_voc_item": Write(
        "api", "POST", _at("/api/v1/voc/items"),
        lambda w, number: {"kind": "inquiry", "body": "a call", "order_number": number},
        422, foreign=lambda t: t.order_number, missing="#999999"),
    "voc.bulk_voc_action": Write(
        "api", "POST", _at("/api/v1/voc/items/bulk"),
        lambda w, ref: {"action": "note", "references": [ref], "params": {"note": "x"}},
        200, foreign=lambda t: t.reference, missing=MISSING["reference"]),
    "voc.put_voc_settings": Write(
        "api", "PUT", _at("/api/v1/voc/settings"), lambda w, _: {"default_severity": "normal"},
        200),
    "voc.create_staff": Write(
        "api", "POST", _at("/api/v1/voc/staff"),
        lambda w, _: {"email": _fresh_email(), "name": "New agent"}, 201),
    "widget_settings.put_settings": Write(
        "api", "PUT", _at("/api/v1/widget/settings"),
        lambda w, _: {"categories": [{"key": "delivery", "labels": {"en": "A delivery 5101"}}]},
        200),
    "dashboard.bulk": Write(
        "dashboard", "POST", _at("/dashboard/inbox/bulk"),
        lambda w, item_id: {"action": "acknowledge", "item_ids": str(item_id)},
        200, foreign=lambda t: t.item_id, missing=MISSING["item_id"]),
    "dashboard.add_staff_member": Write(
        "dashboard", "POST", _at("/dashboard/staff"),
        lambda w, _: {"email": _fresh_email(), "name": "Another", "role": "agent",
                      "locale": "en"}, 303),
    "dashboard.change_locale": Write(
        "dashboard", "POST", _at("/dashboard/locale"), lambda w, _: {"locale": "en"}, 303),
}

#: more of B's things that A's requests can name outside the URL's object variables
NAMED_IN_BODY: dict[str, Write] = {
    "API: assign A's item to B's staff": Write(
        "api", "POST", lambda w, _: f"/api/v1/voc/items/{w.a.references[0]}/assign",
        lambda w, staff: {"assignee_id": staff}, 422,
        foreign=lambda t: t.owner_id, missing=MISSING["staff_id"]),
    "API: A's item a duplicate of B's": Write(
        "api", "POST", lambda w, _: f"/api/v1/voc/items/{w.a.references[1]}/duplicate",
        lambda w, ref: {"original": ref}, 422,
        foreign=lambda t: t.reference, missing=MISSING["reference"]),
    "dashboard: assign A's item to B's staff": Write(
        "dashboard", "POST", lambda w, _: f"/dashboard/items/{w.a.item_ids[0]}/assign",
        lambda w, staff: {"assignee_id": str(staff)}, 422,
        foreign=lambda t: t.owner_id, missing=MISSING["staff_id"]),
    "dashboard: A's item a duplicate of B's": Write(
        "dashboard", "POST", lambda w, _: f"/dashboard/items/{w.a.item_ids[1]}/duplicate",
        lambda w, item_id: {"original": str(item_id)}, 422,
        foreign=lambda t: t.item_id, missing=MISSING["item_id"]),
    "dashboard: return B's order line on A's item": Write(
        "dashboard", "POST", lambda w, _: f"/dashboard/items/{w.a.item_id}/order_action",
        lambda w, line: {"action": "return", "lines": line, "reason": "broken"}, 422,
        foreign=lambda t: t.line_ids[0], missing="no-such-line"),
    "dashboard: inbox filtered on B's shop": Write(
        "dashboard", "GET", lambda w, shop: f"/dashboard/inbox?shop={shop}", lambda w, _: {},
        400, foreign=lambda t: t.shop_id, missing=MISSING["shop_id"]),
    "dashboard: export filtered on B's shop": Write(
        "dashboard", "GET", lambda w, shop: f"/dashboard/reports/items.csv?shop={shop}",
        lambda w, _: {}, 400, foreign=lambda t: t.shop_id, missing=MISSING["shop_id"]),
}


def _write(world: World, write: Write, value: Any, credential: str) -> tuple[str, Answer]:
    path = write.path(world, value)
    body = None if write.method == "GET" else write.body(world, value)
    return path, _call(world, write.surface, credential, write.method, path, body)


def test_writes_naming_b_in_the_body_reach_nothing_of_b(world):
    """A's writes (and filters) naming B's order, item, staff or shop: the answer to B's value
    is the answer to a missing one, never B's data; B's rows unchanged."""
    failures = []
    for name, write in {**OWN_WRITES, **NAMED_IN_BODY}.items():
        for credential in _credentials(write.surface, full_only=True):
            theirs = write.foreign(world.b) if write.foreign else None
            their_path, got = _write(world, write, theirs, credential)
            where = f"{write.method} {their_path} [{name}] as A ({credential})"
            if got.status != write.status:
                failures.append(f"{where}: {got.status}, expected {write.status}: "
                                f"{got.body[:300]}")
            if markers_in(got.body, world.b.markers):
                failures.append(f"{where}: B's data: {markers_in(got.body, world.b.markers)}")
            if write.foreign is None:
                continue
            no_path, none = _write(world, write, write.missing, credential)
            mine = _scrub(got.body, their_path, theirs)
            nobody = _scrub(none.body, no_path, write.missing)
            if (got.status, mine) != (none.status, nobody):
                failures.append(f"{where}: B's value answers {got.status}, a missing one "
                                f"{none.status}: the answer tells them apart\n"
                                f"{_diff(mine, nobody)}")
    assert not failures, "\n".join(failures)
    _assert_b_unchanged(world)


# --------------------------------------------------------------------------------------------------
# 5. The widget: A's key, B's order numbers and references
# --------------------------------------------------------------------------------------------------


def _widget(world: World, method: str, name: str, body: dict | None = None):
    _count("widget")
    client = world.app.test_client()
    path = f"/widget/v1/{world.a.widget_key}/{name}"
    if method == "GET":
        return client.get(path)
    return client.post(path, json=body, headers={"X-CCMS-Widget": "1"})


def _old_token(world: World, shop_id: int) -> str:
    """A form token old enough to be accepted (the widget refuses one filled too quickly)."""
    return form_token(world.app.config["SECRET_KEY"], shop_id,
                      issued_at=datetime.now(timezone.utc).timestamp() - 60)


def _b_phone(world: World) -> str:
    return "010-5555-" + world.b.order_number.lstrip("#")


#: endpoint → (method, path, body with B's values, body with missing values, expected status)
WIDGET_CASES: dict[str, tuple[str, str, Callable | None, Callable | None, int]] = {
    "widgets.config": ("GET", "config", None, None, 200),
    "widgets.form_token": ("GET", "token", None, None, 200),
    "widgets.lookup_order": (
        "POST", "orders/lookup",
        lambda w: {"order_number": w.b.order_number, "contact": w.b.buyer_email},
        lambda w: {"order_number": "#999999", "contact": w.b.buyer_email}, 404),
    "widgets.lookup_requests": (
        "POST", "requests/lookup",
        lambda w: {"reference": w.b.reference, "contact": w.b.buyer_email},
        lambda w: {"reference": MISSING["reference"], "contact": w.b.buyer_email}, 404),
    "widgets.submit_claim": (
        "POST", "claims",
        lambda w: {"program": "free_return", "order_number": w.b.order_number,
                   "contact": w.b.buyer_email, "message": "return it",
                   "conditions_accepted": True, "token": _old_token(w, w.a.shop_id)},
        lambda w: {"program": "free_return", "order_number": "#999999",
                   "contact": w.b.buyer_email, "message": "return it",
                   "conditions_accepted": True, "token": _old_token(w, w.a.shop_id)}, 404),
    "widgets.submit_voc": (
        "POST", "voc",
        lambda w: {"kind": "complaint", "message": "where is it", "order_number":
                   w.b.order_number, "phone": _b_phone(w), "token": _old_token(w, w.a.shop_id)},
        lambda w: {"kind": "complaint", "message": "where is it", "order_number": "#999999",
                   "phone": _b_phone(w), "token": _old_token(w, w.a.shop_id)}, 201),
}


def test_the_widget_with_a_key_and_b_numbers_reveals_nothing(world):
    """A's widget key with B's order number, reference and contact: the same "not found" as a
    number nobody has; a message naming B's order is A's, linked to no order; B's form token
    is refused by A's key."""
    failures = []
    for endpoint, (method, name, theirs, missing, status) in WIDGET_CASES.items():
        got = _widget(world, method, name, theirs(world) if theirs else None)
        where = f"{method} widget/{name} [{endpoint}] with A's key"
        body = got.get_data(as_text=True)
        if got.status_code != status:
            failures.append(f"{where}: {got.status_code}, expected {status}: {body[:300]}")
        if markers_in(body, world.b.markers):
            failures.append(f"{where}: B's data: {markers_in(body, world.b.markers)}")
        if missing is None:
            continue
        none = _widget(world, method, name, missing(world))
        if status == 201:  # a new item each time: compare what the answers say, not their values
            same = (got.status_code, sorted(got.get_json())) == (none.status_code,
                                                                   sorted(none.get_json()))
        else:
            same = (got.status_code, body) == (none.status_code, none.get_data(as_text=True))
        if not same:
            failures.append(f"{where}: B's number answers {got.status_code}, a missing one "
                            f"{none.status_code}:\n{_diff(body, none.get_data(as_text=True))}")
    with world.runtime.db.session() as session:
        linked = session.scalars(select(VocItem).where(VocItem.shop_id == world.a.shop_id,
                                                       VocItem.order_id == world.b.order_id))
        assert not list(linked), "an A item was linked to B's order"
    stolen = _widget(world, "POST", "voc", {
        "kind": "inquiry", "message": "hello", "phone": "010-1234-5678",
        "token": _old_token(world, world.b.shop_id)})
    assert stolen.status_code == 422 and "token" in stolen.get_json()["error"]["fields"]["json"]
    assert not failures, "\n".join(failures)
    _assert_b_unchanged(world)


# --------------------------------------------------------------------------------------------------
# 6. Signed links: a token naming B's object with A's shop is no link at all
# --------------------------------------------------------------------------------------------------

#: endpoint → (method, purpose, payload naming B's object under A's shop, payload naming nothing,
#: form)
SIGNED_LINKS: dict[str, tuple[str, str, Callable, Callable, dict]] = {
    "follow_up_pages.show": ("GET", "/f", lambda w: {"f": w.b.follow_up_id, "s": w.a.shop_id},
                             lambda w: {"f": MISSING["item_id"], "s": w.a.shop_id}, {}),
    "follow_up_pages.answer": ("POST", "/f", lambda w: {"f": w.b.follow_up_id, "s": w.a.shop_id},
                               lambda w: {"f": MISSING["item_id"], "s": w.a.shop_id},
                               {"message": "hello", "score": "1"}),
    "voc_satisfaction.show": ("GET", "/s",
                              lambda w: {"item": w.b.item_ids[1], "shop": w.a.shop_id},
                              lambda w: {"item": MISSING["item_id"], "shop": w.a.shop_id}, {}),
    "voc_satisfaction.answer": ("POST", "/s",
                                lambda w: {"item": w.b.item_ids[1], "shop": w.a.shop_id},
                                lambda w: {"item": MISSING["item_id"], "shop": w.a.shop_id},
                                {"score": "1", "comment": "bad"}),
}
_PURPOSES = {"/f": LINK_PURPOSE, "/s": SATISFACTION_PURPOSE}


def test_signed_links_naming_b_objects_under_a_shop_are_not_found(world):
    """A link is its own credential and names its shop: one naming B's follow-up or item with
    A's shop (or B's with a tampered signature) answers like one naming nothing."""
    client = world.app.test_client()
    settings = world.runtime.settings
    failures = []
    for endpoint, (method, prefix, theirs, missing, form) in SIGNED_LINKS.items():
        purpose = _PURPOSES[prefix]
        mixed = make_token(settings, purpose, theirs(world))
        nothing = make_token(settings, purpose, missing(world))
        own = world.b.follow_up_token if prefix == "/f" else world.b.satisfaction_token
        tampered = own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB")
        answers = {}
        for label, token in (("mixed", mixed), ("nothing", nothing), ("tampered", tampered)):
            _count("links")
            response = client.open(f"{prefix}/{token}", method=method, data=form)
            answers[label] = (response.status_code, response.get_data(as_text=True))
        where = f"{method} {prefix}/<token> [{endpoint}]"
        if answers["mixed"][0] != 404:
            failures.append(f"{where}: B's object under A's shop answers {answers['mixed'][0]}")
        leaked = markers_in(answers["mixed"][1], world.b.markers)
        if leaked:
            failures.append(f"{where}: B's data: {leaked}")
        if answers["mixed"] != answers["nothing"] or answers["tampered"][0] != 404:
            failures.append(f"{where}: answers differ: "
                            f"{ {k: v[0] for k, v in answers.items()} }")
    # the links themselves work (the 404s above are not a broken page)
    assert client.get(f"/f/{world.a.follow_up_token}").status_code == 200
    assert client.get(f"/s/{world.a.satisfaction_token}").status_code == 200
    assert not failures, "\n".join(failures)
    _assert_b_unchanged(world)


# --------------------------------------------------------------------------------------------------
# 7. The embedded admin and the API's acting person
# --------------------------------------------------------------------------------------------------


def test_the_admin_landing_shows_the_token_shop_only(world):
    """``/admin/`` with A's Shopify session token names A's shop; ``<platform>`` is no tenant."""
    client = world.app.test_client()
    token = session_token(shop=world.a.domain)
    for path in ("/admin/", "/admin/shopify"):
        answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
        _count("admin")
        body = answer.get_data(as_text=True)
        assert answer.status_code == 200 and world.a.domain in body, path
        assert not markers_in(body, world.b.markers), path


def test_the_api_cannot_act_as_b_staff(world):
    """``X-Staff-Email`` naming B's owner is refused like an address nobody has."""
    answers = [_call(world, "api", "token", "GET", "/api/v1/voc/items", None, {
        "X-Staff-Email": email}) for email in (world.b.owner_email, "nobody@nowhere.test")]
    assert [a.status for a in answers] == [422, 422]
    assert answers[0].body == answers[1].body
    _assert_b_unchanged(world)



def test_public_and_operator_pages_name_no_tenant(world):
    """Every classified public or operator page without URL variables (login, launch, API
    documents, loader, health, metrics) shows none of B's markers, nor A's."""
    client = world.app.test_client()
    checked = []
    for rule in world.app.url_map.iter_rules():
        kind = CLASSIFIED.get(rule.endpoint, ("", ""))[0]
        if kind not in (PUBLIC, OPERATIONS) or rule.arguments or "GET" not in rule.methods:
            continue
        answer = client.get(rule.rule)
        _count("public")
        body = answer.get_data(as_text=True)
        assert answer.status_code < 500, rule.rule
        assert not markers_in(body, world.b.markers + world.a.markers), rule.rule
        checked.append(rule.rule)
    assert "/metrics" in checked and "/dashboard/login" in checked
