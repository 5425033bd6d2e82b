"""Action plans: a playbook becomes owned, dated items and action emails; the plan completes."""

from datetime import date, timedelta
from urllib.parse import urlparse

import pytest
from sqlmodel import Session, select

from improve.errors import IllegalTransition, InvalidInput, LinkRefused
from models import ActionStatus, Category, Improvement, Status, Transition
from tasks.automatic import AUTOMATIC_STEPS
from tasks.links import check_action_link
from tasks.planning import (
    PLAYBOOKS,
    complete_action,
    complete_improvement,
    improvements_ready_to_complete,
    plan_actions,
)
from tests.factories import (
    link_in,
    make_approved_improvement,
    make_approver,
    make_colleague,
    make_improvement,
    make_partner,
)
from tests.tasks.helpers import finish_people_steps, items_of, outbox

TODAY = date(2026, 7, 1)


def token_from(url: str) -> tuple[int, str]:
    """The action id and token of a link as an email carries it: /actions/<id>/<token>."""
    _, kind, action_id, token = urlparse(url).path.split("/")
    assert kind == "actions"
    return int(action_id), token


def test_every_category_has_a_believable_playbook() -> None:
    assert set(PLAYBOOKS) == set(Category)
    for category, steps in PLAYBOOKS.items():
        assert 2 <= len(steps) <= 4, category
        for step in steps:
            assert step.due_in_days >= 0 and step.title and step.owner
            assert step.automatic_step is None or step.automatic_step in AUTOMATIC_STEPS
    assert any(
        s.automatic_step == "send_customer_update" for s in PLAYBOOKS[Category.customer_update]
    )
    assert [s.automatic_step for s in PLAYBOOKS[Category.resource]] == [
        None,
        "switch_to_estatements",
        "notify_customers",
        None,
    ]


def test_an_approved_improvement_gets_a_plan_owners_due_dates_and_working_action_emails(
    session: Session,
) -> None:
    submitter = make_colleague(session, "Asha Patel")
    first = make_approver(session, "Sam Lee", category=Category.process, role="Service Manager")
    second = make_approver(
        session, "Dana Okafor", category=Category.process, level=2, role="Head of Operations"
    )
    team_leader = make_colleague(session, "Grace Mensah", role="Team Leader")
    improvement = make_approved_improvement(
        session,
        submitter,
        [first, second],
        title="One form for address changes",
        category=Category.process,
    )

    items = plan_actions(
        session=session, improvement_id=improvement.id, actor="advance-improvement", today=TODAY
    )
    session.commit()

    session.refresh(improvement)
    assert improvement.status == Status.in_progress
    last = session.exec(select(Transition).order_by(Transition.id.desc())).first()
    assert (last.from_status, last.to_status, last.actor) == (
        Status.approved,
        Status.in_progress,
        "advance-improvement",
    )
    assert "4 steps" in last.reason and "process playbook" in last.reason
    # Owner "approver" is whoever approved at the highest level; a role is looked up by name.
    assert [(i.position, i.title, i.owner_id, i.due_on) for i in items] == [
        (1, "Write the new procedure", submitter.id, TODAY + timedelta(days=14)),
        (2, "Approve and publish the procedure", second.id, TODAY + timedelta(days=21)),
        (3, "Brief the team on the change", team_leader.id, TODAY + timedelta(days=28)),
        (4, "Measure the effect after a month", submitter.id, TODAY + timedelta(days=60)),
    ]
    assert all(i.status == ActionStatus.open and i.token_expires_at for i in items)

    emails = outbox(session, "action_assigned")
    assert [e.idempotency_key for e in emails] == [f"action:{i.id}:assigned" for i in items]
    assert [e.recipient for e in emails] == [
        submitter.email,
        second.email,
        team_leader.email,
        submitter.email,
    ]
    ctx = emails[1].context
    assert ctx["owner_name"] == "Dana Okafor"
    assert ctx["action_title"] == "Approve and publish the procedure"
    assert ctx["reference"] == improvement.reference
    assert ctx["improvement_title"] == ctx["title"] == "One form for address changes"
    assert ctx["due_on"] == "2026-07-22"
    for email, item in zip(emails, items, strict=True):
        action_id, token = token_from(link_in(email))
        assert action_id == item.id
        assert check_action_link(session=session, action_id=action_id, token=token).id == item.id


def test_planning_twice_returns_the_same_plan_and_sends_nothing_more(session: Session) -> None:
    submitter = make_colleague(session)
    improvement = make_approved_improvement(session, submitter, category=Category.energy)
    first = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()
    sent, history = len(outbox(session)), len(session.exec(select(Transition)).all())

    again = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()

    assert [i.id for i in again] == [i.id for i in first]
    assert len(outbox(session)) == sent == 3
    assert len(session.exec(select(Transition)).all()) == history
    assert len(items_of(session, improvement.id)) == 3


def test_only_an_approved_improvement_can_be_planned(session: Session) -> None:
    improvement = make_improvement(session, make_colleague(session), status=Status.submitted)
    with pytest.raises(IllegalTransition, match="submitted to in_progress"):
        plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.rollback()
    assert items_of(session, improvement.id) == [] and outbox(session) == []


def test_automatic_items_get_no_link_and_no_email(session: Session) -> None:
    submitter = make_colleague(session)
    improvement = make_approved_improvement(session, submitter, category=Category.resource)
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()

    automatic = [i for i in items if i.automatic_step]
    assert [i.automatic_step for i in automatic] == ["switch_to_estatements", "notify_customers"]
    assert all(i.token_hash is None and i.token_expires_at is None for i in automatic)
    assert {e.idempotency_key for e in outbox(session)} == {
        f"action:{i.id}:assigned" for i in items if not i.automatic_step
    }


