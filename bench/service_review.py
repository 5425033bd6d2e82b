"""Import and review of 1,000,000 service records, beside a plain csv + Python loop.

Writes a seeded CSV of N records (default 1,000,000) over the last year — letters to customers,
site visits, hourly meter readings, vehicle trips, packaging, partner deliveries — for 10,000
customers (60% agreeing to email) and 50 partners. Then, in one run:
  import   tasks.records.import_records over tasks.records.read_csv: rows a second;
  review   tasks.detection.review_records: every rule's query and the improvements it raises
           (at most review_limit_per_rule a rule), in seconds; and the rules' queries alone;
  loop     the same six rules over the same file with csv.DictReader and a Python loop
           (the baseline: what a script would do without the database),
checks that the rules and the loop found the same number of opportunities per rule, and prints
them side by side with the ratio.

    .venv/bin/python -m bench.service_review [--rows 1000000]
"""

import argparse
import csv
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import private_environment

CUSTOMERS, PARTNERS, SITES, ROUTES = 10_000, 50, 30, 200
PROCESSES = ("billing", "field visits", "deliveries", "facilities")
# kind → share of the rows
MIX = {
    "letter_posted": 0.30,
    "site_visit": 0.15,
    "meter_reading": 0.25,
    "vehicle_trip": 0.15,
    "packaging_used": 0.05,
    "partner_delivery": 0.10,
}


def people(path: Path) -> None:
    """Customers (with their consent) and partners in the database, and the customers as CSV
    for the loop, which has no database to ask."""
    from sqlalchemy import insert

    from models import Customer, CustomerConsent, Partner, Purpose
    from models.db import session_scope, utcnow

    rng = random.Random(11)
    now = utcnow()
    with session_scope() as session:
        session.execute(
            insert(Customer),
            [
                {
                    "name": f"Customer {n}",
                    "email": f"c{n}@example.com",
                    "contact_format": "html",
                    "language": "en",
                    "created_at": now,
                }  # fmt: skip
                for n in range(CUSTOMERS)
            ],
        )
        session.execute(
            insert(Partner),
            [
                {
                    "name": f"Partner {n}",
                    "email": f"p{n}@example.net",
                    "contact_name": "",
                    "service": "",
                    "footprint_note": "",
                    "created_at": now,
                }  # fmt: skip
                for n in range(PARTNERS)
            ],
        )
        ids = dict(session.exec(select_customers()).all())
        agree = {email for email in ids if rng.random() < 0.6}
        session.execute(
            insert(CustomerConsent),
            [
                {
                    "customer_id": ids[email],
                    "purpose": Purpose.improvement_updates,
                    "granted": email in agree,
                    "channel": "import",
                    "changed_at": now,
                }  # fmt: skip
                for email in ids
            ],
        )
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "email_agreed"])
        writer.writerows([email, "yes" if email in agree else "no"] for email in sorted(ids))


def select_customers() -> Any:
    from sqlmodel import select

    from models import Customer

    return select(Customer.email, Customer.id)


def write_records(path: Path, rows: int, now: datetime) -> None:
    """N records over the year before `now`, the same every run."""
    rng = random.Random(2026)
    start = now - timedelta(days=365)
    kinds, weights = list(MIX), list(MIX.values())
    # Each site, route and partner has its own habits, so some cross a threshold and most do not.
    site_use = {s: (rng.uniform(20, 40), rng.uniform(2, 30)) for s in range(SITES)}
    route_miles = {r: rng.uniform(3, 18) * (3 if r % 25 == 0 else 1) for r in range(ROUTES)}
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["key", "process", "kind", "occurred_at", "quantity", "customer_email",
                         "partner_email", "site", "route", "detail"])  # fmt: skip
        for n in range(rows):
            kind = rng.choices(kinds, weights)[0]
            at = start + timedelta(seconds=rng.randrange(365 * 86400))
            customer = partner = site = route = detail = ""
            if kind == "letter_posted":
                process, quantity = rng.choice(PROCESSES[:2]), 1.0
                customer, detail = f"c{rng.randrange(CUSTOMERS)}@example.com", "statement"
            elif kind == "site_visit":
                process, quantity = "field visits", 1.0
                customer = f"c{rng.randrange(CUSTOMERS)}@example.com"
            elif kind == "meter_reading":
                number = rng.randrange(SITES)
                at = at.replace(minute=0, second=0)
                local = at.astimezone(ZoneInfo("Europe/London"))
                busy = local.weekday() < 5 and 8 <= local.hour < 18
                process, site = "facilities", f"Site {number}"
                quantity = round(site_use[number][0 if busy else 1] * rng.uniform(0.8, 1.2), 2)
            elif kind == "vehicle_trip":
                number = rng.randrange(ROUTES)
                process, route = "field visits", f"Route {number}"
                detail = "car" if number % 7 == 0 else "van"
                quantity = round(route_miles[number] * rng.uniform(0.7, 1.3), 1)
            elif kind == "packaging_used":
                process, quantity = rng.choice(PROCESSES[2:]), round(rng.uniform(0.1, 2), 2)
                detail = "single-use" if rng.random() < 0.3 else "returnable"
            else:
                process, quantity = "deliveries", round(rng.uniform(5, 40), 1)
                partner = f"p{rng.randrange(PARTNERS)}@example.net"
                site = f"Site {rng.randrange(SITES // 3)}"
            writer.writerow([f"r{n}", process, kind, at.isoformat(timespec="seconds"), quantity,
                             customer, partner, site, route, detail])  # fmt: skip


def import_file(path: Path) -> tuple[int, float]:
    from sqlmodel import Session

    from models.db import get_engine
    from tasks.records import import_records, read_csv

    started = time.perf_counter()
    with Session(get_engine()) as session:
        summary = import_records(session=session, rows=read_csv(path))
    elapsed = time.perf_counter() - started
    assert not summary.refused, summary.refused[:5]
    return summary.taken, elapsed


