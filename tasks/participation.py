"""Participation (S3, S17): initiatives customers and partners are invited to join, the invitations
with their accept/decline links, the answers, and how many took part.

A customer is invited only while they agree to Purpose.invitations (through
tasks.consent.queue_customer_email, which follows their language, format, window and limit); a
partner is a business contact and always may be. Each person is invited once per initiative, and
each email has the key `invitation:<id>`, so inviting again sends nothing twice.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from improve.errors import Forbidden, ImproveError, InvalidInput, LinkRefused, NotFound
from improve.settings import settings
from models import (
    Access,
    Colleague,
    Customer,
    Improvement,
    Initiative,
    Invitation,
    InvitationStatus,
    Partner,
    Purpose,
)
from models.db import utcnow
from tasks import links
from tasks.consent import consenting_customer_ids, queue_customer_email
from tasks.mail import queue_email
from tasks.submission import find_contacts

MAX_TITLE = 200  # Initiative.title
MAX_DESCRIPTION = 4000  # Initiative.description
MAX_NOTE = 2000  # Invitation.note


def initiative_url(initiative_id: int) -> str:
    return f"{settings.base_url}/initiatives/{initiative_id}"


def get_initiative(*, session: Session, initiative_id: int) -> Initiative:
    initiative = session.get(Initiative, initiative_id)
    if initiative is None:
        raise NotFound("initiative", initiative_id)
    return initiative


def _text(value: str | None, name: str, most: int, errors: dict[str, str]) -> str:
    text = (value or "").strip()
    if "\x00" in text:  # no one types it, and PostgreSQL refuses to store it
        errors[name] = "must not contain a NUL character"
    elif len(text) > most:
        errors[name] = f"keep it under {most:,} characters (it is {len(text):,})"
    return text


def create_initiative(
    *,
    session: Session,
    title: str,
    owner_id: int,
    description: str = "",
    improvement_id: int | None = None,
) -> Initiative:
    """A new initiative owned by `owner_id` (who hears every answer); the caller commits."""
    errors: dict[str, str] = {}
    title = _text(title, "title", MAX_TITLE, errors)
    if not title and "title" not in errors:
        errors["title"] = "say what people are invited to take part in"
    description = _text(description, "description", MAX_DESCRIPTION, errors)
    owner = session.get(Colleague, owner_id)
    if owner is None or not owner.active:
        errors["owner"] = f"no active colleague #{owner_id} to own it"
    if improvement_id is not None and session.get(Improvement, improvement_id) is None:
        errors["improvement_id"] = f"no improvement IMP-{improvement_id}"
    if errors:
        raise InvalidInput(errors)
    initiative = Initiative(
        title=title, description=description, improvement_id=improvement_id, owner_id=owner_id
    )
    session.add(initiative)
    session.flush()
    return initiative


def find_owner(*, session: Session, email: str) -> Colleague:
    """The active colleague with this email, to own an initiative; InvalidInput naming `owner`."""
    wanted = email.strip().lower()
    owner = (
        session.exec(select(Colleague).where(Colleague.email == wanted)).first()
        if "\x00" not in wanted
        else None
    )
    if owner is None or not owner.active:
        raise InvalidInput({"owner_email": f"no active colleague has the email {wanted}"})
    return owner


# --- who may invite ------------------------------------------------------------------------------


def may_invite(colleague: Colleague, initiative: Initiative) -> bool:
    """Operations (and admins), whose work is talking to customers, and the initiative's owner."""
    return (
        Access(colleague.access).includes(Access.operations) or colleague.id == initiative.owner_id
    )


def check_may_invite(colleague: Colleague, initiative: Initiative) -> None:
    if not may_invite(colleague, initiative):
        raise Forbidden(
            f"Only the initiative's owner or operations may invite people to “{initiative.title}”; "
            f"you are signed in as {colleague.name}, whose role is {colleague.access}."
        )


# --- inviting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invited:
    """What one call of `invite` did."""

    invited: int = 0  # new invitations, each with its email queued
    already: int = 0  # invited before: nothing sent again
    not_consented: int = 0  # customers who have not agreed to invitations: not invited

    def as_dict(self) -> dict[str, int]:
        return {
            "invited": self.invited,
            "already_invited": self.already,
            "not_consented": self.not_consented,
        }


