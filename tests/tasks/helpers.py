"""What the domain tests share: an organisation for approvals, the outbox, a plan's items."""

import threading
from dataclasses import dataclass

import pytest
from sqlmodel import Session, select

from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    Category,
    Channel,
    Colleague,
    Improvement,
    OutboxEmail,
    Status,
    Transition,
)
from models.db import get_engine
from tasks.approvals import route_improvement
from tasks.planning import complete_action
from tests.factories import link_in, make_approver, make_authority, make_colleague, make_improvement


@dataclass
class Org:
    """A small team: Asha submits; Sam, Dana and Kofi approve energy; Olu is the fallback."""

    asha: Colleague  # adviser, goodwill up to £500
    sam: Colleague  # energy level 1 up to £5,000; deputy Priya
    priya: Colleague  # no authority of her own
    dana: Colleague  # energy level 1 up to £20,000
    kofi: Colleague  # energy level 2 up to £100,000
    olu: Colleague  # operations lead: the fallback approver


def make_org(session: Session, monkeypatch: pytest.MonkeyPatch) -> Org:
    monkeypatch.setattr(settings, "two_level_threshold", 10_000.0)
    monkeypatch.setattr(settings, "approval_expiry_days", 14)
    monkeypatch.setattr(settings, "reminder_after_hours", 48.0)
    monkeypatch.setattr(settings, "escalate_after_hours", 120.0)
    asha = make_colleague(session, "Asha Patel")
    make_authority(session, asha, Category.goodwill, 500)
    priya = make_colleague(session, "Priya Shah")
    sam = make_approver(session, "Sam Lee", Category.energy, 5_000, deputy_id=priya.id)
    dana = make_approver(session, "Dana Okafor", Category.energy, 20_000)
    kofi = make_approver(session, "Kofi Mensah", Category.energy, 100_000, level=2)
    olu = make_colleague(session, "Olu Ade", role="Head of Operations")
    monkeypatch.setattr(settings, "fallback_approver", olu.email)
    return Org(asha=asha, sam=sam, priya=priya, dana=dana, kofi=kofi, olu=olu)


def submit(session: Session, org: Org, cost: float = 1_200, **fields: object) -> Improvement:
    return make_improvement(
        session,
        org.asha,
        title="LED lighting in the contact centre",
        category=fields.pop("category", Category.energy),
        estimated_cost=cost,
        annual_saving=900,
        kwh=4_200,
        kg_co2e=870,
        **fields,
    )


def route(session: Session, org: Org, improvement: Improvement) -> list[ApprovalRequest]:
    requests = route_improvement(
        session=session, improvement_id=improvement.id, actor=org.asha.email, channel=Channel.web
    )
    session.commit()
    return requests


def outbox(session: Session, template: str | None = None) -> list[OutboxEmail]:
    query = select(OutboxEmail).order_by(OutboxEmail.id)
    if template:
        query = query.where(OutboxEmail.template == template)
    return list(session.exec(query).all())


def token_of(session: Session, approval_id: int, kind: str = "request") -> str:
    row = session.exec(
        select(OutboxEmail).where(OutboxEmail.idempotency_key == f"approval:{approval_id}:{kind}")
    ).one()
    return link_in(row).rsplit("/", 1)[-1]


def history(session: Session, improvement_id: int) -> list[Transition]:
    return list(
        session.exec(
            select(Transition)
            .where(Transition.improvement_id == improvement_id)
            .order_by(Transition.id)
        ).all()
    )


def status_of(session: Session, improvement_id: int) -> Status:
    improvement = session.get(Improvement, improvement_id, populate_existing=True)
    assert improvement is not None
    return improvement.status


def at_once(times: int, work) -> list[str]:  # type: ignore[no-untyped-def]
    """Run work(session) in `times` threads with their own sessions, released together."""
    barrier = threading.Barrier(times)
    outcomes: list[str] = []

    def run() -> None:
        with Session(get_engine(), expire_on_commit=False) as own:
            barrier.wait()
            outcomes.append(str(work(own)))
            own.commit()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def items_of(session: Session, improvement_id: int) -> list[ActionItem]:
    return list(
        session.exec(
            select(ActionItem)
            .where(ActionItem.improvement_id == improvement_id)
            .order_by(ActionItem.position)
            .execution_options(populate_existing=True)
        ).all()
    )


def finish_people_steps(session: Session, improvement_id: int, **measured: float) -> None:
    for item in items_of(session, improvement_id):
        if item.automatic_step is None and item.status == ActionStatus.open:
            complete_action(
                session=session,
                action_id=item.id,
                by="owner@example.org",
                channel="web",
                **measured,
            )
    session.commit()
