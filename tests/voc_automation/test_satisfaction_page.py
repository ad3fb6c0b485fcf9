"""The satisfaction page ``/s/<token>`` a closed item's email links to: the link from the real
email, one POST per answer, friendly errors for a bad link or bad input, the comment stored as
typed and rendered inert."""

from __future__ import annotations

import re

import pytest
from itsdangerous import TimestampSigner

from ccms_addon import links
from ccms_addon.store.models import VocItem
from ccms_addon.voc.pages import MAX_COMMENT
from ccms_addon.voc.service import SATISFACTION_PURPOSE
from tests.voc_automation.conftest import PUBLIC_URL, XSS, closed_item, events, run_worker


def load(runtime, item_id) -> VocItem:
    with runtime.db.session() as session:
        return session.get(VocItem, item_id)


def test_the_page_offers_five_buttons_in_the_customers_language(client, runtime, link):
    item, path = link
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<html lang="ko">' in html and "처리 결과에 만족하셨나요?" in html
    assert item.reference in html and "K 상점" in html
    buttons = re.findall(r'<button type="submit" name="score" value="(\d)"', html)
    assert buttons == ["1", "2", "3", "4", "5"]
    assert 'method="post"' in html and "<script" not in html  # no script needed, none served
    headers = response.headers
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert client.get(path).status_code == 200
    assert events(runtime, item.id, "satisfaction") == []  # a GET records nothing


def test_an_answer_is_recorded_and_a_second_one_replaces_it(client, runtime, link):
    item, path = link
    response = client.post(path, data={"score": "4", "comment": "빨리 해결해 주셔서 감사합니다"})
    assert response.status_code == 200
    assert "응답해 주셔서 감사합니다" in response.get_data(as_text=True)
    stored = load(runtime, item.id)
    assert (stored.satisfaction, stored.satisfaction_comment) == (4, "빨리 해결해 주셔서 감사합니다")

    assert "현재 응답: 5점 중 4점" in client.get(path).get_data(as_text=True)
    assert client.post(path, data={"score": "2"}).status_code == 200
    assert load(runtime, item.id).satisfaction == 2
    answers = events(runtime, item.id, "satisfaction")
    assert [(e.actor, e.data) for e in answers] == [("customer", {"score": 4}),
                                                    ("customer", {"score": 2})]


@pytest.mark.parametrize("form", [{"score": "0"}, {"score": "6"}, {"score": "abc"},
                                  {"score": ""}, {}, {"score": "3.5"}])
def test_a_score_out_of_range_is_a_422_page_and_records_nothing(client, runtime, link, form):
    item, path = link
    response = client.post(path, data={**form, "comment": "kept <b>as typed</b>"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "1점부터 5점 중에서 선택해 주세요." in html and 'id="score-error"' in html
    assert "kept &lt;b&gt;as typed&lt;/b&gt;</textarea>" in html  # the comment is given back
    assert load(runtime, item.id).satisfaction is None
    assert events(runtime, item.id, "satisfaction") == []


def test_a_comment_too_long_is_a_422_page(client, runtime, link):
    item, path = link
    response = client.post(path, data={"score": "5", "comment": "가" * (MAX_COMMENT + 1)})
    assert response.status_code == 422
    assert f"{MAX_COMMENT}자 이내로" in response.get_data(as_text=True)
    assert load(runtime, item.id).satisfaction is None


def test_a_comment_is_stored_verbatim_and_rendered_inert(client, runtime, link):
    item, path = link
    response = client.post(path, data={"score": "1", "comment": XSS})
    html = response.get_data(as_text=True)
    assert load(runtime, item.id).satisfaction_comment == XSS
    for page in (html, client.get(path).get_data(as_text=True)):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_a_tampered_or_foreign_link_is_a_friendly_404(client, runtime, settings, shop, make_shop,
                                                      link):
    item, path = link
    token = path.rsplit("/", 1)[1]
    other = make_shop("cafe24", "other-shop").shop
    forged = [
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),   # signature broken
        links.make_token(settings, "follow-up", {"item": item.id, "shop": shop.id}),  # purpose
        links.make_token(settings, SATISFACTION_PURPOSE, {"item": item.id, "shop": other.id}),
        links.make_token(settings, SATISFACTION_PURPOSE, {"item": item.id + 99, "shop": shop.id}),
        links.make_token(settings, SATISFACTION_PURPOSE, {"item": "1", "shop": shop.id}),
        "not-a-token",
    ]
    for bad in forged:
        for response in (client.get(f"/s/{bad}", headers={"Accept-Language": "ja"}),
                         client.post(f"/s/{bad}", data={"score": "1"})):
            assert response.status_code == 404, bad
            assert response.headers["Referrer-Policy"] == "no-referrer"
    page = client.get(f"/s/{forged[0]}", headers={"Accept-Language": "ja"})
    assert "このリンクは無効です" in page.get_data(as_text=True)
    assert load(runtime, item.id).satisfaction is None


def test_an_expired_link_is_a_410(client, runtime, settings, shop, link):
    item, _ = link
    class SignedIn2001(TimestampSigner):
        def get_timestamp(self) -> int:
            return 1_000_000_000  # long past the link's max age

    serializer = links._serializer(settings, SATISFACTION_PURPOSE)
    serializer.signer = SignedIn2001
    old = serializer.dumps({"item": item.id, "shop": shop.id})
    for response in (client.get(f"/s/{old}"), client.post(f"/s/{old}", data={"score": "5"})):
        assert response.status_code == 410
        assert "This link has expired." in response.get_data(as_text=True)
    assert load(runtime, item.id).satisfaction is None


def test_the_link_is_in_the_customers_language(client, runtime, shop, smtp_server):
    closed_item(runtime, shop, locale="ja")
    run_worker(runtime)
    [mail] = [m for m in smtp_server.parsed() if "対応はいかがでしたか" in m["Subject"]]
    url = re.search(rf"{re.escape(PUBLIC_URL)}(/s/\S+)", mail.get_content()).group(1)
    html = client.get(url).get_data(as_text=True)
    assert '<html lang="ja">' in html and "とても満足" in html
