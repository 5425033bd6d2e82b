"""The action link: GET and HEAD show the item; POST marks it done with the measured result."""

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlparse

import httpx
import pytest
from sqlmodel import Session

from models import ActionStatus, Category, Status
from models.db import utcnow
from tasks.follow_up import remind_and_escalate_actions
from tasks.outbox import send_due
from tests.factories import make_colleague, make_improvement
from tests.smtpd import SmtpServer
from tests.web.conftest import Events
from tests.web.helpers import action_link, snapshot


@pytest.fixture
def case(session: Session):
    asha = make_colleague(session, "Asha Patel")
    owner = make_colleague(session, "Omar Hale", role="Facilities Officer")
    improvement = make_improvement(
        session,
        asha,
        title="LED lighting in the contact centre",
        category=Category.energy,
        status=Status.in_progress,
    )
    item, path = action_link(
        session,
        improvement,
        owner,
        title="Replace the lamps on floor 2",
        due_on=date(2026, 12, 18),
    )
    return improvement, item, owner, path


async def test_the_page_shows_what_for_which_improvement_when_and_who(
    client: httpx.AsyncClient, case
) -> None:
    improvement, item, owner, path = case
    before = snapshot()

    response = await client.get(path)

    assert response.status_code == 200
    for text in [
        "Replace the lamps on floor 2",
        f"{improvement.reference} · LED lighting in the contact centre",
        "18 December 2026",
        "Omar Hale",
        'name="measured_kwh"',
        'name="note"',
    ]:
        assert text in response.text, text
    assert (await client.head(path)).status_code == 200
    assert snapshot() == before


async def test_done_with_results_is_recorded_then_announced(
    client: httpx.AsyncClient, case, session: Session, events: Events
) -> None:
    improvement, item, owner, path = case

    response = await client.post(
        path,
        data={
            "measured_saving": "£1,250.50",
            "measured_kwh": "8400",
            "measured_kg_co2e": "1739",
            "measured_kg_waste": "",
            "note": "All 120 lamps replaced; meter readings for November.",
        },
    )

    assert response.status_code == 200
    assert "Thank you — “Replace the lamps on floor 2” is done" in response.text
    assert "8,400 kWh" in response.text
    session.refresh(item)
    assert item.status == ActionStatus.done
    assert (item.measured_saving, item.measured_kwh, item.measured_kg_co2e) == (1250.5, 8400, 1739)
    assert item.measured_kg_waste is None
    assert item.result_note == "All 120 lamps replaced; meter readings for November."
    assert item.completed_by == owner.email
    assert events.emitted() == [
        (
            "improve.action.completed",
            f"improve.improvement.{improvement.id}",
            [("action", f"improve.action.{item.id}"), ("owner", f"improve.colleague.{owner.id}")],
        )
    ]


async def test_nothing_measured_is_fine(client: httpx.AsyncClient, case, session: Session) -> None:
    _, item, _, path = case

    response = await client.post(path, data={})

    assert response.status_code == 200
    assert "No figures were measured" in response.text
    session.refresh(item)
    assert item.status == ActionStatus.done


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("measured_kwh", "lots", "is not a number"),
        ("measured_saving", "-5", "cannot be negative"),
        ("measured_kg_co2e", "inf", "is not a number"),
        ("measured_kg_waste", "nan", "is not a number"),
    ],
)
async def test_a_bad_number_gets_a_422_naming_the_field_and_keeping_the_input(
    client: httpx.AsyncClient, case, events: Events, field: str, value: str, message: str
) -> None:
    _, _, _, path = case
    before = snapshot()

    response = await client.post(path, data={field: value, "note": "my careful note"})

    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text
    assert message in response.text
    assert f'value="{value}"' in response.text
    assert "my careful note</textarea>" in response.text
    assert snapshot() == before
    assert events.emitted() == []


async def test_a_used_or_expired_action_link_says_so(
    client: httpx.AsyncClient, case, session: Session
) -> None:
    improvement, _, owner, path = case
    assert (await client.post(path, data={"note": "done"})).status_code == 200

    again = await client.post(path, data={"note": "done again"})
    assert again.status_code == 410
    assert "already been used" in again.text
    assert "already done" in again.text

    _, expired = action_link(
        session, improvement, owner, position=2, expires_at=utcnow() - timedelta(hours=1)
    )
    response = await client.get(expired)
    assert response.status_code == 410
    assert "expired" in response.text

    tampered = await client.get(expired[:-4] + "abcd")
    assert tampered.status_code == 404


async def test_a_reminder_link_completes_the_item_and_the_old_link_says_it_was_replaced(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer
) -> None:
    asha = make_colleague(session, "Asha Patel")
    owner = make_colleague(session, "Omar Hale")
    improvement = make_improvement(
        session, asha, title="One form for address changes", status=Status.in_progress
    )
    due = utcnow().date()
    # The issue: the last step is due the day its first link expires, and the owner is late.
    item, old_path = action_link(
        session,
        improvement,
        owner,
        title="Measure the effect after a month",
        due_on=due,
        expires_at=datetime.combine(due, time(), tzinfo=UTC),
    )
    late = utcnow() + timedelta(days=1)
    assert remind_and_escalate_actions(session=session, now=late)["reminded"] == 1
    session.commit()
    await send_due()
    [email] = smtp.handler.to(owner.email)
    assert email.subject.startswith("Overdue:")
    new_path = urlparse(
        next(line for line in email.text.splitlines() if "/actions/" in line).strip()
    ).path

    old = await client.get(old_path)
    assert old.status_code == 410
    assert "This link was replaced by a newer one" in old.text

    done = await client.post(new_path, data={"note": "Fewer forms came back."})
    assert done.status_code in (200, 303), done.text
    session.refresh(item)
    assert item.status == ActionStatus.done
