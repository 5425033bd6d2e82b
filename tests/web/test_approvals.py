"""The approval link: GET and HEAD only show; POST decides once, commits, then announces."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from models import ApprovalRequest, ApprovalStatus, Category, Status, Transition
from models.db import utcnow
from tests.factories import make_approver, make_colleague, make_improvement
from tests.web.conftest import Events
from tests.web.helpers import approval_link, snapshot


@pytest.fixture
def case(session: Session):
    """Asha asks; Bea decides on behalf of Carl, who is away."""
    asha = make_colleague(session, "Asha Patel", role="Adviser", team="Billing")
    bea = make_approver(session, "Bea Jones", category=Category.resource)
    carl = make_approver(session, "Carl Obi", category=Category.resource)
    improvement = make_improvement(
        session,
        asha,
        title="Paperless statements <for> account customers",
        description="Offer e-statements to the 400 account customers.\nMost already asked.",
        category=Category.resource,
        status=Status.awaiting_approval,
        estimated_cost=2000,
        annual_saving=4800,
        kwh=1200,
        kg_co2e=250,
        kg_waste=40,
        sheets_paper=12000,
    )
    approval, path = approval_link(
        session,
        improvement,
        bea,
        on_behalf_of=carl,
        reason="Carl Obi covers resource up to £5,000 and is away until 2026-12-01; "
        "you are his deputy.",
    )
    return improvement, approval, path


async def test_the_page_shows_what_why_and_cost_and_benefit_and_changes_nothing(
    client: httpx.AsyncClient, case
) -> None:
    improvement, approval, path = case
    before = snapshot()

    response = await client.get(path)

    assert response.status_code == 200
    page = response.text
    for text in [
        f"{improvement.reference} · Paperless statements &lt;for&gt; account customers",
        "Offer e-statements to the 400 account customers.",
        "Resource",
        "£2,000",
        "£4,800",
        "1,200 kWh",
        "250 kg CO2e",
        "40 kg",
        "12,000 sheets",
        "pays for itself in about 5 months, within the first year",
        "Asha Patel",  # who asked
        "you are his deputy",  # why you
        "on behalf of Carl Obi",
        "level 1 of 1",
        approval.expires_at.strftime("%Y"),
        'name="decision" value="approve"',
        'name="decision" value="reject"',
        'name="comment"',
    ]:
        assert text in page, text
    assert "<for>" not in page  # the title is shown, never parsed as markup
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert snapshot() == before


async def test_head_answers_like_get_without_a_body_and_changes_nothing(
    client: httpx.AsyncClient, case
) -> None:
    _, _, path = case
    before = snapshot()

    response = await client.head(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == b""
    assert snapshot() == before


async def test_approve_records_the_decision_commits_then_announces_it(
    client: httpx.AsyncClient, case, session: Session, events: Events
) -> None:
    improvement, approval, path = case

    response = await client.post(path, data={"decision": "approve", "comment": "Good idea."})

    assert response.status_code == 200
    assert f"Thank you — {improvement.reference} approved" in response.text
    assert "An action plan is drawn up next" in response.text
    session.refresh(approval)
    assert approval.status == ApprovalStatus.approved
    assert approval.comment == "Good idea."
    assert approval.decided_at is not None
    history = session.exec(
        select(Transition).where(Transition.improvement_id == improvement.id)
    ).all()
    assert any("Good idea." in h.reason and h.channel == "email" for h in history)
    assert events.emitted() == [
        (
            "improve.approval.decided",
            f"improve.improvement.{improvement.id}",
            [("approver", f"improve.colleague.{approval.approver_id}")],
        )
    ]


async def test_reject_with_a_reason_tells_what_happens_next(
    client: httpx.AsyncClient, case, session: Session, events: Events
) -> None:
    improvement, approval, path = case

    response = await client.post(path, data={"decision": "reject", "comment": "Not this quarter."})

    assert response.status_code == 200
    assert f"Thank you — {improvement.reference} rejected" in response.text
    assert "will be told it was not approved, with your comment" in response.text
    session.refresh(approval)
    assert (approval.status, approval.comment) == (ApprovalStatus.rejected, "Not this quarter.")
    assert [e[0] for e in events.emitted()] == ["improve.approval.decided"]


@pytest.mark.parametrize("comment", ["", "   \n  "])
async def test_reject_without_a_reason_is_refused_by_the_server_and_nothing_changes(
    client: httpx.AsyncClient, case, events: Events, comment: str
) -> None:
    _, _, path = case
    before = snapshot()

    response = await client.post(path, data={"decision": "reject", "comment": comment})

    assert response.status_code == 422
    assert "Please say why you are rejecting it" in response.text
    assert 'aria-invalid="true"' in response.text
    assert snapshot() == before
    assert events.emitted() == []


async def test_a_missing_decision_keeps_what_was_typed(client: httpx.AsyncClient, case) -> None:
    _, _, path = case
    before = snapshot()

    response = await client.post(path, data={"comment": "I typed <this> carefully"})

    assert response.status_code == 422
    assert "Choose Approve or Reject." in response.text
    assert "I typed &lt;this&gt; carefully</textarea>" in response.text
    assert snapshot() == before


async def test_approving_level_one_of_two_says_it_goes_to_level_two(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    bea = make_approver(session, "Bea Jones", category=Category.energy, limit=50_000)
    improvement = make_improvement(
        session,
        asha,
        category=Category.energy,
        status=Status.awaiting_approval,
        estimated_cost=25_000,
    )
    _, path = approval_link(session, improvement, bea, level=1)

    assert "level 1 of 2" in (await client.get(path)).text
    response = await client.post(path, data={"decision": "approve"})

    assert response.status_code == 200
    assert "level 2 approver" in response.text


# --- links that cannot act -------------------------------------------------------------------


def _refusals(session: Session, case):
    improvement, approval, path = case
    other = make_approver(session, "Dev Singh", category=Category.resource)
    _, foreign_path = approval_link(session, improvement, other)
    used, used_path = approval_link(
        session, improvement, other, status=ApprovalStatus.approved, decided_at=utcnow()
    )
    _, expired_path = approval_link(
        session, improvement, other, expires_at=utcnow() - timedelta(days=1)
    )
    approval_id = approval.id
    foreign_token = foreign_path.rsplit("/", 1)[1]
    return {
        "tampered": (
            f"/approvals/{approval_id}/{path.rsplit('/', 1)[1][:-3]}xyz",
            404,
            "not valid",
        ),
        "foreign": (f"/approvals/{approval_id}/{foreign_token}", 403, "not yours"),
        "used": (used_path, 410, "already been used"),
        "expired": (expired_path, 410, "expired"),
    }


@pytest.mark.parametrize("kind", ["tampered", "foreign", "used", "expired"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_link_that_cannot_act_gets_a_page_saying_which_with_its_code(
    client: httpx.AsyncClient, session: Session, case, kind: str, method: str
) -> None:
    path, status_code, words = _refusals(session, case)[kind]
    before = snapshot()

    if method == "GET":
        response = await client.get(path)
    else:
        response = await client.post(path, data={"decision": "approve"})

    assert response.status_code == status_code
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text
    assert 'name="decision"' not in response.text
    assert "Traceback" not in response.text
    assert snapshot() == before


async def test_a_malformed_approval_address_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/approvals/not-a-number/abc")
    assert response.status_code == 404
    assert "There is no page at" in response.text


# --- two at once -------------------------------------------------------------------------------


async def test_two_approvers_at_one_level_the_second_gets_already_used(
    client: httpx.AsyncClient, session: Session, case, events: Events
) -> None:
    improvement, first, first_path = case
    dev = make_approver(session, "Dev Singh", category=Category.resource)
    second, second_path = approval_link(session, improvement, dev)

    assert (await client.post(first_path, data={"decision": "approve"})).status_code == 200
    response = await client.post(second_path, data={"decision": "reject", "comment": "No."})

    assert response.status_code == 410
    assert "already been used" in response.text
    session.refresh(first)
    session.refresh(second)
    assert (first.status, second.status) == (ApprovalStatus.approved, ApprovalStatus.superseded)
    assert len(events.emitted()) == 1


async def test_the_same_link_posted_twice_at_the_same_instant_decides_once(
    client: httpx.AsyncClient, session: Session, case, events: Events
) -> None:
    improvement, approval, path = case
    responses = await asyncio.gather(
        client.post(path, data={"decision": "approve", "comment": "at once"}),
        client.post(path, data={"decision": "reject", "comment": "at once"}),
    )
    codes = [r.status_code for r in responses]

    assert sorted(codes) == [200, 410]
    session.refresh(approval)
    assert approval.status in (ApprovalStatus.approved, ApprovalStatus.rejected)
    decisions = session.exec(
        select(Transition).where(
            Transition.improvement_id == improvement.id,
            Transition.reason.contains("at once"),  # type: ignore[attr-defined]
        )
    ).all()
    assert len(decisions) == 1
    assert len(events.emitted()) == 1
    assert session.exec(select(ApprovalRequest)).all() == [approval]


async def test_two_approvers_at_the_same_instant_one_decision_is_recorded(
    client: httpx.AsyncClient, session: Session, case, events: Events
) -> None:
    improvement, first, first_path = case
    dev = make_approver(session, "Dev Singh", category=Category.resource)
    second, second_path = approval_link(session, improvement, dev)

    responses = await asyncio.gather(
        client.post(first_path, data={"decision": "approve"}),
        client.post(second_path, data={"decision": "reject", "comment": "No."}),
    )

    assert sorted(r.status_code for r in responses) == [200, 410]
    session.refresh(first)
    session.refresh(second)
    statuses = sorted([first.status, second.status])
    assert statuses in (
        sorted([ApprovalStatus.approved, ApprovalStatus.superseded]),
        sorted([ApprovalStatus.rejected, ApprovalStatus.superseded]),
    )
    assert len(events.emitted()) == 1
