"""Detection: the service review's rules over service records, and the improvements they propose.

Each rule is one aggregate query over `service_record` (GROUP BY in the database, so a review of
a million records takes seconds), read over the last `settings.review_days` days, with its
thresholds in settings (`review_*`). A finding becomes a detected improvement with a forecast
worked out from the factors in force, the evidence (rule, what was seen, a link to the records),
the customers or partners it concerns and its process — unless an improvement for the same
opportunity is still open. README.md ("Detection: the service review") lists the rules.
"""

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy import Integer, and_, case, cast, func, or_
from sqlmodel import Session, col, select

from improve.errors import ImproveError
from improve.formatting import quantity
from improve.settings import settings
from models import (
    CLOSED_STATUSES,
    Basis,
    Category,
    Channel,
    Customer,
    CustomerConsent,
    Evidence,
    Improvement,
    ImprovementCustomer,
    ImprovementPartner,
    Partner,
    Per,
    Purpose,
    RecordKind,
    ServiceProcess,
    ServiceRecord,
    Source,
    Status,
)
from tasks.estimates import ActivityIn, set_activity
from tasks.lifecycle import record_creation

REVIEWER = "service-review"  # the actor the history names for what the review raised
SINGLE_USE = ("single-use", "single use", "single_use")  # packaging_used's detail, lower-cased
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPPORTUNITY_MAX = 120  # Improvement.opportunity's length


class ReviewSettingInvalid(ImproveError):
    """A review setting the rules cannot use; says which and what would do."""


@dataclass(frozen=True)
class Window:
    """The stretch of records a review reads: the last `days` days up to `until`."""

    since: datetime
    until: datetime
    days: int

    def a_year(self, amount: float) -> float:
        return amount * 365 / self.days

    def a_week(self, amount: float) -> float:
        return amount * 7 / self.days

    def query(self, kind: RecordKind, **filters: object) -> str:
        """The records page's query string for these records: its days are whole days in the
        organisation's time zone, both included (tasks.records)."""
        local = settings.zone
        return urlencode(
            {
                "kind": kind.value,
                **filters,
                "since": f"{self.since.astimezone(local):%Y-%m-%d}",
                "until": f"{self.until.astimezone(local):%Y-%m-%d}",
            }
        )

    def where(self, kind: RecordKind) -> Any:
        return and_(
            col(ServiceRecord.kind) == kind,
            col(ServiceRecord.occurred_at) >= self.since,
            col(ServiceRecord.occurred_at) < self.until,
        )


@dataclass
class Finding:
    """What one rule saw for one opportunity, and the improvement it proposes."""

    opportunity: str
    title: str
    description: str
    category: Category
    lines: list[ActivityIn]
    summary: str
    records_query: str
    record_count: int
    size: float  # how much a year it is about, in the rule's own unit: biggest raised first
    process_id: int | None = None
    customer_ids: list[int] = field(default_factory=list)
    partner_ids: list[int] = field(default_factory=list)


@dataclass
class RuleReport:
    """What one rule looked at and what came of it, for the review's artifact."""

    rule: str
    looks_for: str
    kind: RecordKind
    records: int = 0
    found: int = 0
    raised: list[int] = field(default_factory=list)
    # Open, or decided within the window: "IMP-4 (paper-statements:process:1)"
    answered: list[str] = field(default_factory=list)
    held_back: int = 0  # over review_limit_per_rule: the next review raises them


@dataclass
class ReviewReport:
    since: datetime
    until: datetime
    rules: list[RuleReport]
    titles: dict[int, str] = field(default_factory=dict)  # what each raised improvement says

    @property
    def raised(self) -> list[int]:
        return [i for rule in self.rules for i in rule.raised]

    def counts(self) -> dict[str, int]:
        return {
            "records": sum(r.records for r in self.rules),
            "found": sum(r.found for r in self.rules),
            "raised": len(self.raised),
            "answered": sum(len(r.answered) for r in self.rules),
            "held_back": sum(r.held_back for r in self.rules),
        }

    def markdown(self) -> str:
        lines = [
            f"Service records from {self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC.",
            "",
            "| rule | looks for | records read | found | raised | open or decided lately "
            "| held back |",
            "|---|---|---:|---:|---|---|---:|",
        ]
        for r in self.rules:
            raised = ", ".join(f"IMP-{i}" for i in r.raised) or "—"
            still = ", ".join(r.answered) or "—"
            lines.append(
                f"| {r.rule} | {r.looks_for} | {r.records:,} {r.kind.value} | {r.found} | "
                f"{raised} | {still} | {r.held_back} |"
            )
        if self.titles:
            lines += ["", "Raised:", ""]
            lines += [f"- IMP-{i} {title}" for i, title in self.titles.items()]
        return "\n".join(lines)


