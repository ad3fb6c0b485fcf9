"""``ccms-addon programs create | list | enroll``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ccms_addon.cli import main
from ccms_addon.store.models import Enrollment
from tests.programs.conftest import CHECK_IN_TERMS, order_record


@pytest.fixture
def cli_env(settings, runtime):
    return {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
            "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}


def run(cli_env, *args, input=None):
    return CliRunner().invoke(main, list(args), env=cli_env, input=input, catch_exceptions=False)


def test_create_list_and_enroll_past_orders(cli_env, runtime, shop, sync_order):
    sync_order(order_record("1001"), order_record("1002"), order_record("1003", fulfilled=False))
    program = json.dumps({"kind": "follow_up", "name": "체크인", "terms": CHECK_IN_TERMS})
    created = run(cli_env, "programs", "create", "--shop", str(shop.id), "-", input=program)
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["version"] == 1
    listed = [json.loads(line) for line in run(cli_env, "programs", "list", "--shop",
                                               str(shop.id)).output.splitlines()]
    assert [p["name"] for p in listed] == ["체크인"]
    enrolled = run(cli_env, "programs", "enroll", "--shop", str(shop.id), "--since", "2020-01-01")
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.output.strip().splitlines()[-1])["enrolled"] == 2
    again = run(cli_env, "programs", "enroll", "--shop", str(shop.id))
    assert json.loads(again.output.strip().splitlines()[-1])["enrolled"] == 0
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 2


def test_invalid_programs_are_refused_with_field_errors(cli_env, shop):
    bad = json.dumps({"kind": "free_return", "name": "x", "terms": {"window_days": -1}})
    result = run(cli_env, "programs", "create", "--shop", str(shop.id), "-", input=bad)
    assert result.exit_code == 1 and "window_days" in result.output
    missing = run(cli_env, "programs", "create", "--shop", "999999", "-", input=json.dumps(
        {"kind": "follow_up", "name": "x", "terms": CHECK_IN_TERMS}))
    assert missing.exit_code == 1 and "no shop" in missing.output
