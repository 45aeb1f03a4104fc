"""The Donations page's chart of gifts per issue, as the shapes of an inline SVG (drawn by
the template, no script): one horizontal bar an issue, its reference on the left, its
number of gifts at the bar's end (gifts, not money: the currencies do not add up), in a
viewBox that shrinks to any width. The table below it holds the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.desk_donations import IssueRow

WIDTH = 640
LEFT, RIGHT, TOP = 170, 60, 8  # room for the references, and for the counts after the bars
ROW = 44  # a bar and the space under it
FONT = 24  # in the viewBox's units: about 11 px on a phone, where it is drawn at ~300 px
COLOUR = "#1a5fb4"


@dataclass(frozen=True)
class GiftBar:
    y: float
    width: float
    height: float
    name: str  # the issue's reference (or its number)
    count: int
    label: str  # its tooltip: "DMC-2611, The harbour: 3 gifts"


@dataclass(frozen=True)
class GiftChart:
    width: int
    height: int
    left: int
    font: int
    colour: str
    bars: list[GiftBar]


def gift_chart(issues: list[IssueRow]) -> GiftChart:
    top = max([1] + [issue.gifts for issue in issues])
    inner = WIDTH - LEFT - RIGHT
    bars = []
    for n, issue in enumerate(issues):
        name = issue.reference or f"#{issue.issue_id}"
        label = f"{name}, {issue.subject}: {issue.gifts} gift{'' if issue.gifts == 1 else 's'}"
        bars.append(GiftBar(TOP + n * ROW, round(inner * issue.gifts / top, 1), ROW * 0.7,
                            name, issue.gifts, label))  # fmt: skip
    return GiftChart(WIDTH, TOP * 2 + ROW * max(len(issues), 1), LEFT, FONT, COLOUR, bars)