def contacts_by_email(
    *, session: Session, customer_emails: Iterable[str] = (), partner_emails: Iterable[str] = ()
) -> tuple[list[int], list[int]]:
    """The customer and partner ids for these emails; InvalidInput names every unknown one under
    `customer_emails` or `partner_emails` (the same rule as an improvement's contacts)."""
    errors: dict[str, str] = {}
    found: list[list[int]] = []
    for table, emails, name in (
        (Customer, customer_emails, "customer_emails"),
        (Partner, partner_emails, "partner_emails"),
    ):
        emails = [e for e in emails if e.strip()]
        if any("\x00" in e for e in emails):
            errors[name] = "an address must not contain a NUL character"
            found.append([])
            continue
        found.append(find_contacts(session, table, emails, name, errors))  # type: ignore[type-var]
    if errors:
        raise InvalidInput(errors)
    return found[0], found[1]


def invite(
    *,
    session: Session,
    initiative_id: int,
    customer_ids: Iterable[int] = (),
    partner_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> Invited:
    """Invite customers (only those who agree to invitations) and partners; the caller commits.

    Each gets one Invitation row with its own single-use link and one email. Someone already
    invited to this initiative is counted, and sent nothing again.
    """
    now = now or utcnow()
    initiative = get_initiative(session=session, initiative_id=initiative_id)
    customer_ids, partner_ids = list(dict.fromkeys(customer_ids)), list(dict.fromkeys(partner_ids))
    customers = _rows(session, Customer, customer_ids, "customer_ids")
    partners = _rows(session, Partner, partner_ids, "partner_ids")
    counts: Counter[str] = Counter()
    agreed = consenting_customer_ids(
        session=session, customer_ids=customer_ids, purpose=Purpose.invitations
    )
    already = _invited(session, initiative_id, Invitation.customer_id, customer_ids)
    for customer in customers:
        if customer.id in already:
            counts["already"] += 1
        elif customer.id not in agreed:
            counts["not_consented"] += 1
        else:
            counts[_invite_one(session, initiative, now, customer=customer)] += 1
    already = _invited(session, initiative_id, Invitation.partner_id, partner_ids)
    for partner in partners:
        if partner.id in already:
            counts["already"] += 1
        else:
            counts[_invite_one(session, initiative, now, partner=partner)] += 1
    return Invited(**counts)


def _rows(session: Session, table: Any, ids: list[int], name: str) -> list[Any]:
    if not ids:
        return []
    rows = session.exec(select(table).where(col(table.id).in_(ids)).order_by(table.id)).all()
    missing = set(ids) - {row.id for row in rows}
    if missing:
        raise InvalidInput({name: f"unknown: {', '.join(map(str, sorted(missing)))}"})
    return list(rows)


def _invited(session: Session, initiative_id: int, column: Any, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return set(
        session.exec(
            select(column).where(Invitation.initiative_id == initiative_id, column.in_(ids))
        ).all()
    )


def _invite_one(
    session: Session,
    initiative: Initiative,
    now: datetime,
    *,
    customer: Customer | None = None,
    partner: Partner | None = None,
) -> str:
    """One invitation and its email: "invited", or "already" if another request just made it."""
    assert initiative.id is not None
    token, token_hash = links.new_token()
    invitation = Invitation(
        initiative_id=initiative.id,
        customer_id=customer.id if customer else None,
        partner_id=partner.id if partner else None,
        token_hash=token_hash,
        expires_at=now + timedelta(days=settings.invitation_link_expiry_days),
        created_at=now,
    )
    try:
        with session.begin_nested():  # a second inviter at the same moment meets the unique key
            session.add(invitation)
            session.flush()
    except IntegrityError:
        return "already"
    _send(session, initiative, invitation, token, key=f"invitation:{invitation.id}",
          customer=customer, partner=partner)  # fmt: skip
    return "invited"


def _send(
    session: Session,
    initiative: Initiative,
    invitation: Invitation,
    token: str,
    *,
    key: str,
    customer: Customer | None,
    partner: Partner | None,
) -> None:
    """The invitation's email with its link: a customer's as they read (and only while they
    agree to invitations: tasks/consent.py), a partner's as a business contact."""
    assert invitation.id is not None and invitation.expires_at is not None
    context = {
        "title": initiative.title,
        "description": initiative.description,
        "expires_on": f"{invitation.expires_at:%Y-%m-%d}",
    }
    url = {"url": links.invitation_url(invitation.id, token)}
    if customer is not None:
        queue_customer_email(
            session=session, key=key, customer=customer, template="invitation",
            context=context, purpose=Purpose.invitations, links=url,
            improvement_id=initiative.improvement_id,
        )  # fmt: skip
    else:
        assert partner is not None
        queue_email(
            session=session, key=key, to=partner.email, template="partner_invitation",
            context={**context, "partner_name": partner.name, "contact_name": partner.contact_name},
            links=url, improvement_id=initiative.improvement_id,
        )  # fmt: skip


class NotExpired(ImproveError):
    status_code = 409


def invite_again(
    *, session: Session, invitation_id: int, now: datetime | None = None
) -> Invitation:
    """Invite again someone whose invitation expired unanswered: a new link (the old one then
    says it was replaced) with a new expiry, and one new email. The caller commits.

    Only an expired, unanswered invitation: an answered one has its answer, an open one its
    link. A customer must still agree to invitations, or InvalidInput says they no longer do.
    The update is conditional, so two people pressing "Invite again" at once send one email.
    """
    now = now or utcnow()
    invitation = session.get(Invitation, invitation_id)
    if invitation is None:
        raise NotFound("invitation", invitation_id)
    name = invitee_name(session, invitation)
    if invitation.status != InvitationStatus.invited:
        raise NotExpired(f"{name} already {invitation.status}: there is nothing to ask again")
    if invitation.expires_at is None or invitation.expires_at > now:
        raise NotExpired(
            f"{name}'s invitation is still open until {invitation.expires_at:%Y-%m-%d}: "
            "their link works"
        )
    customer = session.get(Customer, invitation.customer_id) if invitation.customer_id else None
    partner = session.get(Partner, invitation.partner_id) if invitation.partner_id else None
    if invitation.customer_id is not None and invitation.customer_id not in (
        consenting_customer_ids(
            session=session, customer_ids=[invitation.customer_id], purpose=Purpose.invitations
        )
    ):
        raise InvalidInput({"invitation": f"{name} no longer agrees to invitations"})
    old_hash = invitation.token_hash
    token, token_hash = links.new_token()
    expires_at = now + timedelta(days=settings.invitation_link_expiry_days)
    renewed = session.exec(  # type: ignore[call-overload]
        update(Invitation)
        .where(
            col(Invitation.id) == invitation_id,
            col(Invitation.status) == InvitationStatus.invited,
            col(Invitation.token_hash) == old_hash,
        )
        .values(token_hash=token_hash, expires_at=expires_at)
    )
    if renewed.rowcount != 1:
        raise NotExpired(f"{name} was just invited again")
    links.retire(session=session, token_hash=old_hash, kind="invitation",
                 target_id=invitation_id, at=now)  # fmt: skip
    session.refresh(invitation)
    initiative = get_initiative(session=session, initiative_id=invitation.initiative_id)
    _send(session, initiative, invitation, token,
          key=f"invitation:{invitation_id}:again:{expires_at:%Y%m%dT%H%M%S}",
          customer=customer, partner=partner)  # fmt: skip
    return invitation


# --- answering -----------------------------------------------------------------------------------


def invitee_name(session: Session, invitation: Invitation) -> str:
    """Who was invited, by name: the customer, or the partner organisation."""
    person = (
        session.get(Customer, invitation.customer_id)
        if invitation.customer_id is not None
        else session.get(Partner, invitation.partner_id)
    )
    return person.name if person else "someone no longer on record"


def answer(
    *,
    session: Session,
    invitation_id: int,
    token: str,
    accept: bool,
    note: str = "",
    now: datetime | None = None,
) -> Invitation:
    """Record the invitee's yes or no, with the time and their note, and tell the owner once.

    The link is checked here as well as by the page, and the answer is written only while the
    invitation waits for one: two posts of one link record one answer. The caller commits.
    """
    now = now or utcnow()
    invitation = links.check_invitation_link(
        session=session, invitation_id=invitation_id, token=token, now=now
    )
    errors: dict[str, str] = {}
    text = _text(note, "note", MAX_NOTE, errors)
    if errors:
        raise InvalidInput(errors)
    status = InvitationStatus.accepted if accept else InvitationStatus.declined
    result = session.exec(  # type: ignore[call-overload]
        update(Invitation)
        .where(
            col(Invitation.id) == invitation_id,
            col(Invitation.status) == InvitationStatus.invited,
            col(Invitation.token_hash) == links.hash_token(token),
        )
        .values(status=status, note=text, answered_at=now)
    )
    if result.rowcount != 1:  # another post of this link answered between the check and here
        raise LinkRefused("used", "This link has already been used: it was just answered.", 410)
    session.refresh(invitation)
    _tell_owner(session, invitation)
    return invitation


def _tell_owner(session: Session, invitation: Invitation) -> None:
    initiative = get_initiative(session=session, initiative_id=invitation.initiative_id)
    owner = session.get(Colleague, initiative.owner_id) if initiative.owner_id else None
    if owner is None or not owner.active:
        return
    assert initiative.id is not None
    tally = participation(session=session, initiative_id=initiative.id)
    queue_email(
        session=session,
        key=f"invitation:{invitation.id}:answer",
        to=owner.email,
        template="invitation_answer",
        context={
            "owner_name": owner.name,
            "title": initiative.title,
            "who": invitee_name(session, invitation),
            "kind": "customer" if invitation.customer_id is not None else "partner",
            "accepted": invitation.status == InvitationStatus.accepted,
            "note": invitation.note,
            "counts": tally.total.as_dict(),
            "url": initiative_url(initiative.id),
        },
        improvement_id=initiative.improvement_id,
    )


# --- how many took part --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    invited: int = 0  # every invitation, answered or not
    accepted: int = 0
    declined: int = 0
    waiting: int = 0  # no answer yet (the link may have expired)

    def __add__(self, other: "Tally") -> "Tally":
        mine, theirs = self.as_dict(), other.as_dict()
        return Tally(**{name: mine[name] + theirs[name] for name in mine})

    def as_dict(self) -> dict[str, int]:
        return {
            "invited": self.invited,
            "accepted": self.accepted,
            "declined": self.declined,
            "waiting": self.waiting,
        }


@dataclass(frozen=True)
class Participation:
    customers: Tally = field(default_factory=Tally)
    partners: Tally = field(default_factory=Tally)

    @property
    def total(self) -> Tally:
        return self.customers + self.partners


def _tallies(session: Session, initiative_id: int | None = None) -> dict[int, Participation]:
    """Every initiative's counts, customers and partners apart, in one grouped query."""
    is_customer = case((col(Invitation.customer_id).is_not(None), True), else_=False)
    query = select(Invitation.initiative_id, is_customer, Invitation.status, func.count()).group_by(
        col(Invitation.initiative_id), is_customer, col(Invitation.status)
    )
    if initiative_id is not None:
        query = query.where(Invitation.initiative_id == initiative_id)
    counts: dict[int, dict[bool, Counter[str]]] = {}
    for initiative, customer, status, n in session.exec(query).all():
        counts.setdefault(initiative, {True: Counter(), False: Counter()})[bool(customer)][
            str(status)
        ] += n
    return {
        initiative: Participation(customers=_tally(by[True]), partners=_tally(by[False]))
        for initiative, by in counts.items()
    }


def _tally(by_status: Counter[str]) -> Tally:
    return Tally(
        invited=sum(by_status.values()),
        accepted=by_status[InvitationStatus.accepted],
        declined=by_status[InvitationStatus.declined],
        waiting=by_status[InvitationStatus.invited],
    )


def participation(*, session: Session, initiative_id: int | None = None) -> Participation:
    """Invited, accepted, declined and waiting, customers and partners apart: for one initiative,
    or (None) for all of them together."""
    found = _tallies(session, initiative_id)
    if initiative_id is not None:
        return found.get(initiative_id, Participation())
    return Participation(
        customers=sum((p.customers for p in found.values()), Tally()),
        partners=sum((p.partners for p in found.values()), Tally()),
    )


def participation_summary(*, session: Session) -> list[dict[str, Any]]:
    """Every initiative, oldest first, as the impact report shows it. A stable shape:

    {"id": int, "title": str, "invited": int, "accepted": int, "declined": int, "waiting": int,
     "customers": {"invited", "accepted", "declined", "waiting"}, "partners": {the same}}
    """
    found = _tallies(session)
    rows = []
    for initiative in session.exec(select(Initiative).order_by(col(Initiative.id))).all():
        assert initiative.id is not None
        took_part = found.get(initiative.id, Participation())
        rows.append(
            {
                "id": initiative.id,
                "title": initiative.title,
                **took_part.total.as_dict(),
                "customers": took_part.customers.as_dict(),
                "partners": took_part.partners.as_dict(),
            }
        )
    return rows


# --- what the pages show -------------------------------------------------------------------------


@dataclass(frozen=True)
class InvitationRow:
    invitation: Invitation
    kind: str  # "customer" or "partner"
    name: str
    email: str


def invitation_rows(*, session: Session, initiative_id: int) -> list[InvitationRow]:
    """Who was invited to an initiative, oldest invitation first, with their answers."""
    invitations = session.exec(
        select(Invitation)
        .where(Invitation.initiative_id == initiative_id)
        .order_by(col(Invitation.id))
    ).all()
    customer_ids = {i.customer_id for i in invitations if i.customer_id is not None}
    partner_ids = {i.partner_id for i in invitations if i.partner_id is not None}
    customers = {
        c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(customer_ids)))
    }
    partners = {
        p.id: p for p in session.exec(select(Partner).where(col(Partner.id).in_(partner_ids)))
    }
    rows = []
    for invitation in invitations:
        person: Customer | Partner | None = (
            customers.get(invitation.customer_id)
            if invitation.customer_id is not None
            else partners.get(invitation.partner_id)
        )
        rows.append(
            InvitationRow(
                invitation,
                "customer" if invitation.customer_id is not None else "partner",
                person.name if person else "?",
                person.email if person else "",
            )
        )
    return rows
