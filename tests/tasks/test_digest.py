"""The colleague digest: the week's completed improvements with who achieved them and what they
measured, and what waits for whom, oldest first; one email per active colleague per week."""

from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, select

from models import (
    ActionItem,
    ActionStatus,
    Category,
    OutboxEmail,
    Status,
)
from tasks.digest import colleague_digest, queue_digests
from tasks.mail import build_message
from tests.factories import make_approval, make_colleague, make_improvement
from tests.tasks.awareness_helpers import completed

SUNDAY = date(2026, 6, 14)  # the last day of ISO week 2026-W24 (8 to 14 June)


def _step(
    session: Session, improvement_id: int, position: int, owner_id: int, **fields: object
) -> None:
    session.add(
        ActionItem(
            improvement_id=improvement_id,
            position=position,
            title=fields.pop("title", f"Step {position}"),
            owner_id=owner_id,
            due_on=fields.pop("due_on", date(2026, 6, 30)),
            **fields,
        )  # fmt: skip
    )
    session.commit()


def _week(session: Session) -> dict[str, object]:
    asha = make_colleague(session, "Asha Patel")
    ben = make_colleague(session, "Ben Okafor")
    sam = make_colleague(session, "Sam Lee")
    make_colleague(session, "Ola Retired", active=False)
    crates = completed(
        session, asha, "Reusable crates", Category.waste, datetime(2026, 6, 10, 9, tzinfo=UTC),
        measured_kg_co2e=300, measured_saving=120, measured_kg_waste=40,
    )  # fmt: skip
    _step(session, crates.id, 1, ben.id, status=ActionStatus.done)
    _step(session, crates.id, 2, asha.id, status=ActionStatus.done)
    completed(
        session, sam, "Last week's lights", Category.energy, datetime(2026, 6, 2, tzinfo=UTC),
        measured_kg_co2e=999,
    )  # fmt: skip
    waiting = make_improvement(
        session, asha, title="Solar on the depot", category=Category.energy,
        status=Status.awaiting_approval,
    )  # fmt: skip
    make_approval(
        session, waiting, sam, status="pending", created_at=datetime(2026, 6, 1, tzinfo=UTC)
    )
    going = make_improvement(
        session, sam, title="Cargo bikes", category=Category.carbon, status=Status.in_progress
    )
    _step(
        session, going.id, 1, ben.id, title="Book the bike supplier",
        created_at=datetime(2026, 5, 20, tzinfo=UTC), due_on=date(2026, 6, 5),
    )  # fmt: skip
    _step(session, going.id, 2, ben.id, automatic_step="notify_partners")  # waits for nobody
    return {"asha": asha, "ben": ben, "sam": sam, "crates": crates}


def test_the_digest_says_what_was_achieved_by_whom_and_what_waits_for_whom(
    session: Session,
) -> None:
    people = _week(session)

    digest = colleague_digest(session=session, week_ending=SUNDAY)

    assert digest.period == "2026-W24"
    assert [a["title"] for a in digest.achieved] == ["Reusable crates"]
    assert digest.achieved[0]["by"] == ["Asha Patel", "Ben Okafor"]  # the submitter once
    assert "300 kg CO2e of emissions avoided (measured)" in digest.achieved[0]["results"]
    assert digest.totals["improvements"] == 1
    assert (digest.totals["kg_co2e"], digest.totals["saving"]) == (300, 120)
    # Ben's step has waited since 20 May, Sam's approval since 1 June.
    assert [(p["name"], len(p["approvals"]), len(p["actions"])) for p in digest.waiting] == [
        ("Ben Okafor", 0, 1),
        ("Sam Lee", 1, 0),
    ]
    assert digest.waiting[0]["actions"][0]["step"] == "Book the bike supplier"
    assert digest.waiting[1]["approvals"][0]["title"] == "Solar on the depot"
    assert people["ben"].id == digest.waiting[0]["colleague_id"]


def test_each_active_colleague_gets_the_digest_once_a_week_with_their_own_waiting_first(
    session: Session,
) -> None:
    people = _week(session)

    assert queue_digests(session=session, week_ending=SUNDAY) == {"colleagues": 3, "queued": 3}
    session.commit()
    assert queue_digests(session=session, week_ending=SUNDAY - timedelta(days=2)) == {
        "colleagues": 3,
        "queued": 0,
    }  # fmt: skip (any day of the week is the same week)

    rows = {r.recipient: r for r in session.exec(select(OutboxEmail)).all()}
    ben = people["ben"]
    assert rows[ben.email].idempotency_key == f"digest:2026-W24:colleague:{ben.id}"
    message = build_message(rows[ben.email])
    assert (
        message["Subject"]
        == "Improve this week (2026-W24): 1 improvement completed, 1 waiting for you"
    )
    assert message["List-Unsubscribe"] is None  # work email between colleagues
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "from 8 June 2026 to 14 June 2026" in text
    assert "Waiting for you:\n  - Book the bike supplier, for IMP-" in text
    assert "Reusable crates (Waste)\n  by Asha Patel, Ben Okafor" in text
    assert "300 kg CO2e" in text and "£120 saved" in text
    assert "Sam Lee:\n  - decide IMP-" in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Waiting for you" in html and "Reusable crates" in html
    asha_text = build_message(rows[people["asha"].email]).get_body(preferencelist=("plain",))
    assert "Waiting for you" not in asha_text.get_content()


def test_a_week_with_nothing_done_and_nothing_waiting_sends_nothing(session: Session) -> None:
    make_colleague(session, "Asha Patel")

    assert queue_digests(session=session, week_ending=SUNDAY) == {"colleagues": 0, "queued": 0}
    assert session.exec(select(OutboxEmail)).all() == []
