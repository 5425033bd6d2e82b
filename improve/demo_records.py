"""A year of Brightwater's service records, the same every time, for the first service review.

Made so that each detection rule has something real to find (and much that it should not):
customers still sent paper bills though they agreed to email, a few customers visited again
within weeks, a contact centre that heats and lights itself all night, one long van route,
single-use packaging in deliveries, and a courier calling at the depot four days a week.
"""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from models import Customer, Partner, ServiceRecord
from models.db import utcnow
from tasks.records import import_records

DAYS = 365
KEY = "demo-"  # every demo record's key starts so: the demo knows its own
# route → (process, vehicle, miles a working day)
ROUTES = {
    "North loop": ("field visits", "van", 112),
    "Coast road": ("field visits", "van", 46),
    "Town centre": ("field visits", "van", 28),
    "Surveyors": ("field visits", "car", 35),
}
# site → (kWh an hour when open, kWh an hour when closed): Riverside leaves it all on.
SITES = {"Riverside contact centre": (38, 24), "Harbour office": (30, 5)}
OPEN_HOURS = range(8, 18)
# partner → (site, weekdays they call, miles a call)
CALLS = {
    "Swift Parcels": ("Depot", (0, 2, 3, 4), 18),
    "Inkwell Print": ("Riverside contact centre", (1,), 26),
    "GreenCycle Waste": ("Harbour office", (2,), 12),
}


def seed_records(*, session: Session, now: datetime | None = None) -> int:
    """Import the demo's year of records once; how many were stored (0 the second time)."""
    if session.exec(select(ServiceRecord.id).where(col(ServiceRecord.key).startswith(KEY))).first():
        return 0
    customers = list(session.exec(select(Customer).order_by(col(Customer.id))).all())
    partners = {p.name: p.email for p in session.exec(select(Partner)).all()}
    rows = list(_rows(now or utcnow(), [c.email for c in customers], partners))
    return import_records(session=session, rows=rows).taken


def _rows(
    now: datetime, customers: list[str], partners: dict[str, str]
) -> Iterator[dict[str, Any]]:
    rng = random.Random(2026)  # the same year of records every time
    start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
    n = 0

    def row(process: str, kind: str, at: datetime, quantity: float, **fields: Any) -> dict:
        nonlocal n
        n += 1
        return {
            "key": f"{KEY}{n}",
            "process": process,
            "kind": kind,
            "occurred_at": at.isoformat(),
            "quantity": round(quantity, 2),
            **fields,
        }

    # Billing: a paper bill a month to a third of the customers.
    on_paper = customers[::3]
    for month in range(12):
        for email in on_paper:
            at = start + timedelta(days=30 * month + rng.randint(0, 3), hours=9)
            yield row("billing", "letter_posted", at, 1, customer_email=email, detail="bill")
    # Field visits: most customers once or twice a year; four visited again within weeks lately.
    for email in customers:
        for _ in range(rng.randint(1, 2)):
            at = start + timedelta(days=rng.randint(0, DAYS - 1), hours=rng.randint(8, 16))
            yield row("field visits", "site_visit", at, 1, customer_email=email, detail="repair")
    for email in customers[1:5]:
        first = now - timedelta(days=rng.randint(30, 70))
        for gap in (0, rng.randint(6, 20)):
            yield row("field visits", "site_visit", first + timedelta(days=gap), 1,
                      customer_email=email, detail="same fault again")  # fmt: skip
    # Every working day: each route driven, packaging used, partners calling.
    for day in range(DAYS):
        date = start + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for route, (process, vehicle, miles) in ROUTES.items():
            at = date + timedelta(hours=17)
            yield row(process, "vehicle_trip", at, miles * rng.uniform(0.8, 1.2), route=route,
                      detail=vehicle)  # fmt: skip
        yield row("deliveries", "packaging_used", date + timedelta(hours=11),
                  rng.uniform(1.2, 2.0), detail="single-use")  # fmt: skip
        yield row("deliveries", "packaging_used", date + timedelta(hours=11),
                  rng.uniform(3, 5), detail="returnable")  # fmt: skip
        for partner, (site, weekdays, miles) in CALLS.items():
            if date.weekday() in weekdays and partner in partners:
                yield row("deliveries", "partner_delivery", date + timedelta(hours=10), miles,
                          partner_email=partners[partner], site=site)  # fmt: skip
    # Facilities: the meters' hourly readings (the kWh of the hour before).
    for hour in range(DAYS * 24):
        at = start + timedelta(hours=hour + 1)
        began = at - timedelta(hours=1)
        opening = began.weekday() < 5 and began.hour in OPEN_HOURS
        for site, (open_kwh, closed_kwh) in SITES.items():
            kwh = (open_kwh if opening else closed_kwh) * rng.uniform(0.9, 1.1)
            yield row("facilities", "meter_reading", at, kwh, site=site)
