"""Help from others through the web app: a colleague is asked from a staff page, gets an email
over real SMTP, opens the link (which changes nothing), and accepts or declines with a POST."""

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from models import Colleague, HelpRequest, HelpStatus, OutboxEmail, Status
from models.db import utcnow
from tasks.outbox import send_due
from tests.factories import make_case, make_colleague, make_improvement
from tests.smtpd import SmtpServer
from tests.web.conftest import sign_in
from tests.web.helpers import action_link, snapshot

LINK = re.compile(r"http://127\.0\.0\.1:8000(/help/\d+/[A-Za-z0-9_-]+)")


@pytest.fixture
async def asha(anonymous: httpx.AsyncClient, session: Session) -> Colleague:
    """The case owner, signed in."""
    asha = make_colleague(session, "Asha Patel", role="Adviser", team="Care")
    sign_in(anonymous, asha)
    return asha


@pytest.fixture
def bea(session: Session) -> Colleague:
    return make_colleague(session, "Bea Jones", role="Waste specialist", team="Operations")


async def _ask_on_case(
    client: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague, smtp: SmtpServer
) -> tuple[HelpRequest, str]:
    """Asha asks Bea from the case's form; the email goes out; the path of its link."""
    case = make_case(session, asha)
    asked = await client.post(
        f"/cases/{case.id}/help",
        data={"helper_email": bea.email, "message": "Can you chase the depot for a date?"},
    )
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == f"/cases/{case.id}#help-case-{case.id}"
    shown = await client.get(f"/cases/{case.id}")  # where the redirect lands: the case page
    assert shown.status_code == 200 and "Help from colleagues" in shown.text
    assert "Bea Jones" in shown.text and "Can you chase the depot for a date?" in shown.text
    assert (await send_due())["sent"] == 1
    [email] = smtp.handler.to(bea.email)
    assert "Asha Patel asks for your help" in email.subject
    assert "Can you chase the depot for a date?" in email.text
    assert "List-Unsubscribe" not in email.message
    [path] = set(LINK.findall(email.text))
    assert path in email.html
    help_request = session.exec(select(HelpRequest)).one()
    return help_request, path


async def test_the_link_shows_what_is_asked_and_changes_nothing(
    anonymous: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague, smtp
) -> None:
    _, path = await _ask_on_case(anonymous, session, asha, bea, smtp)
    anonymous.cookies.clear()  # the helper need not be signed in
    before = snapshot()

    shown = await anonymous.get(path)
    head = await anonymous.head(path)

    assert shown.status_code == 200 and head.status_code == 200
    for text in [
        "Can you chase the depot for a date?",
        "Asha Patel, Adviser, Care",
        "Hello Bea Jones",
        'name="decision" value="accept"',
        'name="decision" value="decline"',
        'name="answer"',
    ]:
        assert text in shown.text, text
    assert shown.headers["cache-control"] == "no-store"
    assert snapshot() == before


@pytest.mark.parametrize("decision", ["accept", "decline"])
async def test_the_answer_is_recorded_and_the_asker_is_emailed(
    anonymous: httpx.AsyncClient,
    session: Session,
    asha: Colleague,
    bea: Colleague,
    smtp: SmtpServer,
    decision: str,
) -> None:
    help_request, path = await _ask_on_case(anonymous, session, asha, bea, smtp)
    anonymous.cookies.clear()

    answered = await anonymous.post(
        path, data={"decision": decision, "answer": "I can call them on <Monday>."}
    )

    assert answered.status_code == 200, answered.text
    status = HelpStatus.accepted if decision == "accept" else HelpStatus.declined
    assert f"you {status} the request for help" in answered.text
    assert "I can call them on &lt;Monday&gt;." in answered.text
    session.refresh(help_request)
    assert (help_request.status, help_request.answer) == (status, "I can call them on <Monday>.")
    assert help_request.answered_at is not None
    assert (await send_due())["sent"] == 1
    [email] = smtp.handler.to(asha.email)
    expected = "Bea Jones will help" if decision == "accept" else "Bea Jones cannot help"
    assert email.subject.startswith(expected)
    assert "I can call them on <Monday>." in email.text
    assert "I can call them on &lt;Monday&gt;." in email.html


