"""Charts as PNG images that any email client shows: bars, and forecast beside actual, each with
alt text that carries the numbers for readers who do not see the image."""

import io
from dataclasses import dataclass
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")  # no display: charts are drawn on servers and in flow runs

from matplotlib.axes import Axes  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from improve.formatting import money, quantity  # noqa: E402

# 544 px: the width of an email's content column (tasks/mail.py's layout is 600 with padding).
WIDTH_PX, HEIGHT_PX, DPI = 544, 272, 100
GREEN, GREY = "#1d6b48", "#9aa8a0"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Chart:
    """One rendered chart: its name in URLs and email parts, title, alt text and PNG bytes."""

    name: str
    title: str
    alt: str
    png: bytes


def _axis_label(value: float, unit: str) -> str:
    return f"£{value:,.0f}" if unit == "£" else f"{value:,.0f}"


def _figure(title: str, unit: str) -> tuple[Figure, Axes]:
    # A Figure without pyplot: no global state, so charts can be drawn from several threads.
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    axes: Axes = figure.subplots()
    axes.set_title(title, fontsize=10, loc="left")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _axis_label(v, unit)))
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8)
    axes.grid(axis="y", color="#eceee9")
    axes.set_axisbelow(True)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No software or date in the metadata: the same numbers always give the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


@lru_cache(maxsize=64)
def _bars_png(title: str, unit: str, labels: tuple[str, ...], values: tuple[float, ...]) -> bytes:
    figure, axes = _figure(title, unit)
    axes.bar(range(len(values)), values, color=GREEN)
    crowded = len(labels) > 6  # twelve months: slanted, or the labels run into each other
    axes.set_xticks(range(len(labels)), labels)
    if crowded:
        axes.tick_params(axis="x", labelrotation=30)
    return _png(figure)


@lru_cache(maxsize=64)
def _paired_png(
    title: str,
    unit: str,
    labels: tuple[str, ...],
    forecast: tuple[float, ...],
    actual: tuple[float, ...],
) -> bytes:
    figure, axes = _figure(title, unit)
    width = 0.4
    places = range(len(labels))
    axes.bar([p - width / 2 for p in places], forecast, width, color=GREY, label="forecast")
    axes.bar([p + width / 2 for p in places], actual, width, color=GREEN, label="actual")
    axes.set_xticks(list(places), labels)
    axes.legend(fontsize=8, frameon=False)
    return _png(figure)


def figure_text(value: float, unit: str) -> str:
    """A number as the alt text and the tables say it: "£1,200", "484 kg CO2e", "12.5 kWh"."""
    return money(value) if unit == "£" else quantity(value, unit)


def bars(name: str, title: str, unit: str, points: list[tuple[str, float]]) -> Chart:
    """A bar per label, e.g. kg CO2e per month; the alt text names every bar's value."""
    labels = tuple(label for label, _ in points)
    values = tuple(float(value) for _, value in points)
    said = "; ".join(f"{label}: {figure_text(value, unit)}" for label, value in points)
    alt = f"Bar chart, {title}. {said or 'No figures yet'}."
    return Chart(name, title, alt, _bars_png(title, unit, labels, values))


def forecast_against_actual(
    name: str, title: str, unit: str, points: list[tuple[str, float, float]]
) -> Chart:
    """A forecast bar beside an actual bar per label; the alt text names both for each."""
    labels = tuple(label for label, _, _ in points)
    forecast = tuple(float(f) for _, f, _ in points)
    actual = tuple(float(a) for _, _, a in points)
    said = "; ".join(
        f"{label}: forecast {figure_text(f, unit)}, actual {figure_text(a, unit)}"
        for label, f, a in points
    )
    alt = f"Paired bar chart, {title}. {said or 'No figures yet'}."
    return Chart(name, title, alt, _paired_png(title, unit, labels, forecast, actual))
