"""`ccms-addon keys rotate`: every secret at rest moves to the new key; the old one can go."""

import dataclasses

import pytest

from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from ccms_addon.cli import main
from ccms_addon.crypto import SecretBox
from ccms_addon.store.models import PrivacyRequest, PrivacyRequestKind, Shop, utcnow

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def run(env, *args):
    return CliRunner().invoke(main, list(args), env=env)


def test_rotate_moves_every_secret_to_the_new_key(settings, runtime, make_shop):
    env = {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
           "CCMS_SECRET_KEY": settings.secret_key, "CCMS_VAR_DIR": str(settings.var_dir)}
    old_box = SecretBox(dataclasses.replace(settings, encryption_keys=(OLD,)))
    made = make_shop("woocommerce", "https://shop.example", webhook_secret="whsec",
                     credentials={"consumer_key": "ck", "consumer_secret": "cs"})
    with runtime.db.session() as s:
        shop = s.get(Shop, made.shop.id)
        shop.webhook_secret_encrypted = old_box.encrypt("whsec")
        shop.credentials_encrypted = old_box.encrypt_json({"consumer_secret": "cs"})
        shop.settings = {"channels": {"kakao": {"api_key_encrypted": old_box.encrypt("kk"),
                                                "sender": "plain"}}}
        s.add(PrivacyRequest(shop_id=shop.id, kind=PrivacyRequestKind.DATA_REQUEST, subject={},
                             export_encrypted=old_box.encrypt("{}"), completed_at=utcnow()))

    refused = run(env, "keys", "rotate")
    assert refused.exit_code != 0 and "keys generate" in refused.output

    result = run({**env, "CCMS_ENCRYPTION_KEYS": f"{NEW},{OLD}"}, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert "4 secrets in 2 rows" in result.output

    new_only = SecretBox(dataclasses.replace(settings, encryption_keys=(NEW,)))
    with runtime.db.session() as s:
        shop = s.get(Shop, made.shop.id)
        assert new_only.decrypt(shop.webhook_secret_encrypted) == "whsec"
        assert new_only.decrypt_json(shop.credentials_encrypted) == {"consumer_secret": "cs"}
        channel = shop.settings["channels"]["kakao"]
        assert new_only.decrypt(channel["api_key_encrypted"]) == "kk" and channel["sender"] == "plain"
        request = s.scalar(select(PrivacyRequest))
        assert new_only.decrypt(request.export_encrypted) == "{}"
        # the old key alone opens nothing any more: it can be dropped
        only_old = SecretBox(dataclasses.replace(settings, encryption_keys=(OLD,),
                                                 secret_key="another-instance"))
        with pytest.raises(ValueError):
            only_old.decrypt(shop.webhook_secret_encrypted)


def test_the_derived_key_still_opens_what_it_wrote(settings):
    before = SecretBox(settings).encrypt("secret")
    after = SecretBox(dataclasses.replace(settings, encryption_keys=(NEW,)))
    assert after.decrypt(before) == "secret"
    assert after.rotate(before) != before and after.decrypt(after.rotate(before)) == "secret"


def test_generate_prints_a_fernet_key():
    key = CliRunner().invoke(main, ["keys", "generate"]).output.strip()
    assert Fernet(key.encode())
