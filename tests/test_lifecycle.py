"""The lifecycle: every legal arrow records history; every illegal one names both states."""

import pytest
from sqlmodel import Session, select

from improve.errors import IllegalTransition, ImprovementNotFound
from models import Channel, Status, Transition
from tasks.lifecycle import ALLOWED, move
from tests.factories import make_colleague, make_improvement


def test_a_legal_move_writes_the_history_row_in_the_same_transaction(session: Session) -> None:
    submitter = make_colleague(session, "Asha Patel")
    improvement = make_improvement(session, submitter)

    move(
        session=session,
        improvement_id=improvement.id,
        to=Status.awaiting_approval,
        actor="route-improvement",
        channel=Channel.flow,
        reason="asked Team Leader",
    )
    session.commit()

    history = session.exec(
        select(Transition)
        .where(Transition.improvement_id == improvement.id)
        .order_by(Transition.id)
    ).all()
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, Status.submitted),
        (Status.submitted, Status.awaiting_approval),
    ]
    assert history[-1].actor == "route-improvement"
    assert history[-1].channel == Channel.flow
    assert history[-1].reason == "asked Team Leader"
    assert history[-1].at.tzinfo is not None
    session.refresh(improvement)
    assert improvement.status == Status.awaiting_approval


def test_an_illegal_move_names_both_states_and_writes_nothing(session: Session) -> None:
    improvement = make_improvement(session, make_colleague(session), status=Status.submitted)

    with pytest.raises(IllegalTransition, match=r"IMP-\d+ cannot move from submitted to completed"):
        move(
            session=session,
            improvement_id=improvement.id,
            to=Status.completed,
            actor="x",
            channel=Channel.cli,
        )
    session.rollback()
    assert len(session.exec(select(Transition)).all()) == 1


@pytest.mark.parametrize("final", [Status.completed, Status.cancelled])
def test_final_states_have_no_way_out(final: Status) -> None:
    assert ALLOWED[final] == set()


def test_every_state_of_design_is_reachable_from_submitted() -> None:
    seen, frontier = {Status.submitted}, [Status.submitted]
    while frontier:
        for nxt in ALLOWED[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status) - {Status.identified}


def test_an_unknown_improvement_is_named(session: Session) -> None:
    with pytest.raises(ImprovementNotFound, match="IMP-999"):
        move(
            session=session, improvement_id=999, to=Status.approved, actor="x", channel=Channel.cli
        )


def test_two_movers_of_the_same_state_cannot_both_win(session: Session) -> None:
    from models.db import get_engine

    improvement = make_improvement(session, make_colleague(session), status=Status.submitted)
    with Session(get_engine()) as first, Session(get_engine()) as second:
        first.get(type(improvement), improvement.id)
        second.get(type(improvement), improvement.id)
        move(
            session=first,
            improvement_id=improvement.id,
            to=Status.awaiting_approval,
            actor="a",
            channel=Channel.flow,
        )
        first.commit()
        with pytest.raises(IllegalTransition):
            move(
                session=second,
                improvement_id=improvement.id,
                to=Status.awaiting_approval,
                actor="b",
                channel=Channel.flow,
            )
    history = session.exec(
        select(Transition).where(Transition.improvement_id == improvement.id)
    ).all()
    assert len(history) == 2
