"""Charts drawn on the server as inline SVG: no chart library, no script, nothing from another host.

These functions only compute geometry — numbers — into small dataclasses; the template
(``dashboard/_charts.html``) writes the SVG elements, so every label (a product title, a category)
goes through Jinja's autoescape like any other text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: the drawing area of every chart (viewBox units), and its margins for the axes' labels
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    #: a class for the colour (``kind-complaint``…), from a fixed set of names
    css: str
    #: what a reader hovering it is told (``<title>``)
    title: str


@dataclass(frozen=True)
class Line:
    #: polyline segments (a day without a value breaks the line): "x,y x,y …"
    segments: list[str]
    dots: list[tuple[float, float, str]]
    css: str
    label: str


@dataclass(frozen=True)
class Tick:
    at: float
    text: str


@dataclass(frozen=True)
class Chart:
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    #: (css class, label) of each colour, for the legend
    legend: list[tuple[str, str]] = field(default_factory=list)
    #: horizontal bar charts label each bar on its left
    bar_labels: list[Tick] = field(default_factory=list)
    #: (x, y, text) written at the end of each horizontal bar
    values: list[tuple[float, float, str]] = field(default_factory=list)
    empty: bool = False
    baseline: float = HEIGHT - BOTTOM


@dataclass(frozen=True)
class Axis:
    """A value axis: its top and the distance between its ticks (both round numbers)."""

    top: float
    step: float

    @property
    def decimals(self) -> int:
        """As few decimals as tell the ticks apart: 0.25 needs 2, 0.5 one, 5 none."""
        return next((d for d in range(7) if abs(round(self.step, d) - self.step) < 1e-9), 6)


#: the smallest top of an axis (a tenth of an hour on the timing charts): finer steps would need
#: more digits than a tick has room for, and say nothing a reader needs
FINEST_TOP = 0.1


def nice_axis(maximum: float, *, whole: bool = False, intervals: int = 5) -> Axis:
    """The axis of values up to ``maximum``: at most ``intervals`` steps of 1, 2, 2.5 or 5 times
    a power of ten, the top a multiple of the step. ``whole``: counts, so no step below 1 and none
    of 2.5 (a chart of one complaint is 0 and 1, not 0, 0.2, 0.5…)."""
    maximum = float(max(maximum, FINEST_TOP)) if maximum > 0 else 1.0
    raw = maximum / intervals
    power = 10 ** math.floor(math.log10(raw))
    multiples = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in multiples if m * power >= raw * (1 - 1e-9))
    if whole:
        step = max(1.0, float(round(step)))
    return Axis(step * math.ceil(maximum / step - 1e-9), step)


def _number(value: float) -> str:
    """A value as a reader wants it: whole numbers bare, small ones with two significant digits."""
    if float(value).is_integer() or abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) < 0.01:
        return "<0.01" if value > 0 else "0"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"


def _y_ticks(axis: Axis, inner_height: float) -> list[Tick]:
    count = round(axis.top / axis.step)
    return [Tick(round(HEIGHT - BOTTOM - inner_height * i / count, 1),
                 f"{axis.step * i:.{axis.decimals}f}") for i in range(count + 1)]


def _x_ticks(labels: Sequence[str], slot: float, every: int) -> list[Tick]:
    return [Tick(round(LEFT + slot * (i + 0.5), 1), label) for i, label in enumerate(labels)
            if i % every == 0 or i == len(labels) - 1]


def stacked_bars(title: str, labels: Sequence[str], stacks: Mapping[str, Sequence[float]],
                 legend: Sequence[tuple[str, str]], *, tick_every: int = 5) -> Chart:
    """One bar per label, its value split by ``stacks`` (css class → values per label)."""
    totals = [sum(values[i] for values in stacks.values()) for i in range(len(labels))]
    if not labels or not any(totals):
        return Chart(title, empty=True, legend=list(legend))
    axis = nice_axis(max(totals), whole=True)
    top = axis.top
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / len(labels)
    rects = []
    for i, label in enumerate(labels):
        y = HEIGHT - BOTTOM
        for css, values in stacks.items():
            if not values[i]:
                continue
            height = inner_h * values[i] / top
            y -= height
            rects.append(Rect(round(LEFT + slot * i + slot * 0.15, 1), round(y, 1),
                              round(slot * 0.7, 1), round(height, 1), css,
                              f"{label}: {_number(values[i])}"))
    return Chart(title, rects=rects, x_ticks=_x_ticks(labels, slot, tick_every),
                 y_ticks=_y_ticks(axis, inner_h), legend=list(legend))


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
               legend: Sequence[tuple[str, str]], *, top: float | None = None,
               tick_every: int = 5) -> Chart:
    """One line per series (css class → value per label, None where there is none)."""
    present = [v for values in series.values() for v in values if v is not None]
    if not labels or not present:
        return Chart(title, empty=True, legend=list(legend))
    axis = nice_axis(top or max(present))
    top = axis.top
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / len(labels)
    legend_names = dict(legend)
    lines = []
    for css, values in series.items():
        segments, current, dots = [], [], []
        for i, value in enumerate(values):
            if value is None:
                if current:
                    segments.append(" ".join(current))
                current = []
                continue
            x = round(LEFT + slot * (i + 0.5), 1)
            y = round(HEIGHT - BOTTOM - inner_h * min(value, top) / top, 1)
            current.append(f"{x},{y}")
            dots.append((x, y, f"{labels[i]}: {_number(value)}"))
        if current:
            segments.append(" ".join(current))
        lines.append(Line(segments, dots, css, legend_names.get(css, css)))
    return Chart(title, lines=lines, x_ticks=_x_ticks(labels, slot, tick_every),
                 y_ticks=_y_ticks(axis, inner_h), legend=list(legend))


def horizontal_bars(title: str, items: Sequence[tuple[str, float]], *, css: str = "bar",
                    top: float | None = None, unit: str = "") -> Chart:
    """Ranked items, one bar each, labelled on the left (a top-5 list, two rates side by side)."""
    if not items or not any(value for _, value in items):
        return Chart(title, empty=True)
    left = 180
    row = 30
    height = TOP + BOTTOM + row * len(items)
    top = top or nice_axis(max(value for _, value in items)).top
    inner_w = WIDTH - left - RIGHT - 40
    rects, labels = [], []
    for i, (label, value) in enumerate(items):
        y = TOP + row * i
        width = inner_w * value / top if top else 0
        text = f"{_number(value)}{unit}"
        rects.append(Rect(left, y + 4, round(max(width, 1), 1), row - 8, css, f"{label}: {text}"))
        labels.append(Tick(y + row / 2, label))
    return Chart(title, height=height, rects=rects, bar_labels=labels, baseline=height - BOTTOM,
                 values=[(round(r.x + r.width + 6, 1), round(r.y + r.height / 2 + 4, 1),
                          f"{_number(v)}{unit}") for r, (_, v) in zip(rects, items)])
