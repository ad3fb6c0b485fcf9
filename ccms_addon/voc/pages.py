"""The satisfaction page a closed item's email links to: ``/s/<token>``.

The customer answers 1–5 with an optional comment; a later answer replaces the score and is a new
event on the item's timeline (:meth:`VocDesk.record_satisfaction`).

Design:

- The signed token (``links.py``, purpose :data:`SATISFACTION_PURPOSE`, payload ``item`` and
  ``shop``) is the only credential: it names the item, so the tenant never comes from a parameter.
  It is also why the form carries no CSRF token: a forged cross-site POST must already know the
  token, and whoever knows it can answer anyway — the page guards one rating, nothing more.
- A GET changes nothing (mail scanners follow links). Each score is a submit button of one POST
  form, so the page needs no script at all and works with it turned off.
- Strict Content-Security-Policy (no script, styles only from us), ``Referrer-Policy:
  no-referrer`` so the token never leaves in a Referer header, ``no-store``.
- The comment is stored as typed and rendered escaped; invalid input is a 422 page naming the
  field, an unusable link a friendly 404 (410 when it expired).

The pages reuse the follow-up pages' base template and stylesheet (``programs/pages.py``).
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from ccms_addon.links import LinkExpiredError, LinkInvalidError, read_token
from ccms_addon.store.models import Shop, VocItem
from ccms_addon.voc.service import SATISFACTION_PATH, SATISFACTION_PURPOSE, VocDesk

bp = Blueprint("voc_satisfaction", __name__, url_prefix=SATISFACTION_PATH,
               template_folder="page_templates")

CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
#: a comment is a remark, not an essay
MAX_COMMENT = 4000
LOCALES = ("en", "ko", "ja")

TEXTS = {
    "en": {
        "title": "How did we do?",
        "intro": "We have closed your request {reference}. How happy are you with how we "
                 "handled it?",
        "scores": ("Very unhappy", "Unhappy", "Neither", "Happy", "Very happy"),
        "comment": "Anything you want to tell us? (optional)",
        "pick": "Choose your score:",
        "current": "Your answer: {score} of 5. You can change it below.",
        "thanks": "Thank you for your answer",
        "recorded": "You rated how we handled {reference} {score} of 5.",
        "your_comment": "Your comment:",
        "change": "Change my answer",
        "reopen": "If anything is still wrong, reply to our email and we will take it up again.",
        "invalid": "This link is not valid. Please use the link from our email.",
        "expired": "This link has expired.",
        "error_score": "Choose a score from 1 to 5.",
        "error_comment": "The comment is too long: at most {max} characters.",
    },
    "ko": {
        "title": "처리 결과에 만족하셨나요?",
        "intro": "접수 번호 {reference} 건의 처리를 마쳤습니다. 처리 과정에 얼마나 만족하셨나요?",
        "scores": ("매우 불만족", "불만족", "보통", "만족", "매우 만족"),
        "comment": "전하고 싶은 말씀이 있으신가요? (선택)",
        "pick": "점수를 선택해 주세요:",
        "current": "현재 응답: 5점 중 {score}점. 아래에서 바꿀 수 있습니다.",
        "thanks": "응답해 주셔서 감사합니다",
        "recorded": "{reference} 건의 처리에 5점 중 {score}점을 주셨습니다.",
        "your_comment": "남기신 말씀:",
        "change": "응답 바꾸기",
        "reopen": "아직 해결되지 않은 부분이 있다면 저희 메일에 회신해 주세요. 다시 처리하겠습니다.",
        "invalid": "유효하지 않은 링크입니다. 메일에 있는 링크를 이용해 주세요.",
        "expired": "링크의 유효 기간이 지났습니다.",
        "error_score": "1점부터 5점 중에서 선택해 주세요.",
        "error_comment": "내용이 너무 깁니다. {max}자 이내로 적어 주세요.",
    },
    "ja": {
        "title": "対応はいかがでしたか",
        "intro": "受付番号 {reference} の対応を完了しました。対応にどの程度ご満足いただけましたか。",
        "scores": ("とても不満", "不満", "どちらでもない", "満足", "とても満足"),
        "comment": "ご意見があればお聞かせください（任意）",
        "pick": "評価を選んでください：",
        "current": "現在の回答：5点中{score}点。下で変更できます。",
        "thanks": "ご回答ありがとうございました",
        "recorded": "{reference} の対応を5点中{score}点と評価いただきました。",
        "your_comment": "いただいたご意見：",
        "change": "回答を変更する",
        "reopen": "まだ解決していない点があれば、メールにご返信ください。再度対応いたします。",
        "invalid": "このリンクは無効です。メールに記載のリンクをご利用ください。",
        "expired": "このリンクは有効期限が切れています。",
        "error_score": "1から5の中から選んでください。",
        "error_comment": "ご意見が長すぎます。{max}文字以内でご記入ください。",
    },
}


class SatisfactionFormSchema(Schema):
    """The POSTed form: ``score`` 1–5, optional ``comment``."""

    class Meta:
        unknown = EXCLUDE

    score = fields.Integer(required=True, validate=validate.Range(1, 5))
    comment = fields.String(load_default=None, allow_none=True,
                            validate=validate.Length(max=MAX_COMMENT))

    @pre_load
    def _blank_is_none(self, data, **_):
        data = dict(data)
        if not (data.get("comment") or "").strip():
            data["comment"] = None
        return data


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"  # the token must not leak onwards
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _runtime():
    return current_app.extensions["ccms"]


def _locale(*candidates: str | None) -> str:
    for candidate in candidates:
        if candidate and candidate[:2].lower() in LOCALES:
            return candidate[:2].lower()
    return "en"


class _Unusable(Exception):
    def __init__(self, problem: str, status: int):
        self.problem, self.status = problem, status


def _load(token: str) -> dict:
    """The item the token names (of the shop it names) and what the page shows."""
    try:
        payload = read_token(_runtime().settings, SATISFACTION_PURPOSE, token)
    except LinkExpiredError:
        raise _Unusable("expired", 410) from None
    except LinkInvalidError:
        raise _Unusable("invalid", 404) from None
    item_id, shop_id = payload.get("item"), payload.get("shop")
    if not isinstance(item_id, int) or not isinstance(shop_id, int):
        raise _Unusable("invalid", 404)
    with _runtime().db.session() as session:
        item = session.get(VocItem, item_id)
        if item is None or item.shop_id != shop_id:
            raise _Unusable("invalid", 404)
        shop = session.get(Shop, shop_id)
        locale = _locale(item.locale, shop.locale)
        return dict(item_id=item.id, reference=item.reference, current=item.satisfaction,
                    comment=item.satisfaction_comment,
                    shop_name=" ".join((shop.name or shop.domain).split()),
                    locale=locale, texts=TEXTS[locale])


@bp.errorhandler(_Unusable)
def _unusable(error: _Unusable):
    locale = _locale(request.accept_languages.best_match(LOCALES))
    texts = TEXTS[locale]
    return render_template("voc_satisfaction_error.html", texts=texts, locale=locale,
                           shop_name="", message=texts[error.problem]), error.status


def _form(found: dict, status: int = 200, *, errors: dict | None = None,
          comment: str | None = None):
    texts = found["texts"]
    return render_template(
        "voc_satisfaction.html", **found, errors=errors or {}, max_comment=MAX_COMMENT,
        scores=list(enumerate(texts["scores"], start=1)),
        typed_comment=found["comment"] if comment is None else comment), status


@bp.get("/<token>")
def show(token: str):
    return _form(_load(token))


@bp.post("/<token>")
def answer(token: str):
    found = _load(token)
    texts = found["texts"]
    try:
        form = SatisfactionFormSchema().load(request.form.to_dict())
    except ValidationError as exc:
        errors = {}
        if "score" in exc.messages:
            errors["score"] = texts["error_score"]
        if "comment" in exc.messages:
            errors["comment"] = texts["error_comment"].format(max=MAX_COMMENT)
        return _form(found, 422, errors=errors, comment=request.form.get("comment", ""))
    item = VocDesk(_runtime()).record_satisfaction(found["item_id"], form["score"],
                                                   form["comment"])
    return render_template("voc_satisfaction_thanks.html", **found, score=item.satisfaction,
                           recorded_comment=item.satisfaction_comment)