def review(now: datetime) -> tuple[dict[str, int], int, float, float]:
    """(found per rule, raised, seconds of the rules' queries alone, seconds of the review)."""
    from sqlmodel import Session

    from improve.settings import settings
    from models.db import get_engine
    from tasks.detection import RULES, Window, review_records

    window = Window(now - timedelta(days=settings.review_days), now, settings.review_days)
    with Session(get_engine()) as session:
        started = time.perf_counter()
        for _kind, _words, rule in RULES.values():
            rule(session=session, window=window)
        queries = time.perf_counter() - started
    with Session(get_engine()) as session:
        started = time.perf_counter()
        report = review_records(session=session, now=now)
        session.commit()
        elapsed = time.perf_counter() - started
    return {r.rule: r.found for r in report.rules}, len(report.raised), queries, elapsed


def loop(records: Path, customers: Path, now: datetime) -> dict[str, int]:
    """The six rules as a script without a database would apply them: read every row, keep what
    is in the window, total it in dictionaries, then judge each total by the same thresholds."""
    from improve.settings import settings as s

    since, days = now - timedelta(days=s.review_days), s.review_days
    with customers.open() as file:
        agreed = {row["email"] for row in csv.DictReader(file) if row["email_agreed"] == "yes"}
    letters: dict[str, set[str]] = defaultdict(set)
    visits: dict[str, list[datetime]] = defaultdict(list)
    energy: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    miles: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    packaging: dict[str, float] = defaultdict(float)
    calls: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [set(), 0.0])
    zone = ZoneInfo(s.timezone)
    with records.open(newline="") as file:
        for row in csv.DictReader(file):
            at = datetime.fromisoformat(row["occurred_at"])
            if not since <= at < now:
                continue
            kind, quantity = row["kind"], float(row["quantity"])
            if kind == "letter_posted" and row["customer_email"] in agreed:
                letters[row["process"]].add(row["customer_email"])
            elif kind == "site_visit" and row["customer_email"]:
                visits[row["customer_email"]].append(at)
            elif kind == "meter_reading" and row["site"]:
                local = (at - timedelta(minutes=30)).astimezone(zone)
                is_open = local.weekday() in s.review_open_weekdays and (
                    s.review_open_from_hour <= local.hour < s.review_open_until_hour
                )
                energy[row["site"]][0 if is_open else 1] += quantity
            elif kind == "vehicle_trip" and row["route"]:
                miles[row["route"]][1 if row["detail"].lower() == "car" else 0] += quantity
            elif kind == "packaging_used" and row["detail"].lower() in ("single-use",):
                packaging[row["process"]] += quantity
            elif kind == "partner_delivery" and row["partner_email"]:
                call = calls[(row["partner_email"], row["site"])]
                call[0].add(at.date())
                call[1] += quantity
    share = s.review_out_of_hours_percent / 100
    cut = s.review_route_saving_percent / 100

    def repeats(times: list[datetime]) -> int:
        times.sort()
        gaps = (b - a for a, b in zip(times, times[1:], strict=False))
        return sum(gap <= timedelta(days=s.review_repeat_days) for gap in gaps)

    return {
        "paper-statements": sum(len(c) >= s.review_paper_min_customers for c in letters.values()),
        "repeat-visits": sum(repeats(t) >= s.review_repeat_visits for t in visits.values()),
        "out-of-hours-energy": sum(o / (i + o) > share for i, o in energy.values() if i + o),
        "high-mileage-routes": sum(
            v + c > days / 7 * s.review_route_miles_week
            and bool(round(v * 365 / days * cut) or round(c * 365 / days * cut))
            for v, c in miles.values()
        ),
        "single-use-packaging": sum(
            kg > s.review_packaging_kg_year * days / 365 for kg in packaging.values()
        ),
        "partner-deliveries": sum(
            len(d) >= s.review_partner_days_week * days / 7
            and len(d) * 7 / days > s.review_partner_target_days_week
            for d, _ in calls.values()
        ),
    }


def measure(rows: int) -> None:
    data = private_environment()

    from models.db import get_engine, init_db, utcnow

    init_db()
    dialect = get_engine().dialect.name
    now = utcnow().replace(microsecond=0)
    records, customers = data / "records.csv", data / "customers.csv"
    people(customers)
    started = time.perf_counter()
    write_records(records, rows, now)
    print(f"{rows:,} records written to CSV in {time.perf_counter() - started:.1f} s; {dialect}")

    taken, import_seconds = import_file(records)
    assert taken == rows, f"imported {taken:,} of {rows:,}"
    found, raised, query_seconds, review_seconds = review(now)
    started = time.perf_counter()
    looped = loop(records, customers, now)
    loop_seconds = time.perf_counter() - started
    assert found == looped, f"the rules found {found}, the loop {looped}"

    print(f"import  tasks.records.import_records   {rows / import_seconds:>10,.0f} rows/s   "
          f"({import_seconds:.1f} s)")  # fmt: skip
    print(f"review  tasks.detection.review_records {review_seconds:>10.2f} s        "
          f"({raised} raised; the rules' queries alone {query_seconds:.2f} s)")  # fmt: skip
    print(f"loop    csv + Python, the same rules   {loop_seconds:>10.2f} s")
    print(f"        the loop takes {loop_seconds / review_seconds:.1f}× as long as the review "
          f"({loop_seconds / query_seconds:.1f}× as long as the queries alone)")  # fmt: skip
    print("Found per rule (the rules and the loop agree): "
          + ", ".join(f"{rule} {n}" for rule, n in found.items()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    measure(args.rows)


if __name__ == "__main__":
    main()
