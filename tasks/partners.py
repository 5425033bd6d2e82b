"""Service partners and processes, each with its footprint and the improvements linked to it;
adding partners and recording whether they hear of policy changes."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import Forbidden, InvalidInput, NotFound
from models import Access, Colleague, Partner, ServiceProcess
from tasks.footprint import (
    Footprint,
    Linked,
    footprint,
    improvement_counts,
    linked_improvements,
    partner_totals,
)
from tasks.mail import recipient_address
from tasks.policies import skip_partner_notices


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


# --- who the partners are --------------------------------------------------------------------


def _text(value: str | None, name: str, most: int, errors: dict[str, str]) -> str:
    text = " ".join((value or "").split())
    if "\x00" in text:  # no one types it, and PostgreSQL refuses to store it
        errors[name] = "must not contain a NUL character"
    elif len(text) > most:
        errors[name] = f"keep it under {most} characters (it is {len(text)})"
    return text


def _address(email: str, errors: dict[str, str]) -> str:
    try:
        return recipient_address(email.replace("\x00", "\n")).lower()
    except ValueError:
        errors["email"] = f"{email!r} is not one email address"
        return ""


def partner_by_email(*, session: Session, email: str) -> Partner:
    errors: dict[str, str] = {}
    address = _address(email, errors)
    if errors:
        raise InvalidInput(errors)
    partner = session.exec(select(Partner).where(func.lower(Partner.email) == address)).first()
    if partner is None:
        raise NotFound("partner", email)
    return partner


def add_partner(
    *,
    session: Session,
    name: str,
    email: str,
    contact_name: str = "",
    service: str = "",
    hears_policies: bool = False,
) -> Partner:
    """A new service partner; `hears_policies` only as they agreed. The caller commits."""
    errors: dict[str, str] = {}
    name = _text(name, "name", 120, errors)
    if not name and "name" not in errors:
        errors["name"] = "say who the partner is"
    address = _address(email, errors)
    contact_name = _text(contact_name, "contact_name", 120, errors)
    service = _text(service, "service", 200, errors)
    if errors:
        raise InvalidInput(errors)
    if session.exec(select(Partner.id).where(func.lower(Partner.email) == address)).first():
        raise InvalidInput({"email": f"a partner with the email {address} is already there"})
    partner = Partner(
        name=name,
        email=address,
        contact_name=contact_name,
        service=service,
        hears_policies=hears_policies,
    )
    session.add(partner)
    session.flush()
    return partner


def may_change_partners(colleague: Colleague) -> bool:
    """Who records what partners agreed to: operations (and admins)."""
    return Access(colleague.access).includes(Access.operations)


def check_may_change_partners(colleague: Colleague) -> None:
    if not may_change_partners(colleague):
        raise Forbidden(
            f"Only operations may change what a partner agreed to; you are signed in as "
            f"{colleague.name}, whose role is {colleague.access}."
        )


def set_hears_policies(*, session: Session, partner_id: int, hears: bool) -> Partner:
    """Record that a partner agreed to hear of policy changes, or no longer does; a no also
    skips the notices still waiting for them (tasks/policies.py). The caller commits."""
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("partner", partner_id)
    partner.hears_policies = hears
    session.add(partner)
    if not hears:
        skip_partner_notices(session=session, partner=partner)
    session.flush()
    return partner
