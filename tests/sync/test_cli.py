"""``ccms-addon sync orders --shop ID [--since DATE]`` through click's runner on the test store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ccms_addon import sync
from ccms_addon.sync import sync_group
from tests.sync.conftest import ORDERS


@pytest.fixture
def cli_env(settings, runtime):
    return {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
            "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}


def run(cli_env, *args):
    return CliRunner().invoke(sync_group, ["orders", *args], env=cli_env,
                              catch_exceptions=False)


def test_sync_orders_backfills_with_a_progress_bar(cli_env, woocommerce):
    result = run(cli_env, "--shop", str(woocommerce.shop_id))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {"shop_id": woocommerce.shop_id, "since": None, "resumed": False,
                       "pages": 1, "orders": ORDERS, "changed": ORDERS, "completed": True}
    assert "orders" in result.stderr and f"{ORDERS}/{ORDERS}" in result.stderr
    assert "backfill completed" in result.stderr


def test_sync_orders_since(cli_env, woocommerce):
    result = run(cli_env, "--shop", str(woocommerce.shop_id), "--since", "2025-03-04")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["since"] == "2025-03-04" and 0 < summary["orders"] < ORDERS


def test_sync_orders_resumes_an_interrupted_backfill(cli_env, runtime, woocommerce, clock,
                                                     monkeypatch):
    from ccms_addon.plugins.woocommerce import client as woo_client
    from ccms_addon.plugins.woocommerce import sync as woo_sync
    monkeypatch.setattr(woo_client, "MAX_PER_PAGE", 10)
    monkeypatch.setattr(woo_sync, "MAX_PER_PAGE", 10)
    sync.backfill_orders(runtime, woocommerce.shop_id, stop_after_pages=2, sleep=clock.sleep)

    result = run(cli_env, "--shop", str(woocommerce.shop_id))

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["resumed"] and summary["completed"] and summary["orders"] >= ORDERS
    assert summary["pages"] < 7  # not from the first page again
    assert "resumed and completed" in result.stderr


def test_sync_orders_reports_refused_credentials(cli_env, woocommerce):
    woocommerce.server.consumer_secret = "revoked"
    result = CliRunner().invoke(sync_group, ["orders", "--shop", str(woocommerce.shop_id)],
                                env=cli_env)
    assert result.exit_code == 1
    assert "refused the shop's credentials" in result.stderr
    assert "install the app again" in result.stderr


def test_sync_orders_unknown_shop(cli_env):
    result = CliRunner().invoke(sync_group, ["orders", "--shop", "987654"], env=cli_env)
    assert result.exit_code == 1 and "no shop with id 987654" in result.stderr


def test_sync_orders_since_must_be_a_day(cli_env, woocommerce):
    result = CliRunner().invoke(sync_group, ["orders", "--shop", str(woocommerce.shop_id),
                                             "--since", "March"], env=cli_env)
    assert result.exit_code == 2 and "--since" in result.stderr
