"""The stakeholder impact report: what completed improvements measurably save, month by month and
by category, forecast against actual, with its charts; emailed to subscribed stakeholders."""

import base64
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session, col, select

from improve.errors import InvalidInput
from improve.formatting import label
from improve.settings import settings
from models import Category, Improvement, OutboxEmail, Stakeholder, Status
from tasks.charts import Chart, bars, forecast_against_actual
from tasks.estimates import COLUMNS, MEASURE_NAMES, comparison_by_category, figure
from tasks.lifecycle import completion_times
from tasks.mail import INLINE_IMAGES, queue_email
from tasks.participation import participation_summary
from tasks.stakeholders import unsubscribe_url

MONTHS = 12
# The measures the report totals, in the order it shows them (tasks/estimates.py's names).
MEASURES = ("kg_co2e", "kwh", "kg_waste", "sheets_paper", "saving")
# The measures charted, with unit and name: what stakeholders ask first, emissions and money.
CHARTED = {"kg_co2e": ("kg CO2e", "kg CO2e"), "saving": ("£", "Money")}
_PERIOD = re.compile(r"(\d{4})-W(\d{2})")


def week_of(day: date) -> tuple[str, datetime, datetime]:
    """The ISO week holding `day`: its name ("2026-W23") and its start and end, Monday midnight
    to the next Monday midnight in the organisation's time zone, as UTC instants."""
    year, week, weekday = day.isocalendar()
    monday = day - timedelta(days=weekday - 1)
    start = datetime.combine(monday, time(0), settings.zone).astimezone(UTC)
    end = datetime.combine(monday + timedelta(days=7), time(0), settings.zone).astimezone(UTC)
    return f"{year}-W{week:02d}", start, end


def week_named(period: str) -> tuple[str, datetime, datetime]:
    """week_of for a week given by name ("2026-W23"); InvalidInput naming `period` otherwise."""
    match = _PERIOD.fullmatch(period.strip())
    try:
        if match is None:
            raise ValueError(period)
        return week_of(date.fromisocalendar(int(match[1]), int(match[2]), 1))
    except ValueError:
        raise InvalidInput({"period": f"{period!r} is not an ISO week such as 2026-W23"}) from None


def completed_between(
    *, session: Session, start: datetime | None, end: datetime
) -> list[tuple[Improvement, datetime]]:
    """Completed improvements and when, completed in [start, end) (from the beginning if None)."""
    done = completion_times()
    query = (
        select(Improvement, done.c.completed_at)
        .join(done, done.c.improvement_id == col(Improvement.id))
        .where(Improvement.status == Status.completed, done.c.completed_at < end)
    )
    if start is not None:
        query = query.where(done.c.completed_at >= start)
    rows = session.exec(query.order_by(done.c.completed_at, col(Improvement.id))).all()
    return [(improvement, completed_at) for improvement, completed_at in rows]


def month_of(moment: datetime) -> date:
    """The first day of the month `moment` falls in, in the organisation's time zone."""
    return moment.astimezone(settings.zone).date().replace(day=1)


def measured(improvement: Improvement, measure: str) -> float:
    """The improvement's measured figure for `measure` (0 where nothing was measured)."""
    return float(getattr(improvement, COLUMNS[measure][1]) or 0)