# --- the rules -----------------------------------------------------------------------------------


def _days(session: Session, column: Any) -> Any:
    """A timestamp as days since 1970 (a float), in either database's own arithmetic."""
    if session.get_bind().dialect.name == "sqlite":
        return func.julianday(column) - 2440587.5
    return func.extract("epoch", column) / 86400.0


def _whole(session: Session, number: Any) -> Any:
    """The whole part of a positive number (PostgreSQL's CAST rounds; SQLite's truncates)."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(number, Integer)
    return func.floor(number)


def _opportunity(*parts: object) -> str:
    """ "rule:what:id", shortened with a hash of the whole where a site or route name is long."""
    key = ":".join(str(p) for p in parts)
    if len(key) <= OPPORTUNITY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: OPPORTUNITY_MAX - 17]}~{digest}"


def _process_names(session: Session) -> dict[int, str]:
    return {p.id: p.name for p in session.exec(select(ServiceProcess)).all() if p.id is not None}


def paper_customers(*, session: Session, window: Window) -> list[Finding]:
    """Customers still sent letters who have an email and agreed to hear from us by email
    (settings.review_paper_purpose): at least review_paper_min_customers in one process."""
    try:
        purpose = Purpose(settings.review_paper_purpose)
    except ValueError:
        raise ReviewSettingInvalid(
            f"IMPROVE_REVIEW_PAPER_PURPOSE {settings.review_paper_purpose!r} is no consent "
            f"purpose; use one of {', '.join(p.value for p in Purpose)}"
        ) from None
    could_have_email = and_(
        window.where(RecordKind.letter_posted),
        col(Customer.email) != "",
        col(CustomerConsent.granted) == True,  # noqa: E712  (SQL, not Python truthiness)
    )

    def on_paper(*columns: Any) -> Any:
        return (
            select(*columns)
            .join(Customer, col(Customer.id) == col(ServiceRecord.customer_id))
            .join(
                CustomerConsent,
                and_(
                    col(CustomerConsent.customer_id) == col(ServiceRecord.customer_id),
                    col(CustomerConsent.purpose) == purpose,
                ),
            )
            .where(could_have_email)
        )

    # One pass, grouped by process and customer: at most one row per customer and process,
    # which gives both the totals and the customers to link.
    per_customer = session.exec(
        on_paper(
            ServiceRecord.process_id,
            ServiceRecord.customer_id,
            func.sum(ServiceRecord.quantity),
            func.count(),
        ).group_by(col(ServiceRecord.process_id), col(ServiceRecord.customer_id))
    ).all()
    customers_of: dict[int, list[int]] = defaultdict(list)
    letters_of: dict[int, float] = defaultdict(float)
    records_of: dict[int, int] = defaultdict(int)
    for process_id, customer_id, sent, count in per_customer:
        customers_of[process_id].append(customer_id)
        letters_of[process_id] += sent
        records_of[process_id] += count
    names = _process_names(session)
    findings = []
    for process_id, customer_ids in customers_of.items():
        customers, letters, records = (
            len(customer_ids),
            letters_of[process_id],
            records_of[process_id],
        )
        if customers < settings.review_paper_min_customers:
            continue
        a_year = round(window.a_year(letters))
        process = names.get(process_id, f"process {process_id}")
        seen = (
            f"{customers} customers of {process} were sent {quantity(letters)} letters in the "
            f"last {window.days} days, though each has an email address and agreed to hear from "
            f"us by email ({purpose.value.replace('_', ' ')})"
        )
        findings.append(
            Finding(
                opportunity=_opportunity("paper-statements", "process", process_id),
                title=f"Move {customers} customers of {process} from paper to email",
                description=(
                    "Rule: customers still sent letters who have an email address and consent to "
                    f"email could be written to by email instead. Seen: {seen}. About "
                    f"{quantity(a_year)} letters a year would no longer be posted."
                ),
                category=Category.resource,
                lines=[ActivityIn(activity="letters", quantity=a_year, per=Per.year)],
                summary=seen,
                records_query=window.query(RecordKind.letter_posted, process=process),
                record_count=records,
                size=a_year,
                process_id=process_id,
                customer_ids=customer_ids,
            )
        )
    return findings


def repeat_visits(*, session: Session, window: Window) -> list[Finding]:
    """Customers visited again within review_repeat_days of their previous visit, at least
    review_repeat_visits times in the window: one visit that settles it could save the rest."""
    day = _days(session, ServiceRecord.occurred_at)
    visits = (
        select(
            col(ServiceRecord.customer_id).label("customer_id"),
            col(ServiceRecord.process_id).label("process_id"),
            (
                day
                - func.lag(day).over(
                    partition_by=col(ServiceRecord.customer_id),
                    order_by=col(ServiceRecord.occurred_at),
                )
            ).label("gap"),
        )
        .where(window.where(RecordKind.site_visit), col(ServiceRecord.customer_id).is_not(None))
        .subquery()
    )
    repeats = func.sum(case((visits.c.gap <= settings.review_repeat_days, 1), else_=0))
    rows = session.execute(
        sa.select(
            visits.c.customer_id,
            func.count(),
            repeats,
            func.max(visits.c.process_id),
            func.max(Customer.name),
        )
        .join(Customer, col(Customer.id) == visits.c.customer_id)
        .group_by(visits.c.customer_id)
        .having(repeats >= settings.review_repeat_visits)
    ).all()
    findings = []
    for customer_id, count, repeated, process_id, name in rows:
        a_year = round(window.a_year(repeated), 1)
        seen = (
            f"{name} was visited {count} times in the last {window.days} days, {repeated} of "
            f"them within {settings.review_repeat_days} days of the visit before"
        )
        findings.append(
            Finding(
                opportunity=_opportunity("repeat-visits", "customer", customer_id),
                title=f"Settle {name}'s repeat visits in one",
                description=(
                    "Rule: a site visit within "
                    f"{settings.review_repeat_days} days of the customer's previous one is a "
                    "repeat; the first visit could have settled it (the right part, a video "
                    f"survey first). Seen: {seen}. About {a_year:g} visits a year avoided."
                ),
                category=Category.carbon,
                lines=[ActivityIn(activity="site_visits", quantity=a_year, per=Per.year)],
                summary=seen,
                records_query=window.query(RecordKind.site_visit, customer=customer_id),
                record_count=count,
                size=a_year,
                process_id=process_id,
                customer_ids=[customer_id],
            )
        )
    return findings


def out_of_hours_energy(*, session: Session, window: Window) -> list[Finding]:
    """Sites using more than review_out_of_hours_percent of their electricity outside opening
    hours (review_open_*, local time): the forecast brings it down to that share."""
    # The hour of each reading's midpoint (it is the kWh of the hour ending at occurred_at),
    # counted from 1970 in UTC; opening hours are local, so they are judged in Python, per
    # site and hour: a few thousand rows, however many readings.
    hour = _whole(session, _days(session, ServiceRecord.occurred_at) * 24 - 0.5)
    rows = session.execute(
        sa.select(
            col(ServiceRecord.site),
            hour,
            func.sum(ServiceRecord.quantity),
            func.count(),
            func.max(ServiceRecord.process_id),
        )
        .where(window.where(RecordKind.meter_reading), col(ServiceRecord.site) != "")
        .group_by(col(ServiceRecord.site), hour)
    ).all()
    zone = settings.zone
    sites: dict[str, list[float]] = {}  # site → [kWh in hours, kWh out of hours, records, process]
    for site, hours_since, kwh, count, process_id in rows:
        local = (EPOCH + timedelta(hours=int(hours_since))).astimezone(zone)
        is_open = (
            local.weekday() in settings.review_open_weekdays
            and settings.review_open_from_hour <= local.hour < settings.review_open_until_hour
        )
        totals = sites.setdefault(site, [0.0, 0.0, 0, process_id])
        totals[0 if is_open else 1] += kwh
        totals[2] += count
        totals[3] = max(totals[3], process_id)
    share = settings.review_out_of_hours_percent / 100
    hours = (
        f"{settings.review_open_from_hour:02d}:00–{settings.review_open_until_hour:02d}:00 on "
        + ", ".join(
            ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d]
            for d in sorted(settings.review_open_weekdays)
        )
    )
    findings = []
    for site, (inside, outside, count, process_id) in sites.items():
        total = inside + outside
        if not total or outside / total <= share or share >= 1:
            continue
        # Out-of-hours use brought down to the threshold share: o' / (i + o') = share.
        saved = outside - share * inside / (1 - share)
        a_year = round(window.a_year(saved))
        seen = (
            f"{site} used {quantity(total, 'kWh')} in the last {window.days} days, "
            f"{quantity(outside, 'kWh')} ({100 * outside / total:.0f}%) outside opening hours "
            f"({hours}, {settings.timezone})"
        )
        findings.append(
            Finding(
                opportunity=_opportunity("out-of-hours", "site", site),
                title=f"Cut out-of-hours electricity at {site}",
                description=(
                    "Rule: a site using more than "
                    f"{settings.review_out_of_hours_percent:g}% of its electricity outside "
                    "opening hours is leaving heating, lighting or equipment on. Seen: "
                    f"{seen}. Bringing it down to {settings.review_out_of_hours_percent:g}% "
                    f"saves about {quantity(a_year, 'kWh')} a year."
                ),
                category=Category.energy,
                lines=[ActivityIn(activity="electricity", quantity=a_year, per=Per.year)],
                summary=seen,
                records_query=window.query(RecordKind.meter_reading, site=site),
                record_count=int(count),
                size=a_year,
                process_id=int(process_id),
            )
        )
    return findings


def high_mileage_routes(*, session: Session, window: Window) -> list[Finding]:
    """Routes driven more than review_route_miles_week miles a week: route planning is forecast
    to save review_route_saving_percent of their miles (van and car apart)."""
    car = func.lower(ServiceRecord.detail) == "car"
    rows = session.execute(
        sa.select(
            col(ServiceRecord.route),
            func.sum(ServiceRecord.quantity),
            func.sum(case((car, ServiceRecord.quantity), else_=0)),
            func.count(),
            func.max(ServiceRecord.process_id),
        )
        .where(window.where(RecordKind.vehicle_trip), col(ServiceRecord.route) != "")
        .group_by(col(ServiceRecord.route))
        .having(
            func.sum(ServiceRecord.quantity) > window.days / 7 * settings.review_route_miles_week
        )
    ).all()
    cut = settings.review_route_saving_percent / 100
    findings = []
    for route, miles, car_miles, count, process_id in rows:
        lines = [
            ActivityIn(activity=activity, quantity=round(window.a_year(part) * cut), per=Per.year)
            for activity, part in (("van_miles", miles - car_miles), ("car_miles", car_miles))
            if round(window.a_year(part) * cut)
        ]
        if not lines:
            continue
        seen = (
            f"route {route} was driven {quantity(miles)} miles in the last {window.days} days, "
            f"{quantity(window.a_week(miles))} a week"
        )
        saved = sum(line.quantity for line in lines)
        findings.append(
            Finding(
                opportunity=_opportunity("route-miles", "route", route),
                title=f"Plan route {route} to drive fewer miles",
                description=(
                    "Rule: a route driven more than "
                    f"{quantity(settings.review_route_miles_week)} miles a week is worth "
                    f"planning again. Seen: {seen}. Planning is forecast to save "
                    f"{settings.review_route_saving_percent:g}% of its miles, about "
                    f"{quantity(saved)} miles a year."
                ),
                category=Category.carbon,
                lines=lines,
                summary=seen,
                records_query=window.query(RecordKind.vehicle_trip, route=route),
                record_count=count,
                size=saved,
                process_id=process_id,
            )
        )
    return findings


def single_use_packaging(*, session: Session, window: Window) -> list[Finding]:
    """Processes using more than review_packaging_kg_year kg of single-use packaging a year:
    returnable packaging is forecast to replace all of it."""
    rows = session.exec(
        select(ServiceRecord.process_id, func.sum(ServiceRecord.quantity), func.count())
        .where(
            window.where(RecordKind.packaging_used),
            func.lower(ServiceRecord.detail).in_(SINGLE_USE),
        )
        .group_by(col(ServiceRecord.process_id))
        .having(
            func.sum(ServiceRecord.quantity) > settings.review_packaging_kg_year * window.days / 365
        )
    ).all()
    names = _process_names(session)
    findings = []
    for process_id, kg, count in rows:
        a_year = round(window.a_year(kg), 1)
        process = names.get(process_id, f"process {process_id}")
        seen = (
            f"{process} used {quantity(kg, 'kg')} of single-use packaging in the last "
            f"{window.days} days"
        )
        findings.append(
            Finding(
                opportunity=_opportunity("single-use-packaging", "process", process_id),
                title=f"Returnable packaging instead of single-use in {process}",
                description=(
                    "Rule: a process using more than "
                    f"{quantity(settings.review_packaging_kg_year, 'kg')} of single-use "
                    f"packaging a year could use returnable packaging. Seen: {seen}, about "
                    f"{quantity(a_year, 'kg')} a year."
                ),
                category=Category.waste,
                lines=[ActivityIn(activity="packaging", quantity=a_year, per=Per.year)],
                summary=seen,
                records_query=window.query(RecordKind.packaging_used, process=process),
                record_count=count,
                size=a_year,
                process_id=process_id,
            )
        )
    return findings


def partner_deliveries(*, session: Session, window: Window) -> list[Finding]:
    """Partners delivering to one site on at least review_partner_days_week days a week: the
    forecast consolidates them to review_partner_target_days_week, saving the van miles."""
    day = _whole(session, _days(session, ServiceRecord.occurred_at))  # the UTC day
    days = func.count(func.distinct(day))
    rows = session.execute(
        sa.select(
            col(ServiceRecord.partner_id),
            col(ServiceRecord.site),
            days,
            func.sum(ServiceRecord.quantity),
            func.count(),
            func.max(ServiceRecord.process_id),
            func.max(Partner.name),
        )
        .join(Partner, col(Partner.id) == col(ServiceRecord.partner_id))
        .where(window.where(RecordKind.partner_delivery))
        .group_by(col(ServiceRecord.partner_id), col(ServiceRecord.site))
        .having(days >= settings.review_partner_days_week * window.days / 7)
    ).all()
    target = settings.review_partner_target_days_week
    findings = []
    for partner_id, site, delivery_days, miles, count, process_id, name in rows:
        a_week = window.a_week(delivery_days)
        if a_week <= target:
            continue
        saved = round(miles / delivery_days * (a_week - target) * 52)
        where = site or "our sites"
        seen = (
            f"{name} delivered to {where} on {delivery_days} days in the last {window.days} days "
            f"({a_week:.1f} a week), {quantity(miles)} miles in all"
        )
        findings.append(
            Finding(
                opportunity=_opportunity("partner-deliveries", "partner", partner_id, "site", site),
                title=f"Consolidate {name}'s deliveries to {where}",
                description=(
                    "Rule: a partner delivering to one site on "
                    f"{settings.review_partner_days_week:g} or more days a week could bring "
                    f"them together on {target:g}. Seen: {seen}. That saves about "
                    f"{quantity(saved)} van miles a year."
                ),
                category=Category.carbon,
                lines=[ActivityIn(activity="van_miles", quantity=saved, per=Per.year)],
                summary=seen,
                records_query=window.query(
                    RecordKind.partner_delivery,
                    partner=partner_id,
                    **({"site": site} if site else {}),
                ),
                record_count=count,
                size=saved,
                process_id=process_id,
                partner_ids=[partner_id],
            )
        )
    return findings


Rule = Callable[..., list[Finding]]
# name → (the kind it reads, what it looks for, the rule): the order of the report.
RULES: dict[str, tuple[RecordKind, str, Rule]] = {
    "paper-statements": (
        RecordKind.letter_posted,
        "customers on paper with an email and consent",
        paper_customers,
    ),
    "repeat-visits": (
        RecordKind.site_visit,
        "repeat visits to one customer",
        repeat_visits,
    ),
    "out-of-hours-energy": (
        RecordKind.meter_reading,
        "electricity used outside opening hours",
        out_of_hours_energy,
    ),
    "high-mileage-routes": (
        RecordKind.vehicle_trip,
        "routes with high weekly mileage",
        high_mileage_routes,
    ),
    "single-use-packaging": (
        RecordKind.packaging_used,
        "single-use packaging",
        single_use_packaging,
    ),
    "partner-deliveries": (
        RecordKind.partner_delivery,
        "partner deliveries that could be consolidated",
        partner_deliveries,
    ),
}


# --- the review ----------------------------------------------------------------------------------


def answered_by(*, session: Session, opportunity: str, since: datetime) -> Improvement | None:
    """The improvement that already answers an opportunity: one still open, or one decided
    (completed, rejected, cancelled) since `since` — the records a review reads from then are
    the ones it was decided on, and proposing it again would only ask the same question."""
    return session.exec(
        select(Improvement)
        .where(
            Improvement.opportunity == opportunity,
            or_(
                col(Improvement.status).not_in(CLOSED_STATUSES),
                col(Improvement.updated_at) >= since,
            ),
        )
        .order_by(col(Improvement.id).desc())
    ).first()


def propose(*, session: Session, rule: str, finding: Finding) -> Improvement:
    """Store a finding as a submitted, detected improvement with its forecast and evidence."""
    improvement = Improvement(
        title=finding.title[:200],
        description=finding.description[:10_000],
        category=finding.category,
        source=Source.detected,
        status=Status.submitted,
        process_id=finding.process_id,
        opportunity=finding.opportunity,
    )
    session.add(improvement)
    session.flush()
    assert improvement.id is not None
    record_creation(
        session=session,
        improvement=improvement,
        actor=REVIEWER,
        channel=Channel.flow,
        reason=f"found by the {rule} rule",
    )
    set_activity(
        session=session, improvement_id=improvement.id, basis=Basis.forecast, lines=finding.lines
    )
    for customer_id in finding.customer_ids:
        session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer_id))
    for partner_id in finding.partner_ids:
        session.add(ImprovementPartner(improvement_id=improvement.id, partner_id=partner_id))
    session.add(
        Evidence(
            improvement_id=improvement.id,
            rule=rule,
            summary=finding.summary[:2000],
            records_query=finding.records_query[:500],
            record_count=finding.record_count,
        )
    )
    session.flush()
    return improvement


def review_records(*, session: Session, now: datetime) -> ReviewReport:
    """Apply every rule to the last review_days of records and propose what they find.

    An opportunity with an improvement open, or decided within the window, is not raised again;
    each rule raises at most review_limit_per_rule, biggest first. The caller commits, then
    announces each raised id (improve.events.emit_submitted): route-improvement takes them on.
    """
    window = Window(now - timedelta(days=settings.review_days), now, settings.review_days)
    read = dict(
        session.exec(
            select(ServiceRecord.kind, func.count())
            .where(
                col(ServiceRecord.occurred_at) >= window.since,
                col(ServiceRecord.occurred_at) < window.until,
            )
            .group_by(col(ServiceRecord.kind))
        ).all()
    )
    report = ReviewReport(window.since, window.until, [])
    for name, (kind, looks_for, rule) in RULES.items():
        row = RuleReport(name, looks_for, kind, records=read.get(kind, 0))
        report.rules.append(row)
        findings = sorted(rule(session=session, window=window), key=lambda f: -f.size)
        row.found = len(findings)
        for finding in findings:
            standing = answered_by(
                session=session, opportunity=finding.opportunity, since=window.since
            )
            if standing is not None:
                row.answered.append(f"{standing.reference} ({finding.opportunity})")
            elif len(row.raised) >= settings.review_limit_per_rule:
                row.held_back += 1
            else:
                improvement = propose(session=session, rule=name, finding=finding)
                assert improvement.id is not None
                row.raised.append(improvement.id)
                report.titles[improvement.id] = improvement.title
    return report