async def test_without_a_decision_nothing_is_recorded_and_the_note_is_kept(
    anonymous: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague, smtp
) -> None:
    _, path = await _ask_on_case(anonymous, session, asha, bea, smtp)
    before = snapshot()

    refused = await anonymous.post(path, data={"answer": "Typed carefully"})

    assert refused.status_code == 422
    assert "Choose Accept or Decline." in refused.text
    assert "Typed carefully</textarea>" in refused.text
    assert snapshot() == before


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_link_that_cannot_act_says_why(
    anonymous: httpx.AsyncClient,
    session: Session,
    asha: Colleague,
    bea: Colleague,
    smtp: SmtpServer,
    method: str,
) -> None:
    help_request, path = await _ask_on_case(anonymous, session, asha, bea, smtp)
    # Another colleague's link, on another case: its token is foreign to this request.
    cai = make_colleague(session, "Cai Evans")
    other_case = make_case(session, asha)
    await anonymous.post(
        f"/cases/{other_case.id}/help", data={"helper_email": cai.email, "message": "And you?"}
    )
    await send_due()
    [other_path] = set(LINK.findall(smtp.handler.to(cai.email)[0].text))
    help_id, token = path.split("/")[2:]
    links = {
        "tampered": (f"/help/{help_id}/{token[:-3]}xyz", 404, "not valid"),
        "foreign": (f"/help/{help_id}/{other_path.rsplit('/', 1)[1]}", 403, "not yours"),
    }
    anonymous.cookies.clear()

    async def call(target: str) -> httpx.Response:
        if method == "GET":
            return await anonymous.get(target)
        return await anonymous.post(target, data={"decision": "accept"})

    for kind, (target, code, words) in links.items():
        before = snapshot()
        response = await call(target)
        assert (response.status_code, words in response.text) == (code, True), kind
        assert 'name="decision"' not in response.text
        assert snapshot() == before

    help_request.expires_at = utcnow() - timedelta(minutes=1)
    session.add(help_request)
    session.commit()
    expired = await call(path)
    assert expired.status_code == 410 and "This link has expired" in expired.text

    help_request.expires_at = utcnow() + timedelta(days=1)
    session.add(help_request)
    session.commit()
    assert (await anonymous.post(path, data={"decision": "decline"})).status_code == 200
    before = snapshot()
    used = await call(path)
    assert used.status_code == 410 and "already been used" in used.text
    assert "the request for help was declined" in used.text
    assert snapshot() == before


async def test_bad_input_on_the_staff_form_names_the_field_and_keeps_nothing(
    anonymous: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague
) -> None:
    case = make_case(session, asha)
    before = snapshot()

    unknown = await anonymous.post(
        f"/cases/{case.id}/help", data={"helper_email": "who@example.org", "message": "Help"}
    )
    yourself = await anonymous.post(
        f"/cases/{case.id}/help", data={"helper_email": asha.email, "message": "Help"}
    )
    empty = await anonymous.post(f"/cases/{case.id}/help", data={"helper_email": bea.email})
    no_case = await anonymous.post(
        "/cases/999999/help", data={"helper_email": bea.email, "message": "Help"}
    )

    assert unknown.status_code == 422 and "no active colleague has the email" in unknown.text
    assert yourself.status_code == 422 and "cannot ask yourself" in yourself.text
    assert empty.status_code == 422 and "say what you would like help with" in empty.text
    assert no_case.status_code == 404 and "case CASE-999999 not found" in no_case.text
    assert snapshot() == before


async def test_help_on_an_action_item_is_asked_from_the_improvement_page(
    anonymous: httpx.AsyncClient,
    session: Session,
    asha: Colleague,
    bea: Colleague,
    smtp: SmtpServer,
) -> None:
    improvement = make_improvement(session, asha, status=Status.in_progress)
    item, item_path = action_link(session, improvement, asha)
    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert f'action="/actions/{item.id}/help"' in page
    assert f'<option value="{bea.email}">Bea Jones' in page
    assert f'<option value="{asha.email}">' not in page  # nobody asks themselves

    asked = await anonymous.post(
        f"/actions/{item.id}/help",
        data={"helper_email": bea.email, "message": "Which supplier takes toner back?"},
    )

    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == f"/improvements/{improvement.id}#help-action-{item.id}"
    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert "Which supplier takes toner back?" in page and "Bea Jones" in page
    assert f"{improvement.reference} action 1: Asha Patel asked Bea Jones for help" in page
    await send_due()
    [path] = set(LINK.findall(smtp.handler.to(bea.email)[0].text))
    assert (await anonymous.post(path, data={"decision": "accept"})).status_code == 200
    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert 'class="badge accepted"' in page
    # The action link itself still works: /actions/{id}/help did not take its place.
    assert (await anonymous.get(item_path)).status_code == 200


async def test_one_link_posted_twice_at_once_records_one_answer(
    anonymous: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague, smtp
) -> None:
    help_request, path = await _ask_on_case(anonymous, session, asha, bea, smtp)

    responses = await asyncio.gather(
        anonymous.post(path, data={"decision": "accept", "answer": "yes"}),
        anonymous.post(path, data={"decision": "decline", "answer": "no"}),
    )

    assert sorted(r.status_code for r in responses) == [200, 410]
    session.refresh(help_request)
    assert help_request.status in (HelpStatus.accepted, HelpStatus.declined)
    answers = session.exec(select(OutboxEmail).where(OutboxEmail.template == "help_answer")).all()
    assert len(answers) == 1


async def test_the_page_tells_a_waiting_request_from_one_whose_link_expired(
    anonymous: httpx.AsyncClient, session: Session, asha: Colleague, bea: Colleague
) -> None:
    improvement = make_improvement(session, asha, status=Status.in_progress)
    item, _ = action_link(session, improvement, asha)
    await anonymous.post(
        f"/actions/{item.id}/help", data={"helper_email": bea.email, "message": "Any ideas?"}
    )
    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert "waiting for an answer; the link works until" in page

    help_request = session.exec(select(HelpRequest)).one()
    help_request.expires_at = utcnow() - timedelta(hours=1)
    session.add(help_request)
    session.commit()

    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert "not answered; the link expired" in page
