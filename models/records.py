"""Service processes and the records of how they deliver: what detection reads.

A record is one fact from a service's own systems — a letter posted, a page printed, a vehicle
trip, a site visit, a meter reading, packaging used, a partner's delivery — with the customer,
partner, site or route it concerns. `key` makes an import idempotent: the same row twice is one
record. Evidence ties a detected improvement to the records and the rule that found it.
"""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.db import MAX_AMOUNT, UtcDateTime, utcnow


class ServiceProcess(SQLModel, table=True):
    __tablename__ = "service_process"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True, description='e.g. "billing", "field visits".')
    description: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class RecordKind(StrEnum):
    letter_posted = "letter_posted"  # quantity: letters; customer; detail: what was sent
    page_printed = "page_printed"  # quantity: pages; site
    vehicle_trip = "vehicle_trip"  # quantity: miles; route; detail: van or car
    site_visit = "site_visit"  # quantity: visits (1); customer; detail: why
    meter_reading = "meter_reading"  # quantity: kWh used in the hour ending at occurred_at; site
    packaging_used = "packaging_used"  # quantity: kg; detail: single-use or returnable
    partner_delivery = "partner_delivery"  # quantity: miles; partner; site


# The unit each kind's quantity is in: one rule for the import, the API and the pages.
RECORD_UNITS = {
    RecordKind.letter_posted: "letters",
    RecordKind.page_printed: "pages",
    RecordKind.vehicle_trip: "miles",
    RecordKind.site_visit: "visits",
    RecordKind.meter_reading: "kWh",
    RecordKind.packaging_used: "kg",
    RecordKind.partner_delivery: "miles",
}


class ServiceRecord(SQLModel, table=True):
    __tablename__ = "service_record"
    # Detection reads one kind over a time range, often per customer or partner.
    __table_args__ = (sa.Index("ix_service_record_kind_time", "kind", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True, description="The row's own id, or its hash.")
    process_id: int = Field(foreign_key="service_process.id", index=True)
    kind: RecordKind = Field(sa_type=sa.String(24))
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    quantity: float = Field(ge=0, le=MAX_AMOUNT)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="partner.id", index=True)
    site: str = Field(default="", max_length=120)
    route: str = Field(default="", max_length=120)
    detail: str = Field(default="", max_length=200)
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class Evidence(SQLModel, table=True):
    """Why detection proposed an improvement: the rule, what it saw, and which records."""

    id: int | None = Field(default=None, primary_key=True)
    improvement_id: int = Field(foreign_key="improvement.id", index=True)
    rule: str = Field(max_length=40)
    summary: str = Field(max_length=2000)
    # The records behind it, as the query string of the records page: "kind=site_visit&customer=7"
    records_query: str = Field(default="", max_length=500)
    record_count: int = 0