@dataclass
class Report:
    """The report as of `until`: every figure is a year's saving measured on completion."""

    until: datetime
    improvements: int
    totals: dict[str, float]
    # {"month": "2026-05", "label": "May 2026", "improvements": n, "kg_co2e": .., "saving": ..}
    months: list[dict[str, Any]] = field(default_factory=list)
    # {"category": "energy", "label": "Energy", "improvements": n, <each of MEASURES>: ..}
    categories: list[dict[str, Any]] = field(default_factory=list)
    # {"category", "label", "kg_co2e": {forecast, actual, variance, variance_percent}, "saving"}
    forecast: list[dict[str, Any]] = field(default_factory=list)
    # Who took part in each initiative (tasks/participation.py participation_summary)
    participation: list[dict[str, Any]] = field(default_factory=list)

    def charts(self) -> list[Chart]:
        """The report's charts, in the order the page and the email show them."""
        by_month, by_category, against = [], [], []
        for measure, (unit, what) in CHARTED.items():
            slug = measure.replace("_", "-")
            by_month.append(
                bars(
                    f"{slug}-by-month",
                    f"{what} saved a year, by month completed",
                    unit,
                    [(m["label"], m[measure]) for m in self.months],
                )
            )
            by_category.append(
                bars(
                    f"{slug}-by-category",
                    f"{what} saved a year, by category",
                    unit,
                    [(c["label"], c[measure]) for c in self.categories],
                )
            )
            pairs = [
                (row["label"], row[measure]["forecast"], row[measure]["actual"])
                for row in self.forecast
            ]
            against.append(
                forecast_against_actual(
                    f"{slug}-forecast-actual",
                    f"{what} saved a year: forecast against actual",
                    unit,
                    pairs,
                )
            )
        return by_month + by_category + against

    def table(self) -> list[dict[str, Any]]:
        """One row per category: what was completed and measured, beside what was forecast."""
        forecast = {row["category"]: row for row in self.forecast}
        return [
            {
                "category": c["label"],
                "completed": c["improvements"],
                **{f"{m} measured": round(c[m], 1) for m in MEASURES},
                **{
                    f"{m} forecast": round(forecast[c["category"]][m]["forecast"], 1)
                    for m in CHARTED
                    if c["category"] in forecast
                },
            }
            for c in self.categories
        ]

    def markdown(self, chart_url: str) -> str:
        """The totals and each chart (as an image at `chart_url`/<name>.png, with its alt text)."""
        lines = [
            f"# Impact as of {self.until:%Y-%m-%d %H:%M} UTC",
            "",
            f"{self.improvements} improvements completed. A year, measured:",
            "",
            "| measure | total |",
            "|---|---:|",
            *(f"| {MEASURE_NAMES[m]} | {figure(m, self.totals[m])} |" for m in MEASURES),
            "",
        ]
        for chart in self.charts():
            alt = chart.alt.replace("[", "(").replace("]", ")")
            image = f"![{alt}]({chart_url}/{chart.name}.png)"
            lines += [f"## {chart.title}", "", image, "", alt, ""]  # the numbers, seen or not
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON (an email's context, the API): the charts are drawn from these."""
        return {**asdict(self), "until": self.until.isoformat()}


def impact_report(*, session: Session, until: datetime) -> Report:
    """What improvements completed before `until` measurably save a year: in total, in each of
    the last twelve months (by the month they were completed, the last being the one `until`
    falls in), by category, and against what was forecast for them."""
    completed = completed_between(session=session, start=None, end=until)
    totals = {m: sum(measured(i, m) for i, _ in completed) for m in MEASURES}

    last = (until - timedelta(microseconds=1)).astimezone(settings.zone)
    months = []
    for back in range(MONTHS - 1, -1, -1):
        year, month = divmod(last.year * 12 + last.month - 1 - back, 12)
        first = date(year, month + 1, 1)
        in_month = [i for i, at in completed if month_of(at) == first]
        months.append(
            {
                "month": f"{first:%Y-%m}",
                "label": f"{first:%b %Y}",
                "improvements": len(in_month),
                **{m: sum(measured(i, m) for i in in_month) for m in CHARTED},
            }
        )

    categories = []
    for category in Category:
        of_category = [i for i, _ in completed if i.category == category]
        if of_category:
            categories.append(
                {
                    "category": category.value,
                    "label": label(category),
                    "improvements": len(of_category),
                    **{m: sum(measured(i, m) for i in of_category) for m in MEASURES},
                }
            )

    compared = comparison_by_category(session=session, completed_before=until)
    forecast = [
        {
            "category": name,
            "label": "All categories" if name == "total" else label(name),
            **{row["measure"]: row for row in rows if row["measure"] in CHARTED},
        }
        for name, rows in compared.items()
        if name != "total"
    ]
    return Report(
        until=until,
        improvements=len(completed),
        totals=totals,
        months=months,
        categories=categories,
        forecast=forecast,
        participation=participation_summary(session=session),
    )


def content_id(chart: Chart) -> str:
    """The Content-ID an emailed chart is attached under (and its <img src="cid:..."> names)."""
    return f"{chart.name}@impact.improve"


def email_charts(report: Report) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The charts as an email shows them: {name: {title, alt, src="cid:..."}}, and the images
    to attach inline, {content id: base64 PNG} (tasks/mail.py's INLINE_IMAGES)."""
    shown, images = {}, {}
    for chart in report.charts():
        cid = content_id(chart)
        shown[chart.name] = {"title": chart.title, "alt": chart.alt, "src": f"cid:{cid}"}
        images[cid] = base64.b64encode(chart.png).decode()
    return shown, images


def report_key(period: str, stakeholder_id: int) -> str:
    return f"report:{period}:stakeholder:{stakeholder_id}"


def queue_reports(*, session: Session, period: str) -> dict[str, int]:
    """Email the report for the ISO week `period` ("2026-W23") to each subscribed stakeholder,
    once each; the caller commits. Returns {"stakeholders": reports due, "queued": new rows}."""
    name, _, end = week_named(period)
    stakeholders = session.exec(
        select(Stakeholder).where(Stakeholder.subscribed == True).order_by(col(Stakeholder.id))  # noqa: E712
    ).all()
    counts = {"stakeholders": len(stakeholders), "queued": 0}
    keys = {s.id: report_key(name, s.id) for s in stakeholders if s.id is not None}
    sent = set(
        session.exec(
            select(OutboxEmail.idempotency_key).where(
                col(OutboxEmail.idempotency_key).in_(list(keys.values()))
            )
        ).all()
    )
    waiting = [s for s in stakeholders if s.id is not None and keys[s.id] not in sent]
    if not waiting:
        return counts
    report = impact_report(session=session, until=end)
    charts, images = email_charts(report)  # drawn once for every stakeholder
    for stakeholder in waiting:
        assert stakeholder.id is not None
        queue_email(
            session=session,
            key=keys[stakeholder.id],
            to=stakeholder.email,
            template="impact_report",
            context={
                "stakeholder_name": stakeholder.name,
                "organisation": stakeholder.organisation,
                "period": name,
                "report": report.as_dict(),
                "charts": charts,
                "impact_url": f"{settings.base_url}/impact",
                INLINE_IMAGES: images,
            },
            links={"unsubscribe_url": unsubscribe_url(stakeholder.id)},
        )
        counts["queued"] += 1
    return counts
