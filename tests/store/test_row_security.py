"""PostgreSQL row-level security, the tenant backstop: every table with a ``shop_id`` has the
policy; a request's ORM transactions see and write only the shops its authentication verified,
even through a query that forgot its ``shop_id``; workers (no request) see everything; the owner
is held to it only when forced. Run as a role that does not own the tables, as a production web
role would (the suite's own role is a superuser, which PostgreSQL never holds to policies)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from flask import Flask, g
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from ccms_addon.cli import main
from ccms_addon.store.db import Database, make_engine
from ccms_addon.store.models import Base, VocChannel, VocItem, VocKind
from ccms_addon.store.tenancy import TENANT_TABLES
from ccms_addon.voc.intake import NewVocItem, record_voc_item
from tests.pg_roles import web_role


@pytest.fixture
def postgres(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row-level security is PostgreSQL's")
    return database_url


@pytest.fixture
def web_role_url(postgres):
    with web_role(postgres, "ccms_rls") as url:
        yield url


def _item(runtime, shop_id: int, body: str) -> int:
    return record_voc_item(runtime, shop_id, NewVocItem(
        kind=VocKind.COMPLAINT, channel=VocChannel.WIDGET, body=body, actor="shopper")).id


@pytest.fixture
def two_shops(runtime, make_shop):
    a = make_shop("shopify", "rls-a.myshopify.com").shop.id
    b = make_shop("shopify", "rls-b.myshopify.com").shop.id
    return a, b, _item(runtime, a, "A's parcel is late"), _item(runtime, b, "B's parcel is late")


def test_every_table_with_a_shop_id_has_the_policy(postgres):
    with_shop = {t.name for t in Base.metadata.sorted_tables if "shop_id" in t.c}
    assert with_shop == set(TENANT_TABLES), "a new table with shop_id: add it to TENANT_TABLES " \
                                            "and give it the policy in a migration"
    engine = make_engine(postgres)
    with engine.connect() as conn:
        policed = set(conn.execute(text(
            "SELECT tablename FROM pg_policies WHERE policyname = 'tenant_scope'")).scalars())
        enabled = set(conn.execute(text(
            "SELECT relname FROM pg_class WHERE relrowsecurity")).scalars())
    engine.dispose()
    assert policed == with_shop and with_shop <= enabled


def test_a_request_sees_and_writes_only_its_verified_shops(web_role_url, two_shops):
    a, b, a_item, b_item = two_shops
    db, app = Database(web_role_url), Flask(__name__)
    try:
        def visible() -> set[int]:
            with db.session() as session:  # a query that forgot its shop_id
                return set(session.scalars(select(VocItem.id).where(
                    VocItem.id.in_([a_item, b_item]))))

        assert visible() == {a_item, b_item}  # a worker: no request, no tenant
        with app.test_request_context():
            assert visible() == {a_item, b_item}  # before authentication
            g.shop_id = a  # the merchant API, once the token named shop A
            assert visible() == {a_item}
            with pytest.raises(ProgrammingError, match="row-level security"):
                with db.session() as session:
                    session.add(VocItem(shop_id=b, reference="VOC-RLS-1", kind=VocKind.COMPLAINT,
                                        channel=VocChannel.WIDGET.value, body="forged"))
            with db.session() as session:
                assert session.get(VocItem, b_item) is None
        with app.test_request_context():
            g.dash_viewer = SimpleNamespace(shop_ids=[a, b])  # a merchant with both shops
            assert visible() == {a_item, b_item}
        with app.test_request_context():
            g.dash_viewer = SimpleNamespace(shop_ids=[])  # a person with no shop: nothing
            assert visible() == set()
        with app.test_request_context():
            g.widget_shop = SimpleNamespace(id=b)  # the widget key of shop B
            assert visible() == {b_item}
    finally:
        db.dispose()


def test_the_owner_is_held_to_the_policies_only_when_forced(settings, postgres):
    env = {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
           "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}

    def run(*args):
        result = CliRunner().invoke(main, ["db", "row-security", *args], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert run()["forced"] == []
    try:
        assert sorted(run("force")["forced"]) == sorted(TENANT_TABLES)
    finally:
        assert run("no-force")["forced"] == []
