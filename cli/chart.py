"""`hotline report --chart FILE.svg|png`: the report as a picture, with matplotlib (Agg,
no display): calls per period stacked by outcome (answered, abandoned, voicemail) and the
service level as a line on a second axis, the same figures as the panel's charts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ari_app.domain.errors import InvalidValue
from ari_app.services.reports import By, DayReport

FORMATS = (".svg", ".png")
COLOURS = {"answered": "#2e7d32", "abandoned": "#c62828", "voicemail": "#f9a825"}


@dataclass
class Period:
    label: str
    day: date
    answered: int = 0
    abandoned: int = 0
    voicemail: int = 0
    offered: int = 0
    in_time: int = 0
    service_level_pct: float | None = None


def check_path(path: str) -> Path:
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise InvalidValue(f"--chart: {path!r} must end in .svg or .png")
    return target


def periods(rows: Iterable[DayReport], start: date, end: date, by: By) -> list[Period]:
    """Every period from `start` to `end` (empty ones too), all hotlines of `rows` added
    up. The service level is per period; by hour it runs through each day (cumulative),
    like the panel's line."""
    slots: dict[tuple[date, int], Period] = {}
    day = start - timedelta(days=start.weekday()) if by == "week" else start
    while day <= end:
        if by == "hour":
            for hour in range(24):
                slots[(day, hour)] = Period(f"{day:%m-%d} {hour:02d}h", day)
            day += timedelta(days=1)
        elif by == "week":
            year, week, _ = day.isocalendar()
            slots[(day, 0)] = Period(f"{year}-W{week:02d}", day)
            day += timedelta(days=7)
        else:
            slots[(day, 0)] = Period(day.isoformat(), day)
            day += timedelta(days=1)
    for r in rows:
        period = slots.get((r.day, r.hour or 0))
        if period is None:
            continue
        period.answered += r.outcomes["answered"]
        period.abandoned += r.outcomes["abandoned"]
        period.voicemail += r.outcomes["voicemail"]
        period.offered += r.offered
        period.in_time += r.answered_in_time
    offered = in_time = 0
    current: date | None = None
    for period in slots.values():
        if by != "hour" or period.day != current:
            offered = in_time = 0
            current = period.day
        offered += period.offered
        in_time += period.in_time
        period.service_level_pct = round(100 * in_time / offered, 1) if offered else None
    return list(slots.values())


def draw(target: Path, data: list[Period], title: str) -> None:
    """Write the chart; the format follows the file's suffix."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    labels = [p.label for p in data]
    xs = list(range(len(data)))
    fig, ax = plt.subplots(figsize=(max(8.0, len(data) * 0.35), 4.5))
    try:
        bottom = [0] * len(data)
        for key, colour in COLOURS.items():
            heights = [getattr(p, key) for p in data]
            ax.bar(xs, heights, bottom=bottom, color=colour, label=key)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel("calls")
        ax.set_title(title)
        step = max(1, len(data) // 24)
        ax.set_xticks(xs[::step], labels[::step], rotation=60, ha="right", fontsize=8)
        level = ax.twinx()
        points: list[Any] = [p.service_level_pct for p in data]
        level.plot(
            xs, [float("nan") if v is None else v for v in points], color="#1565c0",
            marker="o", markersize=3, label="service level %",
        )  # fmt: skip
        level.set_ylim(0, 105)
        level.set_ylabel("service level %")
        handles = ax.get_legend_handles_labels()
        more = level.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(target, format=target.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
