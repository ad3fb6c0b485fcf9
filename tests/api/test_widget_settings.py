"""The merchant sets the widget through the API; bad settings are 422 with field errors."""

import pytest


@pytest.fixture
def shop(make_shop):
    return make_shop("shopify", "a.myshopify.com")


def auth(new_shop):
    return {"Authorization": f"Bearer {new_shop.api_token}"}


def test_defaults_then_a_full_replace(client, shop, make_shop):
    got = client.get("/api/v1/widget/settings", headers=auth(shop)).json
    assert got["position"] == "bottom-right" and got["hours"]["timezone"] == "UTC"
    wanted = {"phone": "+82 2 0000 0000", "hours": {"timezone": "Asia/Seoul",
              "weekly": {"mon": [["09:00", "18:00"]]}, "holidays": ["2026-12-25"]},
              "consent_text": {"ko": "동의합니다"}, "color": "#000000", "text_color": "#ffffff"}
    put = client.put("/api/v1/widget/settings", json=wanted, headers=auth(shop))
    assert put.status_code == 200, put.json
    again = client.get("/api/v1/widget/settings", headers=auth(shop)).json
    assert again["phone"] == "+82 2 0000 0000" and again["hours"]["holidays"] == ["2026-12-25"]
    other = make_shop("shopify", "b.myshopify.com")
    assert client.get("/api/v1/widget/settings", headers=auth(other)).json["phone"] is None


@pytest.mark.parametrize("body,field", [
    ({"color": "#ffffff", "text_color": "#fefefe"}, "text_color"),
    ({"hours": {"timezone": "Mars/Olympus"}}, "hours"),
    ({"hours": {"weekly": {"mon": [["18:00", "09:00"]]}}}, "hours"),
    ({"position": "top"}, "position"),
    ({"kakao_channel_url": "javascript:alert(1)"}, "kakao_channel_url"),
    ({"surprise": True}, "surprise"),
])
def test_bad_settings_are_422_with_the_field(client, shop, body, field):
    response = client.put("/api/v1/widget/settings", json=body, headers=auth(shop))
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]["json"]


def test_settings_need_a_token(client):
    assert client.get("/api/v1/widget/settings").status_code == 401
