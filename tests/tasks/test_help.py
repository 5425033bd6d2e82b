"""Help from others (C9): asking a colleague on a case or an action item, and their answer."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused, NotFound
from models import (
    ActionStatus,
    CaseNote,
    CaseStatus,
    HelpRequest,
    HelpStatus,
    OutboxEmail,
    Status,
    Transition,
)
from models.db import utcnow
from tasks.help import answer_help, ask_for_help, help_panel
from tasks.mail import build_message
from tests.factories import (
    link_in,
    make_case,
    make_colleague,
    make_improvement,
)
from tests.web.helpers import action_link


@pytest.fixture
def people(session: Session):
    asha = make_colleague(session, "Asha Patel", role="Adviser", team="Care")
    bea = make_colleague(session, "Bea Jones", role="Waste specialist", team="Operations")
    return asha, bea


def _emails(session: Session, template: str) -> list[OutboxEmail]:
    return list(session.exec(select(OutboxEmail).where(OutboxEmail.template == template)).all())


def _token(session: Session, help_request: HelpRequest) -> str:
    [row] = [
        e
        for e in _emails(session, "help_request")
        if e.idempotency_key == f"help:{help_request.id}:request"
    ]
    return link_in(row).rsplit("/", 1)[-1]


def test_asking_on_a_case_records_it_and_queues_an_email_with_a_link(
    session: Session, people
) -> None:
    asha, bea = people
    case = make_case(session, asha)

    asked = ask_for_help(
        session=session,
        asked_by_id=asha.id,
        helper_email=f"  {bea.email.upper()} ",
        message="  Can you find out when the depot can deliver?  ",
        case_id=case.id,
    )
    session.commit()

    assert (asked.case_id, asked.action_id, asked.helper_id) == (case.id, None, bea.id)
    assert asked.status == HelpStatus.asked
    assert asked.message == "Can you find out when the depot can deliver?"
    assert asked.expires_at is not None and asked.expires_at > utcnow() + timedelta(days=6)
    [email] = _emails(session, "help_request")
    assert email.recipient == bea.email
    url = link_in(email)
    assert url.startswith(f"http://127.0.0.1:8000/help/{asked.id}/")
    assert url.rsplit("/", 1)[-1] not in str(asked.token_hash)  # only the hash is kept
    message = build_message(email)
    assert "List-Unsubscribe" not in message  # colleagues need it to do their job
    assert f"Asha Patel asks for your help: {case.reference}" in str(message["Subject"])
    [note] = session.exec(select(CaseNote)).all()
    assert (note.what, note.actor) == ("help asked", asha.email)
    assert "Asha Patel asked Bea Jones for help" in note.note


def test_asking_on_an_action_item_notes_it_in_the_improvements_history(
    session: Session, people
) -> None:
    asha, bea = people
    improvement = make_improvement(session, asha, status=Status.in_progress)
    item, _ = action_link(session, improvement, asha)

    asked = ask_for_help(
        session=session,
        asked_by_id=asha.id,
        helper_email=bea.email,
        message="Which supplier takes toner back?",
        action_id=item.id,
    )
    session.commit()

    [email] = _emails(session, "help_request")
    assert email.improvement_id == improvement.id  # listed with the improvement's emails
    assert f"{improvement.reference} action 1" in str(build_message(email)["Subject"])
    last = session.exec(select(Transition).order_by(Transition.id.desc())).first()  # type: ignore[union-attr]
    assert last is not None and last.to_status == Status.in_progress
    assert f"{improvement.reference} action 1: Asha Patel asked Bea Jones" in last.reason
    assert asked.action_id == item.id


def test_asking_again_while_unanswered_is_the_same_request_and_one_email(
    session: Session, people
) -> None:
    asha, bea = people
    case = make_case(session, asha)
    ask = dict(session=session, asked_by_id=asha.id, helper_email=bea.email, case_id=case.id)

    first = ask_for_help(message="Please help", **ask)  # type: ignore[arg-type]
    again = ask_for_help(message="Please help, again", **ask)  # type: ignore[arg-type]
    session.commit()

    assert again.id == first.id
    assert len(_emails(session, "help_request")) == 1
    # Once answered, a new request may be made.
    answer_help(session=session, help_id=first.id, token=_token(session, first), accept=False)
    third = ask_for_help(message="One more time", **ask)  # type: ignore[arg-type]
    assert third.id != first.id


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"helper_email": "nobody@example.org"}, "helper_email", "no active colleague has"),
        ({"helper_email": ""}, "helper_email", "choose the colleague"),
        ({"helper_email": "SELF"}, "helper_email", "cannot ask yourself"),
        ({"message": "   "}, "message", "say what you would like help with"),
        ({"message": "x" * 2001}, "message", "under 2,000 characters"),
        ({"case_id": None}, "subject", "exactly one"),
        ({"action_id": 1}, "subject", "exactly one"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong_and_nothing_is_kept(
    session: Session, people, change: dict, field: str, words: str
) -> None:
    asha, bea = people
    case = make_case(session, asha)
    ask = {"helper_email": bea.email, "message": "Please help", "case_id": case.id}
    ask.update(change)
    if ask["helper_email"] == "SELF":
        ask["helper_email"] = asha.email

    with pytest.raises(InvalidInput) as refused:
        ask_for_help(session=session, asked_by_id=asha.id, **ask)  # type: ignore[arg-type]

    assert words in refused.value.errors[field]
    session.rollback()
    assert session.exec(select(HelpRequest)).all() == []
    assert session.exec(select(OutboxEmail)).all() == []


def test_an_inactive_colleague_or_an_unknown_case_is_refused(session: Session, people) -> None:
    asha, bea = people
    gone = make_colleague(session, "Gus Gone", active=False)
    case = make_case(session, asha)

    with pytest.raises(InvalidInput, match="no active colleague has the email"):
        ask_for_help(
            session=session, asked_by_id=asha.id, helper_email=gone.email, message="hi",
            case_id=case.id,
        )  # fmt: skip
    with pytest.raises(NotFound, match="case CASE-999999 not found"):
        ask_for_help(
            session=session, asked_by_id=asha.id, helper_email=bea.email, message="hi",
            case_id=999_999,
        )  # fmt: skip
    with pytest.raises(NotFound, match="action item 999999 not found"):
        ask_for_help(
            session=session, asked_by_id=asha.id, helper_email=bea.email, message="hi",
            action_id=999_999,
        )  # fmt: skip


@pytest.mark.parametrize("accept", [True, False])
def test_the_answer_is_recorded_and_the_asker_is_emailed(
    session: Session, people, accept: bool
) -> None:
    asha, bea = people
    case = make_case(session, asha)
    asked = ask_for_help(
        session=session, asked_by_id=asha.id, helper_email=bea.email, message="Depot dates?",
        case_id=case.id,
    )  # fmt: skip
    session.commit()

    answered = answer_help(
        session=session,
        help_id=asked.id,
        token=_token(session, asked),
        accept=accept,
        answer="  I can call them on Monday.  ",
    )
    session.commit()

    status = HelpStatus.accepted if accept else HelpStatus.declined
    assert (answered.status, answered.answer) == (status, "I can call them on Monday.")
    assert answered.answered_at is not None
    [email] = _emails(session, "help_answer")
    assert email.recipient == asha.email
    subject = str(build_message(email)["Subject"])
    assert subject.startswith("Bea Jones will help" if accept else "Bea Jones cannot help")
    notes = [n.what for n in session.exec(select(CaseNote).order_by(CaseNote.id)).all()]
    assert notes == ["help asked", f"help {status}"]


def test_a_used_expired_or_foreign_token_cannot_answer(session: Session, people) -> None:
    asha, bea = people
    case = make_case(session, asha)
    ask = dict(session=session, asked_by_id=asha.id, message="Help?", case_id=case.id)
    first = ask_for_help(helper_email=bea.email, **ask)  # type: ignore[arg-type]
    other = ask_for_help(helper_email=make_colleague(session).email, **ask)  # type: ignore[arg-type]
    session.commit()
    token = _token(session, first)

    with pytest.raises(LinkRefused) as foreign:
        answer_help(session=session, help_id=first.id, token=_token(session, other), accept=True)
    assert foreign.value.kind == "foreign"
    with pytest.raises(LinkRefused) as expired:
        answer_help(
            session=session, help_id=first.id, token=token, accept=True,
            now=utcnow() + timedelta(days=8),
        )  # fmt: skip
    assert expired.value.kind == "expired" and "expired on" in str(expired.value)
    answer_help(session=session, help_id=first.id, token=token, accept=True)
    session.commit()
    with pytest.raises(LinkRefused) as used:
        answer_help(session=session, help_id=first.id, token=token, accept=False)
    assert used.value.kind == "used" and "was accepted on" in str(used.value)
    assert len(_emails(session, "help_answer")) == 1


def test_the_panel_lists_help_newest_first_and_offers_everyone_else(
    session: Session, people
) -> None:
    asha, bea = people
    case = make_case(session, asha)
    ask_for_help(
        session=session, asked_by_id=asha.id, helper_email=bea.email, message="Help?",
        case_id=case.id,
    )  # fmt: skip
    session.commit()

    panel = help_panel(session=session, signed_in_id=asha.id, case_id=case.id)

    assert [(v.asked_by.name, v.helper.name) for v in panel.requests] == [  # type: ignore[union-attr]
        ("Asha Patel", "Bea Jones")
    ]
    assert (panel.action, panel.anchor) == (f"/cases/{case.id}/help", f"help-case-{case.id}")
    assert [c.name for c in panel.colleagues] == ["Bea Jones"]


def test_no_help_is_asked_on_a_closed_case_or_a_finished_action_item(
    session: Session, people
) -> None:
    asha, bea = people
    case = make_case(session, asha, status=CaseStatus.closed)
    improvement = make_improvement(session, asha, status=Status.in_progress)
    item, _ = action_link(session, improvement, asha)
    item.status = ActionStatus.done
    session.add(item)
    session.commit()

    with pytest.raises(InvalidInput, match=f"case {case.reference} is closed"):
        ask_for_help(
            session=session, asked_by_id=asha.id, helper_email=bea.email, message="Help?",
            case_id=case.id,
        )  # fmt: skip
    with pytest.raises(InvalidInput, match="action 1 is no longer open"):
        ask_for_help(
            session=session, asked_by_id=asha.id, helper_email=bea.email, message="Help?",
            action_id=item.id,
        )  # fmt: skip
