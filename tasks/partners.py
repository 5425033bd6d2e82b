"""Service partners and processes, each with its footprint and the improvements linked to it."""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from improve.errors import NotFound
from models import Partner, ServiceProcess
from tasks.footprint import (
    Footprint,
    Linked,
    footprint,
    improvement_counts,
    linked_improvements,
    partner_totals,
)


@dataclass(frozen=True)
class PartnerRow:
    partner: Partner
    kg_co2e: float
    open: int  # linked improvements neither completed nor turned down
    completed: int


@dataclass(frozen=True)
class Profile:
    """What the partner's or the process's records came to, and what is being done about it."""

    footprint: Footprint
    improvements: list[Linked]


def partner_rows(*, session: Session, since: datetime, until: datetime) -> list[PartnerRow]:
    """Every partner by name, with its kg CO2e over the range and its improvements counted."""
    totals = partner_totals(session=session, since=since, until=until)
    counts = improvement_counts(session=session)
    rows = []
    for partner in session.exec(select(Partner).order_by(col(Partner.name))).all():
        assert partner.id is not None
        count = counts.get(partner.id, {"open": 0, "completed": 0})
        rows.append(
            PartnerRow(partner, totals.get(partner.id, 0.0), count["open"], count["completed"])
        )
    return rows


def partner_profile(
    *, session: Session, partner_id: int, since: datetime, until: datetime
) -> tuple[Partner, Profile]:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("partner", partner_id)
    found = footprint(session=session, partner_id=partner_id, since=since, until=until)
    return partner, Profile(found, linked_improvements(session=session, partner_id=partner_id))


def process_profile(
    *, session: Session, process_id: int, since: datetime, until: datetime
) -> tuple[ServiceProcess, Profile]:
    process = session.get(ServiceProcess, process_id)
    if process is None:
        raise NotFound("service process", process_id)
    found = footprint(session=session, process_id=process_id, since=since, until=until)
    return process, Profile(found, linked_improvements(session=session, process_id=process_id))