def test_a_missing_role_falls_back_to_the_submitter_and_an_absent_one_to_a_deputy(
    session: Session,
) -> None:
    submitter = make_colleague(session)
    improvement = make_approved_improvement(session, submitter, category=Category.energy)
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow", today=TODAY)
    assert items[0].owner_id == submitter.id  # nobody is a Facilities Coordinator yet
    session.rollback()

    deputy = make_colleague(session, "Nora Byrne", role="Facilities Lead")
    tom = make_colleague(
        session,
        "Tom Barker",
        role="Facilities Coordinator",
        deputy_id=deputy.id,
        absent_from=TODAY - timedelta(days=1),
        absent_to=TODAY + timedelta(days=10),
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow", today=TODAY)
    session.commit()
    # Away until the survey is due: his deputy books it. Back long before the change is due: his.
    assert (items[0].title, items[0].owner_id) == ("Book the site survey", deputy.id)
    assert (items[1].title, items[1].owner_id) == ("Make the change the survey recommends", tom.id)


def test_an_improvement_that_touches_partners_tells_them(session: Session) -> None:
    improvement = make_approved_improvement(
        session,
        make_colleague(session),
        category=Category.energy,
        partners=[make_partner(session, "Northgrid Energy")],
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    assert [i.automatic_step for i in items] == [None, None, "notify_partners", None]


def test_completing_an_action_records_the_result_and_a_second_completion_is_refused(
    session: Session,
) -> None:
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.energy
    )
    item = plan_actions(session=session, improvement_id=improvement.id, actor="flow")[2]
    token = token_from(link_in(outbox(session)[2]))[1]
    session.commit()

    done = complete_action(
        session=session,
        action_id=item.id,
        by="asha@example.org",
        measured_kwh=1200.5,
        measured_saving=310,
        note="Meter read 1 Aug",
        channel="web",
    )
    session.commit()
    assert (done.status, done.completed_by, done.measured_kwh, done.measured_saving) == (
        ActionStatus.done,
        "asha@example.org",
        1200.5,
        310,
    )
    assert done.result_note == "Meter read 1 Aug" and done.completed_at is not None
    assert done.measured_kg_co2e is None

    with pytest.raises(LinkRefused, match="already done by asha@example.org") as refused:
        complete_action(
            session=session,
            action_id=item.id,
            by="someone@example.org",
            measured_kwh=1,
            channel="web",
        )
    assert (refused.value.kind, refused.value.status_code) == ("used", 410)
    session.rollback()
    with pytest.raises(LinkRefused) as used:
        check_action_link(session=session, action_id=item.id, token=token)
    assert used.value.kind == "used"
    assert items_of(session, improvement.id)[2].measured_kwh == 1200.5


def test_a_negative_measurement_is_refused_by_name_and_changes_nothing(session: Session) -> None:
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.energy
    )
    item = plan_actions(session=session, improvement_id=improvement.id, actor="flow")[0]
    session.commit()

    with pytest.raises(InvalidInput) as bad:
        complete_action(
            session=session,
            action_id=item.id,
            by="a@example.org",
            measured_kwh=-5,
            measured_kg_waste=float("nan"),
            channel="web",
        )
    assert set(bad.value.errors) == {"measured_kwh", "measured_kg_waste"}
    assert "-5" in bad.value.errors["measured_kwh"]
    session.rollback()
    assert items_of(session, improvement.id)[0].status == ActionStatus.open


def test_completing_the_improvement_sums_what_was_measured(session: Session) -> None:
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.energy, kwh=5000
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()
    assert (
        complete_improvement(
            session=session, improvement_id=improvement.id, actor="advance-improvement"
        )
        is False
    )
    assert improvements_ready_to_complete(session=session) == []

    complete_action(session=session, action_id=items[0].id, by="a", channel="web")
    complete_action(
        session=session,
        action_id=items[1].id,
        by="b",
        measured_kwh=1000,
        measured_saving=150.5,
        channel="web",
    )
    complete_action(
        session=session, action_id=items[2].id, by="c", measured_kwh=250, channel="email"
    )
    session.commit()
    assert improvements_ready_to_complete(session=session) == [improvement.id]

    assert (
        complete_improvement(
            session=session, improvement_id=improvement.id, actor="advance-improvement"
        )
        is True
    )
    session.commit()
    done = session.get(Improvement, improvement.id, populate_existing=True)
    assert done.status == Status.completed
    assert (done.measured_kwh, done.measured_saving) == (1250, 150.5)
    assert done.measured_kg_co2e is None and done.measured_kg_waste is None  # nobody measured it
    last = session.exec(select(Transition).order_by(Transition.id.desc())).first()
    assert last.to_status == Status.completed
    assert last.reason == "Plan finished: all 3 steps done; measured £150 saved, 1,250 kWh."

    assert complete_improvement(session=session, improvement_id=improvement.id, actor="x") is False
    assert improvements_ready_to_complete(session=session) == []


def test_a_cancelled_item_does_not_hold_the_plan_up(session: Session) -> None:
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.goodwill
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    items[1].status = ActionStatus.cancelled
    session.add(items[1])
    session.commit()
    finish_people_steps(session, improvement.id)

    assert complete_improvement(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()
    last = session.exec(select(Transition).order_by(Transition.id.desc())).first()
    assert last.reason == (
        "Plan finished: 2 of 3 steps done, 1 cancelled; no measured result recorded."
    )
