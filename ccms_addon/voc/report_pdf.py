"""The monthly report's PDF (reportlab), drawn from the same document as the HTML and CSV.

Korean and Japanese are set in reportlab's built-in CID fonts (``HYSMyeongJo-Medium``,
``HeiseiMin-W3``): the PDF names an Adobe CJK font the reader supplies, so no font file is shipped
or embedded. Text mixes scripts (a Korean report quotes product names and references in Latin; an English
one quotes a Korean root cause), so every string is cut into runs by script and each run set in
a font that has its glyphs: Latin in Helvetica, Hangul and kana in their fonts.
"""

from __future__ import annotations

import io
import threading
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ccms_addon.voc.report_render import Document

KOREAN_FONT = "HYSMyeongJo-Medium"
JAPANESE_FONT = "HeiseiMin-W3"
LATIN_FONT = "Helvetica"
#: the CID font of Han ideographs and symbols, by report language (Hangul and kana always go to
#: their own script's font)
CJK_FONTS = {"ko": KOREAN_FONT, "ja": JAPANESE_FONT, "en": JAPANESE_FONT}
MARGIN = 15 * mm
#: relative widths of a text column and a number column
TEXT_WEIGHT, NUMBER_WEIGHT = 2.6, 1.0

_lock = threading.Lock()
_registered = False


def _register_fonts() -> None:
    global _registered
    with _lock:
        if not _registered:
            pdfmetrics.registerFont(UnicodeCIDFont(KOREAN_FONT))
            pdfmetrics.registerFont(UnicodeCIDFont(JAPANESE_FONT))
            _registered = True


#: characters outside Latin that Helvetica's WinAnsi encoding still has (quotes, dashes, bullets)
WIN_ANSI_EXTRA = frozenset("‘’‚“”„•–—…‰‹›€™†‡ˆ˜ŠšŽžŒœŸƒ")


def _font_for(char: str, cjk: str) -> str:
    """Latin in Helvetica; Hangul in the Korean font, kana in the Japanese one; Han ideographs,
    CJK punctuation and every other symbol in ``cjk`` (the report language's CID font)."""
    code = ord(char)
    if code < 0x0250 or char in WIN_ANSI_EXTRA:
        return LATIN_FONT
    if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return KOREAN_FONT
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return JAPANESE_FONT
    return cjk


def markup(text: str, cjk: str) -> str:
    """``text`` as Paragraph markup: escaped, newlines kept, each script run in its font (the
    paragraph's own font is Helvetica)."""
    runs: list[tuple[str, list[str]]] = []
    for char in text:
        font = _font_for(char, cjk)
        if runs and runs[-1][0] == font:
            runs[-1][1].append(char)
        else:
            runs.append((font, [char]))
    parts = []
    for font, chars in runs:
        body = escape("".join(chars)).replace("\n", "<br/>")
        parts.append(body if font == LATIN_FONT else f'<font name="{font}">{body}</font>')
    return "".join(parts)


def pdf_bytes(doc: Document) -> bytes:
    _register_fonts()
    cjk = CJK_FONTS.get(doc.locale, JAPANESE_FONT)
    body = ParagraphStyle("body", fontName=LATIN_FONT, fontSize=9, leading=12, wordWrap="CJK")
    number = ParagraphStyle("number", parent=body, alignment=TA_RIGHT)
    header = ParagraphStyle("header", parent=body, textColor=colors.HexColor("#222222"))
    title = ParagraphStyle("title", parent=body, fontSize=17, leading=22, spaceAfter=2)
    subtitle = ParagraphStyle("subtitle", parent=body, fontSize=13, leading=17, spaceAfter=6,
                              textColor=colors.HexColor("#444444"))
    heading = ParagraphStyle("heading", parent=body, fontSize=12, leading=16, spaceBefore=10,
                             spaceAfter=4)
    note = ParagraphStyle("note", parent=body, fontSize=8, leading=11,
                          textColor=colors.HexColor("#444444"))

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(markup(text, cjk), style)

    buffer = io.BytesIO()
    page = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN,
                             topMargin=MARGIN, bottomMargin=MARGIN, title=doc.title,
                             subject=doc.subtitle, author="ccms-addon", lang=doc.locale)
    width = page.width

    def facts(pairs) -> Table:
        table = Table([[p(label, header), p(value)] for label, value in pairs],
                      colWidths=[width * 0.38, width * 0.62], hAlign="LEFT")
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                   ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                   ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                                   ("TOPPADDING", (0, 0), (-1, -1), 1)]))
        return table

    def grid(table) -> Table:
        weights = [NUMBER_WEIGHT if i in table.numeric else TEXT_WEIGHT
                   for i in range(len(table.header))]
        widths = [width * w / sum(weights) for w in weights]
        rows = [[p(cell, number if i in table.numeric else header)
                 for i, cell in enumerate(table.header)]]
        rows += [[p(cell, number if i in table.numeric else body) for i, cell in enumerate(row)]
                 for row in table.rows]
        drawn = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
        drawn.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")),
            ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return drawn

    story = [p(doc.title, title), p(doc.subtitle, subtitle), facts(doc.facts)]
    for section in doc.sections:
        story.append(p(section.title, heading))
        if section.facts:
            story.append(facts(section.facts))
        for table in section.tables:
            story += [Spacer(1, 3), grid(table)]
        story += [p(text, note) for text in section.notes]
    story += [Spacer(1, 10), p(doc.footer, note)]

    def number_pages(canvas, _doc) -> None:
        canvas.saveState()
        canvas.setFont(LATIN_FONT, 8)
        canvas.drawRightString(A4[0] - MARGIN, MARGIN / 2, str(canvas.getPageNumber()))
        canvas.restoreState()

    page.build(story, onFirstPage=number_pages, onLaterPages=number_pages)
    return buffer.getvalue()
