"""Message texts: the built-in templates (``templates/<locale>.json``) and the merchant's own.
The same files hold the hosted pages' strings (``pages``), the score labels and the names of the
qualifying events.

Templates are Jinja in a sandbox, rendered as plain text (messages are never HTML). A merchant's
text is checked when the program is saved — syntax and variable names — so a typo is a 422 then,
not a failed message months later.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_DIR = Path(__file__).with_name("templates")
#: the languages the built-in texts (messages, hosted pages, event names) are written in
LOCALES = ("ko", "en", "ja")
#: the language used when neither the shopper's nor the shop's has a text
FALLBACK_LOCALE = "en"
#: the variables a template may use
VARIABLES = ("shop_name", "customer_name", "order_number", "program_name", "window_ends_on",
             "days_left", "link", "scores", "reference", "amount", "note")

_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)


class TemplateMissingError(LookupError):
    pass


@lru_cache(maxsize=None)
def builtin(locale: str) -> dict:
    path = _DIR / f"{locale}.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def languages(preferred: str | None, shop_locale: str | None) -> list[str]:
    """Languages to try, best first: the shopper's (``ko-KR`` → ``ko``), the shop's, English."""
    order: list[str] = []
    for value in (preferred, shop_locale, FALLBACK_LOCALE):
        if value:
            for candidate in (value, value.split("-")[0].split("_")[0].lower()):
                if candidate not in order:
                    order.append(candidate)
    return order


def pick(name: str | None, texts: dict | None, locales: list[str]) -> tuple[str, dict]:
    """(locale, {"subject", "body"}) — the merchant's text in the best language, else the
    built-in template's."""
    for locale in locales:
        if texts and locale in texts:
            return locale, texts[locale]
        if name and name in builtin(locale):
            return locale, builtin(locale)[name]
    raise TemplateMissingError(f"no text for {name!r} in {locales}")


def score_labels(locale: str) -> list[str]:
    return builtin(locale).get("scores") or builtin(FALLBACK_LOCALE)["scores"]


@lru_cache(maxsize=1024)
def _compiled(source: str):
    return _env.from_string(source)


def render(text: dict, context: dict) -> tuple[str, str]:
    subject = " ".join(_compiled(text["subject"]).render(context).split())
    body = _compiled(text["body"]).render(context)
    return subject, body


def warm_up() -> None:
    """Load and compile the built-in texts once (a forking worker's children inherit them)."""
    for locale in LOCALES:
        for name, text in builtin(locale).items():
            if isinstance(text, dict) and set(text) == {"subject", "body"}:
                _compiled(text["subject"])
                _compiled(text["body"])


def check(source: str) -> None:
    """Raise ``ValueError`` when ``source`` does not compile or uses an unknown variable."""
    sample = {name: "x" for name in VARIABLES}
    sample["scores"] = [{"value": 1, "label": "x", "link": "x"}]
    try:
        _env.from_string(source).render(sample)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from None
