"""What the customer receives about their VOC item, in their language (ko, en, ja).

Plain text only: the staff's reply goes in verbatim, never as HTML. Each message names the
reference number, so a customer who answers or calls can be found again.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

TEXTS = {
    "en": {
        "ack_subject": "[{shop}] We received your message ({reference})",
        "ack_body": ("Hello{name},\n\nThank you for contacting {shop}. We have received your message "
                     "and a person will answer by {due}.\n\nYour reference number: {reference}\n\n"
                     "Your message:\n{quote}\n"),
        "reply_subject": "[{shop}] Re: {reference}",
        "reply_footer": "\n\n--\n{shop} · reference {reference}\nReply to this email to continue.",
        "satisfaction_subject": "[{shop}] How did we do? ({reference})",
        "satisfaction_body": ("Hello{name},\n\nWe have closed your request {reference}. Would you "
                              "rate how we handled it, from 1 (very unhappy) to 5 (very happy)? "
                              "It takes one click:\n\n{link}\n\nIf anything is still wrong, reply "
                              "to this email and we will reopen it.\n\n{shop}\n"),
    },
    "ko": {
        "ack_subject": "[{shop}] 문의가 접수되었습니다 ({reference})",
        "ack_body": ("안녕하세요{name}.\n\n{shop}에 연락해 주셔서 감사합니다. 보내 주신 내용이 접수되었으며 "
                     "{due}까지 담당자가 답변드리겠습니다.\n\n접수 번호: {reference}\n\n"
                     "보내 주신 내용:\n{quote}\n"),
        "reply_subject": "[{shop}] 답변: {reference}",
        "reply_footer": "\n\n--\n{shop} · 접수 번호 {reference}\n이 메일에 회신하시면 이어서 상담할 수 있습니다.",
        "satisfaction_subject": "[{shop}] 처리 결과에 만족하셨나요? ({reference})",
        "satisfaction_body": ("안녕하세요{name}.\n\n접수 번호 {reference} 건의 처리를 마쳤습니다. "
                              "처리 과정에 대한 만족도를 1(매우 불만족)부터 5(매우 만족)까지 "
                              "알려 주세요. 한 번의 클릭이면 됩니다:\n\n{link}\n\n"
                              "아직 해결되지 않은 부분이 있다면 이 메일에 회신해 주세요. 다시 "
                              "열어 처리하겠습니다.\n\n{shop}\n"),
    },
    "ja": {
        "ack_subject": "[{shop}] お問い合わせを受け付けました（{reference}）",
        "ack_body": ("{name_ja}\n\n{shop}へお問い合わせいただきありがとうございます。内容を受け付けました。"
                     "{due}までに担当者よりご回答いたします。\n\n受付番号：{reference}\n\n"
                     "お問い合わせ内容：\n{quote}\n"),
        "reply_subject": "[{shop}] ご回答：{reference}",
        "reply_footer": "\n\n--\n{shop}・受付番号 {reference}\nこのメールに返信いただくと続けてご相談いただけます。",
        "satisfaction_subject": "[{shop}] 対応はいかがでしたか（{reference}）",
        "satisfaction_body": ("{name_ja}\n\n受付番号 {reference} の対応を完了しました。対応への満足度を"
                              "1（とても不満）から5（とても満足）でお聞かせください。ワンクリックで"
                              "完了します：\n\n{link}\n\nまだ解決していない点があれば、このメールに"
                              "ご返信ください。再度対応いたします。\n\n{shop}\n"),
    },
}


def texts(locale: str | None) -> dict[str, str]:
    return TEXTS.get((locale or "en")[:2], TEXTS["en"])


def fill(template: str, *, shop: str, reference: str, name: str | None = None,
         due: datetime | None = None, zone: str = "UTC", locale: str | None = None,
         **extra: str) -> str:
    """``template`` with its fields; the due time in the shop's zone, written for the locale."""
    due_text = ""
    if due is not None:
        local = due.astimezone(ZoneInfo(zone))
        due_text = (local.strftime("%Y년 %m월 %d일 %H:%M") if (locale or "").startswith("ko")
                    else local.strftime("%Y年%m月%d日 %H:%M") if (locale or "").startswith("ja")
                    else local.strftime("%a %d %b %Y, %H:%M"))
    return template.format(shop=shop, reference=reference, due=due_text,
                           name=f" {name}" if name else "",
                           name_ja=f"{name} 様" if name else "お客様", **extra)


def quote(body: str, limit: int = 1200) -> str:
    text = body if len(body) <= limit else body[:limit] + "…"
    return "\n".join(f"> {line}" for line in text.splitlines() or [""])
