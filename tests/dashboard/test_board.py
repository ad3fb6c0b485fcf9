"""The owner's board page: metrics.board's figures drawn as inline SVG, today's voices verbatim
and escaped; and the chart geometry itself."""

from __future__ import annotations

import re
from datetime import timedelta

from ccms_addon.dashboard import charts
from ccms_addon.store.models import VocItem, utcnow
from tests.dashboard.conftest import new_item


def test_the_board_shows_todays_voices_breaches_and_charts(runtime, signed_in, team):
    late = new_item(runtime, team.shop_ids[0], body='<img src=x onerror="alert(1)"> late & lost')
    new_item(runtime, team.shop_ids[1], body="Lovely", subject="<b>Thanks</b>")
    with runtime.db.session() as s:
        s.get(VocItem, late.id).respond_due_at = utcnow() - timedelta(hours=5)
    answer = signed_in("owner").get("/dashboard/board")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; late &amp; lost" in html
    assert "&lt;b&gt;Thanks&lt;/b&gt;" in html and "<img src=x" not in html
    assert re.search(r'<span class="kpi-value">2</span><span class="kpi-label">new voices', html)
    assert f"/dashboard/items/{late.id}" in html and "5." in html  # overdue by ~5 h
    assert html.count("<svg ") >= 2 and "<rect class=\"kind-complaint\"" in html
    assert "Delivery" in html  # the top category, by its label


def test_chart_geometry():
    axes = [charts.nice_axis(v) for v in (0, 1e-9, 0.03, 0.35, 0.7, 3, 7, 12, 260)]
    assert [(round(a.top, 9), round(a.step, 9)) for a in axes] == [
        (1, 0.2), (0.1, 0.02), (0.1, 0.02), (0.4, 0.1), (0.8, 0.2), (3, 1), (8, 2), (12.5, 2.5),
        (300, 100)]
    assert axes[1].decimals == 2 and charts.Axis(0.75, 0.25).decimals == 2
    counts = [charts.nice_axis(v, whole=True) for v in (1, 3, 7, 12)]
    assert [(a.top, a.step) for a in counts] == [(1, 1), (3, 1), (8, 2), (15, 5)]
    chart = charts.stacked_bars("v", ["a", "b"], {"x": [2, 0], "y": [2, 5]}, [("x", "X")])
    tallest = max(r.height for r in chart.rects if r.css == "y")
    assert len(chart.rects) == 3 and [t.text for t in chart.y_ticks] == ["0", "1", "2", "3", "4", "5"]
    assert tallest == round((charts.HEIGHT - charts.TOP - charts.BOTTOM), 1)
    one = charts.stacked_bars("v", ["a", "b"], {"x": [0, 1]}, [("x", "X")])
    assert [t.text for t in one.y_ticks] == ["0", "1"]  # one complaint: no 0.2, 0.5 ticks
    quick = charts.line_chart("t", ["a", "b"], {"m": [0.00004, 0.03]}, [("m", "M")])
    assert [t.text for t in quick.y_ticks] == ["0.00", "0.02", "0.04", "0.06", "0.08", "0.10"]
    assert [d[2] for d in quick.lines[0].dots] == ["a: <0.01", "b: 0.03"]
    stars = charts.line_chart("s", ["a"], {"m": [4.5]}, [("m", "M")], top=5)
    assert [t.text for t in stars.y_ticks] == ["0", "1", "2", "3", "4", "5"]
    line = charts.line_chart("t", ["a", "b", "c"], {"m": [1.0, None, 3.0]}, [("m", "M")])
    assert len(line.lines[0].segments) == 2  # a day without a value breaks the line
    assert charts.line_chart("t", ["a"], {"m": [None]}, []).empty
    bars = charts.horizontal_bars("r", [("x", 50.0), ("y", 25.0)], top=100, unit="%")
    assert [v[2] for v in bars.values] == ["50%", "25%"]
