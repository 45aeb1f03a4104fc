"""The dashboard's chart of readers week by week, as the shapes of an inline SVG (drawn by
the template, no script): three bars a week (sign-ups, confirmations, departures) on a
scale from 0 to the largest count, in a viewBox that shrinks to any width."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.desk_overview import ReaderWeek

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 16, 40  # room for the scale and the dates
FONT = 20  # in the viewBox's units: about 12 px on a phone, where it is drawn at ~360 px
DATE_EVERY = 6  # weeks between two dates under the bars
SERIES = (
    ("signed_up", "Sign-ups", "#1a5fb4"),
    ("confirmed", "Confirmations", "#26a269"),
    ("left", "Departures", "#a51d2d"),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # its tooltip: "Sign-ups, week of 2 Nov: 312"


@dataclass(frozen=True)
class DateMark:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    dates: list[DateMark]
    top: int  # the largest count, at the top of the scale
    font: int
    axis_y: float  # where 0 is
    top_y: float
    left: float
    right: float
    series: tuple[tuple[str, str, str], ...]
    weeks: list[ReaderWeek]


def week_chart(weeks: list[ReaderWeek]) -> Chart:
    top = max([1] + [getattr(w, key) for w in weeks for key, _, _ in SERIES])
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / max(len(weeks), 1)
    bar_w = slot * 0.8 / len(SERIES)
    bars, dates = [], []
    for i, week in enumerate(weeks):
        x0 = LEFT + i * slot + slot * 0.1
        for n, (key, name, colour) in enumerate(SERIES):
            count = int(getattr(week, key))
            height = inner_h * count / top
            label = f"{name}, week of {week.monday:%d %b %Y}: {count}"
            bars.append(Bar(round(x0 + n * bar_w, 1), round(TOP + inner_h - height, 1),
                            round(bar_w, 1), round(height, 1), colour, label))  # fmt: skip
        if (len(weeks) - 1 - i) % DATE_EVERY == 0:  # this week's always: the newest
            # ends under its week's bars, so the last stays inside the picture
            dates.append(DateMark(round(LEFT + (i + 1) * slot, 1), f"{week.monday:%d %b}"))
    return Chart(WIDTH, HEIGHT, bars, dates, top, FONT, TOP + inner_h, TOP, LEFT, WIDTH - RIGHT,
                 SERIES, weeks)  # fmt: skip
