"""The ccms-addon command, driven through click's runner on the test store."""

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ccms_addon.cli import main
from ccms_addon.crypto import token_digest
from ccms_addon.store.models import Shop


@pytest.fixture
def cli_env(settings, runtime):
    return {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
            "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}


def run(cli_env, *args):
    return CliRunner().invoke(main, list(args), env=cli_env, catch_exceptions=False)


def test_db_upgrade_is_idempotent(cli_env):
    result = run(cli_env, "db", "upgrade")
    assert result.exit_code == 0


@pytest.mark.parametrize("platform,given,stored", [
    ("shopify", "My-Shop.myshopify.com", "my-shop.myshopify.com"),
    ("woocommerce", "https://Shop.Example.com/", "https://shop.example.com"),
    ("cafe24", "MyMall", "mymall"),
])
def test_shops_add_prints_one_json_object(cli_env, runtime, platform, given, stored):
    result = run(cli_env, "shops", "add", "--platform", platform, "--domain", given,
                 "--webhook-secret", "s3cret", "--credential", "access_token=tok")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert set(printed) == {"shop_id", "widget_key", "api_token"}
    with runtime.db.session() as s:
        shop = s.scalars(select(Shop)).one()
        assert shop.domain == stored and shop.id == printed["shop_id"]
        assert shop.api_token_digest == token_digest(printed["api_token"])
        assert "s3cret" not in shop.webhook_secret_encrypted
        assert runtime.box.decrypt(shop.webhook_secret_encrypted) == "s3cret"
        assert runtime.box.decrypt_json(shop.credentials_encrypted) == {"access_token": "tok"}


def test_shops_add_refuses_a_bad_domain_and_a_second_copy(cli_env):
    bad = run(cli_env, "shops", "add", "--platform", "shopify", "--domain", "evil.com")
    assert bad.exit_code == 2 and "--domain" in bad.output
    assert run(cli_env, "shops", "add", "--platform", "shopify", "--domain",
               "a.myshopify.com").exit_code == 0
    again = run(cli_env, "shops", "add", "--platform", "shopify", "--domain", "a.myshopify.com")
    assert again.exit_code == 1 and "already registered" in again.output


def test_shops_add_unknown_platform(cli_env):
    result = run(cli_env, "shops", "add", "--platform", "magento", "--domain", "x")
    assert result.exit_code == 2 and "installed: cafe24, shopify, woocommerce" in result.output


def test_widget_configure_validates_and_stores(cli_env, runtime, make_shop, tmp_path):
    shop = make_shop("shopify", "a.myshopify.com").shop
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"phone": "+1 555 0100", "default_locale": "ko"}))
    result = run(cli_env, "widget", "configure", "--shop", str(shop.id), str(good))
    assert result.exit_code == 0, result.output
    with runtime.db.session() as s:
        assert s.get(Shop, shop.id).settings["widget"]["phone"] == "+1 555 0100"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"position": "middle"}))
    result = run(cli_env, "widget", "configure", "--shop", str(shop.id), str(bad))
    assert result.exit_code == 1 and "position" in result.output
