"""Settings › API access: the owner issues the shop's merchant-API token, shown once; the previous
token stops working; other roles and other merchants' shops get nothing; the CLI does the same."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from ccms_addon.cli import main

TOKEN = re.compile(r'id="api-token"[^>]*value="(ccms_[A-Za-z0-9_-]+)"')


def _api(client, token: str):
    return client.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"})


def test_the_owner_issues_a_token_that_works_once_shown_and_replaces_the_last(app, signed_in,
                                                                              team):
    owner = signed_in("owner")
    path = f"/dashboard/settings/{team.shop_ids[0]}/api"
    before = owner.get(path)
    assert before.status_code == 200 and before.headers["Cache-Control"] == "no-store"
    html = before.get_data(as_text=True)
    assert "never shown" in html and not TOKEN.search(html) and "/api/v1/openapi.json" in html

    first = owner.post(path, {})
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    token = TOKEN.search(first.get_data(as_text=True)).group(1)
    api = app.test_client()
    assert _api(api, token).status_code == 200
    again = owner.get(path).get_data(as_text=True)
    assert not TOKEN.search(again) and "never shown" not in again  # shown once, issued time kept

    second = TOKEN.search(owner.post(path, {}).get_data(as_text=True)).group(1)
    assert second != token
    assert _api(api, token).status_code == 401 and _api(api, second).status_code == 200


def test_only_owners_and_only_their_own_shops(signed_in, team, other):
    for role in ("viewer", "agent", "manager"):
        person = signed_in(role)
        assert person.get(f"/dashboard/settings/{team.shop_ids[0]}/api").status_code == 403
        assert person.post(f"/dashboard/settings/{team.shop_ids[0]}/api", {}).status_code == 403
    owner = signed_in("owner")
    assert owner.get(f"/dashboard/settings/{other.shop_ids[0]}/api").status_code == 404
    assert owner.post(f"/dashboard/settings/{other.shop_ids[0]}/api", {}).status_code == 404
    assert owner.post(f"/dashboard/settings/{team.shop_ids[0]}/api", {},
                      token="forged").status_code == 403


def test_the_cli_issues_a_token(app, settings, team):
    env = {"CCMS_DATABASE_URL": settings.database_url, "CCMS_REDIS_URL": settings.redis_url,
           "CCMS_SECRET_KEY": "test-secret-key", "CCMS_VAR_DIR": str(settings.var_dir)}
    result = CliRunner().invoke(main, ["shops", "token", "--shop", str(team.shop_ids[0])], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["shop_id"] == team.shop_ids[0]
    assert _api(app.test_client(), answer["api_token"]).status_code == 200
    missing = CliRunner().invoke(main, ["shops", "token", "--shop", "999999"], env=env)
    assert missing.exit_code == 1 and "no shop" in missing.output
